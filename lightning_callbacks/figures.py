"""Explanation pictures for Lightning loggers that take images.

Both pictures are RGB arrays: the overlay grid is composed directly with torch (drawing dozens of
matplotlib axes every epoch would cost seconds), the BC matrices are drawn by
``ClassDisentanglement.plot`` on a plain ``matplotlib.figure.Figure`` (no pyplot registry, so nothing
survives the epoch) and rendered once. TensorBoard gets ``add_image``; loggers with a W&B-style
``log_image(key, images, step)`` get the arrays; any other logger (CSV ...) is skipped silently.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor
from torch.nn import functional as F

from captum_qubo.metrics import ClassDisentanglement
from lightning_callbacks.lightning_namespace import installed_namespaces


def _is_tensorboard(logger: Any) -> bool:
    """A TensorBoardLogger of either Lightning namespace (their classes differ)."""
    return isinstance(logger, tuple(namespace.TensorBoardLogger for namespace in installed_namespaces()))


def takes_images(logger: Any) -> bool:
    return _is_tensorboard(logger) or callable(getattr(logger, "log_image", None))


def overlay_grid(inputs: Tensor, saliency_by_method: Dict[str, Tensor], cell: int = 96, pad: int = 2,
                 cmap: str = "inferno") -> np.ndarray:
    """Columns are samples; the first row is the input (greyscale), then one row per method: its map
    (a perceptual colormap, inferno by default, over [0, 1]) blended half and half over the input.

    Args:
        inputs: (n, C, H, W) images as the model sees them (each is min-max scaled for display).
        saliency_by_method: method name -> (n, 1, H, W) maps in [0, 1] at the input resolution, rows in that order.
        cell: side of each square tile in pixels; pad: white pixels between tiles.
        cmap: the matplotlib colormap of the maps.

    Returns:
        (H, W, 3) uint8 image.
    """
    grey = inputs.detach().float().cpu().mean(dim=1, keepdim=True)
    low = grey.amin(dim=(2, 3), keepdim=True)
    grey = (grey - low) / (grey.amax(dim=(2, 3), keepdim=True) - low).clamp(min=1e-12)
    grey = F.interpolate(grey, size=(cell, cell), mode="nearest").expand(-1, 3, -1, -1)
    rows = [grey]
    palette = torch.as_tensor(colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3], dtype=torch.float32)
    for saliency in saliency_by_method.values():
        upsampled = F.interpolate(saliency.detach().float().cpu(), size=(cell, cell), mode="nearest")
        colours = palette[(upsampled.clamp(0, 1) * 255).round().long().squeeze(1)].permute(0, 3, 1, 2)
        rows.append(0.5 * grey + 0.5 * colours)
    tiles = F.pad(torch.stack(rows), (pad, pad, pad, pad), value=1.0)  # (rows, n, 3, cell+2p, cell+2p)
    grid = tiles.permute(0, 3, 1, 4, 2).reshape(tiles.shape[0] * tiles.shape[3], -1, 3)
    return (grid * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def disentanglement_image(
    panels: Dict[str, Tuple[ClassDisentanglement, Tensor]], class_names: Optional[Sequence[str]] = None
) -> np.ndarray:
    """Each method's class x class Bhattacharyya matrix side by side, drawn by ``ClassDisentanglement.plot``.

    Args:
        panels: method name -> (its metric, the matrix its ``compute()`` returned).
        class_names: tick labels; class indices when None.

    Returns:
        (H, W, 3) uint8 rendering.
    """
    size = 1.0 + 0.6 * next(iter(panels.values()))[1].shape[0]
    figure = Figure(figsize=((size + 2.0) * len(panels), size + 0.8))
    for axis, (method, (metric, matrix)) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels.items()):
        metric.plot({"matrix": matrix}, ax=axis, class_names=class_names)
        axis.set_title(f"{method}: class disentanglement (BC)", fontsize=9)
    figure.subplots_adjust(left=0.06, right=0.97, bottom=0.12, top=0.92, wspace=0.3)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def log_images(loggers: Iterable[Any], images: Dict[str, np.ndarray], step: int) -> None:
    """Send each (H, W, 3) uint8 image (tag -> image) to every logger that takes images; skip the others."""
    for logger in loggers:
        if _is_tensorboard(logger):
            for tag, image in images.items():
                logger.experiment.add_image(tag, image, global_step=step, dataformats="HWC")
        elif callable(getattr(logger, "log_image", None)):
            for tag, image in images.items():
                logger.log_image(key=tag, images=[image], step=step)
