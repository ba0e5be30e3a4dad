"""Side-by-side figure for one prediction: input | QUBO explanation | Grad-CAM.

Headless: figures are built on matplotlib's Agg canvas (no pyplot, no display needed) and the
overlays are drawn by :func:`captum.attr.visualization.visualize_image_attr`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from captum.attr import visualization as captum_viz
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor
from torch.nn import Module


def grad_cam_map(model: Module, layer: Module, inputs: Tensor, target: int) -> Tensor:
    """Captum's LayerGradCam (ReLU applied, as in the Grad-CAM paper) upsampled to the input size.

    Returns:
        (N, 1, H_in, W_in) attributions.
    """
    attribution = LayerGradCam(model, layer).attribute(inputs, target=target, relu_attributions=True)
    return LayerAttribution.interpolate(attribution.detach(), tuple(inputs.shape[-2:]), "bilinear")


def explanation_figure(
    image: np.ndarray,
    qubo_map: Union[np.ndarray, Tensor],
    grad_cam: Union[np.ndarray, Tensor],
    title: str,
    qubo_caption: str = "QUBO explanation",
) -> Figure:
    """Three panels: the image, the QUBO explanation over it, Grad-CAM over it.

    Args:
        image: (H, W, 3) RGB, uint8 or float in [0, 1], at the maps' resolution.
        qubo_map: (H, W) or (1, H, W) QUBO explanation (upsampled to the image).
        grad_cam: (H, W) or (1, H, W) Grad-CAM map (upsampled to the image).
        title: figure title, e.g. the predicted class and its probability.
        qubo_caption: title of the QUBO panel (e.g. with the selected channels).

    Returns:
        A matplotlib Figure attached to an Agg canvas (save with ``fig.savefig``).
    """
    picture = np.asarray(image, dtype=np.float64)
    if picture.max() > 1.0:
        picture = picture / 255.0
    figure = Figure(figsize=(12, 4.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    axes[0].imshow(picture)
    axes[0].set_title("input")
    axes[0].axis("off")
    for axis, attribution, caption in ((axes[1], qubo_map, qubo_caption), (axes[2], grad_cam, "Grad-CAM")):
        heat = _as_hw1(attribution)
        if np.any(heat > 0):
            captum_viz.visualize_image_attr(
                heat,
                picture,
                method="blended_heat_map",
                sign="positive",
                plt_fig_axis=(figure, axis),
                show_colorbar=True,
                title=caption,
                use_pyplot=False,
            )
        else:  # Captum cannot normalise an all-zero map; say what it means instead.
            axis.imshow(picture)
            axis.set_title(f"{caption}\n(empty: no positively important map)")
            axis.axis("off")
    figure.suptitle(title)
    return figure


def save_explanation_figure(figure: Figure, path: Union[str, Path], dpi: Optional[int] = 100) -> Path:
    """Write ``figure`` as PNG to ``path`` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _as_hw1(attribution: Union[np.ndarray, Tensor]) -> np.ndarray:
    """(H, W), (1, H, W) or (1, 1, H, W) → (H, W, 1) numpy, the layout Captum's visualiser wants."""
    if isinstance(attribution, torch.Tensor):
        attribution = attribution.detach().cpu().numpy()
    heat = np.asarray(attribution, dtype=np.float64)
    heat = heat.reshape(heat.shape[-2:])
    return heat[..., None]
