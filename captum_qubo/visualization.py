"""Side-by-side figure for one prediction: input | QUBO explanation | Grad-CAM, readable at a glance and in print.

Each map is drawn in a perceptual colormap (inferno by default) over the photo in its own colours, more opaque
where the map is higher, so peaks stand out and low regions show the photo untinted. Both maps are divided by
their own maximum and share one colour scale and one colour bar, so the panels compare like for like. The QUBO
panel lists its selected maps with their share of the explanation. Headless: figures are built on matplotlib's
Agg canvas (no pyplot, no display needed).
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import Tensor
from torch.nn import Module

#: Opacity of the colour at the map's maximum (at 0 the photo shows untinted).
MAX_OPACITY = 0.8


def grad_cam_map(model: Module, layer: Module, inputs: Tensor, target: int) -> Tensor:
    """Captum's LayerGradCam (ReLU applied, as in the Grad-CAM paper) upsampled to the input size.

    Returns:
        (N, 1, H_in, W_in) attributions.
    """
    attribution = LayerGradCam(model, layer).attribute(inputs, target=target, relu_attributions=True)
    return LayerAttribution.interpolate(attribution.detach(), tuple(inputs.shape[-2:]), "bilinear")


def grad_cam_from_weights(weights: Tensor, feature_maps: Tensor, size: Tuple[int, int]) -> Tensor:
    """Grad-CAM from weights already computed: ReLU(Σ_k α_k f_k), bilinearly upsampled to ``size``.

    With α = the spatial mean of the gradients this is Captum's ``LayerGradCam(relu_attributions=True)``, without
    a second backward pass when α is at hand (the QUBO explainer computes every α).

    Args:
        weights: (C,) α for every map.
        feature_maps: (C, H, W) the layer's activations.
        size: (H_in, W_in) to upsample to.

    Returns:
        (1, 1, H_in, W_in).
    """
    cam = torch.relu((weights.to(feature_maps.dtype)[:, None, None] * feature_maps).sum(dim=0))[None, None]
    return LayerAttribution.interpolate(cam.detach(), tuple(size), "bilinear")


def selected_map_shares(channel_weights: Tensor, feature_maps: Tensor) -> list:
    """Each selected map's share of the explanation's mass, Σ_ij ReLU(α_k f_k) / Σ_k Σ_ij ReLU(α_k f_k).

    Args:
        channel_weights: (C,) α on the selected maps, 0 elsewhere (``last_channel_weights[i]``).
        feature_maps: (C, H, W) the layer's activations for the same sample.

    Returns:
        [(channel, share), ...] for the maps with a positive contribution, largest share first.
    """
    mass = torch.relu(channel_weights[:, None, None] * feature_maps).sum(dim=(1, 2)).double()
    total = float(mass.sum())
    if total <= 0:
        return []
    order = torch.argsort(mass, descending=True, stable=True)
    return [(int(k), float(mass[k]) / total) for k in order if mass[k] > 0]


def explanation_figure(
    image: np.ndarray,
    qubo_map: Union[np.ndarray, Tensor],
    grad_cam: Union[np.ndarray, Tensor],
    title: str,
    qubo_caption: str = "QUBO explanation",
    top_maps: Optional[Sequence[Tuple[int, float]]] = None,
    cmap: str = "inferno",
) -> Figure:
    """Three panels: the image, the QUBO explanation over it, Grad-CAM over it, with one shared colour bar.

    Args:
        image: (H, W, 3) RGB, uint8 or float in [0, 1], at the maps' resolution (what the model saw).
        qubo_map: (H, W) or (1, H, W) QUBO explanation (upsampled to the image).
        grad_cam: (H, W) or (1, H, W) Grad-CAM map (upsampled to the image).
        title: figure title, e.g. the predicted class and its probability (wrapped, never cut off).
        qubo_caption: title of the QUBO panel (e.g. the sampler and the selection size).
        top_maps: (channel, share) of the selected maps, largest first (see :func:`selected_map_shares`); the
            first five are listed under the QUBO panel.
        cmap: a perceptual matplotlib colormap (inferno, magma, turbo, viridis ...).

    Returns:
        A matplotlib Figure attached to an Agg canvas (save with :func:`save_explanation_figure`).
    """
    picture = np.asarray(image, dtype=np.float64)
    if picture.max() > 1.0:
        picture = picture / 255.0
    colours = colormaps[cmap]
    figure = Figure(figsize=(12, 4.9), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    axes[0].imshow(picture)
    axes[0].set_title("input (as the model sees it)", fontsize=11)
    for axis, attribution, caption in ((axes[1], qubo_map, qubo_caption), (axes[2], grad_cam, "Grad-CAM")):
        heat = _as_hw(attribution)
        peak = float(heat.max()) if heat.size else 0.0
        axis.imshow(picture)
        if peak > 0:
            relative = np.clip(heat / peak, 0.0, 1.0)
            overlay = colours(relative)
            overlay[..., 3] = MAX_OPACITY * relative
            axis.imshow(overlay)
            axis.set_title(caption, fontsize=11)
        else:  # nothing to normalise: say what it means instead of drawing a flat colour
            axis.set_title(f"{caption}\n(empty: no positively important map)", fontsize=11)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    if top_maps:
        listed = ", ".join(f"#{channel} {share:.0%}" for channel, share in list(top_maps)[:5])
        more = f" (+{len(top_maps) - 5} more)" if len(top_maps) > 5 else ""
        axes[1].set_xlabel(f"top maps (share of the map): {listed}{more}", fontsize=9, wrap=True)
    bar = figure.colorbar(ScalarMappable(Normalize(0.0, 1.0), colours), ax=list(axes[1:]), shrink=0.85, pad=0.01)
    bar.set_label("attribution / its maximum (both maps)", fontsize=9)
    figure.suptitle("\n".join(textwrap.wrap(title, width=110)) or " ", fontsize=12)
    return figure


def save_explanation_figure(figure: Figure, path: Union[str, Path], dpi: Optional[int] = 200) -> Path:
    """Write ``figure`` as PNG to ``path`` (parents created; written under a temporary name, then renamed).

    Args:
        figure: the figure.
        path: where the PNG goes.
        dpi: resolution; 200 dpi gives a 2400-pixel-wide three-panel figure, fit for a paper.

    Returns:
        The path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        figure.savefig(partial, dpi=dpi, format="png", bbox_inches="tight")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _as_hw(attribution: Union[np.ndarray, Tensor]) -> np.ndarray:
    """(H, W), (1, H, W) or (1, 1, H, W) → (H, W) float64 numpy."""
    if isinstance(attribution, torch.Tensor):
        attribution = attribution.detach().float().cpu().numpy()
    heat = np.asarray(attribution, dtype=np.float64)
    return heat.reshape(heat.shape[-2:])
