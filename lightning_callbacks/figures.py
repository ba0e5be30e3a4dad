"""Explanation pictures for Lightning loggers that take images.

Figures are plain ``matplotlib.figure.Figure`` objects (no pyplot registry), so nothing survives an
epoch once the loggers are done with them. TensorBoard gets ``add_figure``; loggers with a W&B-style
``log_image(key, images, step)`` get RGB arrays; any other logger (CSV ...) is skipped silently.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure
from pytorch_lightning.loggers import Logger, TensorBoardLogger
from torch import Tensor

from captum_qubo.metrics import ClassDisentanglement


def takes_images(logger: Logger) -> bool:
    return isinstance(logger, TensorBoardLogger) or callable(getattr(logger, "log_image", None))


def overlay_grid(inputs: Tensor, saliency_by_method: Dict[str, Tensor], classes: Tensor) -> Figure:
    """One column per sample: the input, then each method's map (in [0, 1]) over the input's greyscale.

    Args:
        inputs: (n, C, H, W) images as the model sees them (normalisation is undone per image for display).
        saliency_by_method: method name -> (n, 1, H, W) maps at the input resolution.
        classes: (n,) the explained class of each sample.
    """
    count = inputs.shape[0]
    rows = 1 + len(saliency_by_method)
    figure = Figure(figsize=(1.4 * count + 0.6, 1.5 * rows))
    axes = figure.subplots(rows, count, squeeze=False)
    grey = inputs.detach().float().cpu().mean(dim=1)
    low = grey.amin(dim=(1, 2), keepdim=True)
    grey = (grey - low) / (grey.amax(dim=(1, 2), keepdim=True) - low).clamp(min=1e-12)
    for column in range(count):
        axes[0, column].imshow(grey[column].numpy(), cmap="gray", vmin=0, vmax=1)
        axes[0, column].set_title(f"class {int(classes[column])}", fontsize=8)
        for row, (method, saliency) in enumerate(saliency_by_method.items(), start=1):
            axes[row, column].imshow(grey[column].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[row, column].imshow(saliency[column, 0].detach().float().cpu().numpy(), cmap="jet", alpha=0.5,
                                     vmin=0, vmax=1)
            if column == 0:
                axes[row, column].set_ylabel(method, fontsize=8)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    return figure


def disentanglement_figure(
    panels: Dict[str, Tuple[ClassDisentanglement, Tensor]], class_names: Optional[Sequence[str]] = None
) -> Figure:
    """Each method's class x class Bhattacharyya matrix side by side, drawn by ``ClassDisentanglement.plot``.

    Args:
        panels: method name -> (its metric, the matrix its ``compute()`` returned).
        class_names: tick labels; class indices when None.
    """
    size = 1.0 + 0.6 * next(iter(panels.values()))[1].shape[0]
    figure = Figure(figsize=((size + 1.5) * len(panels), size))
    for axis, (method, (metric, matrix)) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels.items()):
        metric.plot({"matrix": matrix}, ax=axis, class_names=class_names)
        axis.set_title(f"{method}: class disentanglement (BC)", fontsize=9)
    figure.tight_layout()
    return figure


def figure_to_rgb(figure: Figure) -> np.ndarray:
    """(H, W, 3) uint8 rendering of a figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def log_figures(loggers: Iterable[Logger], figures: Dict[str, Figure], step: int) -> None:
    """Send each figure (tag -> figure) to every logger that takes images; other loggers are skipped."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            for tag, figure in figures.items():
                logger.experiment.add_figure(tag, figure, global_step=step, close=False)
        elif callable(getattr(logger, "log_image", None)):
            for tag, figure in figures.items():
                logger.log_image(key=tag, images=[figure_to_rgb(figure)], step=step)
