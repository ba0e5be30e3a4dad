"""Every compared method behind one call: explain a batch, get input-size maps in [0, 1], channel weights, timings.

All methods go through the same post-processing so that the metrics compare the methods, not their
normalisations: ReLU at layer resolution, bilinear upsampling to the input size
(``LayerAttribution.interpolate``), min-max per image (a constant map becomes all zeros).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from time import perf_counter
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum.attr import LayerAttribution, LayerGradCam
from torch import Tensor, nn

from captum_qubo.attribution.options import QuboOptions
from captum_qubo.attribution.qubo_attribution import QuboFeatureMapAttribution, explanation_map
from captum_qubo.baselines import LayerGradCamPlusPlus, LayerGradCamWithWeights, LayerScoreCam
from captum_qubo.metrics import top_k_mask

QUBO = "QUBO"
QUBO_K_HOT = "QUBO k-hot"
GRAD_CAM = "Grad-CAM"
GRAD_CAM_PP = "Grad-CAM++"
SCORE_CAM = "Score-CAM"
GRAD_CAM_TOP_K = "Grad-CAM top-K"
BASELINES = (GRAD_CAM, GRAD_CAM_PP, SCORE_CAM)
QUBO_PAPER = "QUBO paper preset"
GRAD_CAM_TOP_K_PAPER = "Grad-CAM top-K (paper preset's K)"
QUBO_METHODS = (QUBO, QUBO_K_HOT, QUBO_PAPER)


def paper_differs_from_default() -> bool:
    """Whether the library default formulation is not the paper's (then the benchmarks also run the paper preset)."""
    return QuboOptions() != QuboOptions.preset("paper")


@dataclass
class Explanations:
    """One method's explanations of N images.

    Attributes:
        saliency: (N, 1, H, W) maps at input size, each min-max normalised to [0, 1].
        channel_weights: (N, C) the method's own per-map weights (α on the selected maps for the QUBO).
        seconds: (N,) wall time per image (the batch's time split evenly when explained in one call).
        selection_sizes: (N,) maps selected (QUBO methods and top-K ablation), else None.
        num_variables: (N,) QUBO variables d (QUBO methods), else None.
    """

    saliency: Tensor
    channel_weights: Tensor
    seconds: np.ndarray
    selection_sizes: Optional[np.ndarray] = None
    num_variables: Optional[np.ndarray] = None
    extra: Dict[str, object] = field(default_factory=dict)


def concatenate(parts: Sequence[Explanations]) -> Explanations:
    """One Explanations from per-image (or per-batch) pieces, in order."""

    def joined(name: str) -> Optional[np.ndarray]:
        values = [getattr(part, name) for part in parts]
        return None if any(v is None for v in values) else np.concatenate(values)

    return Explanations(
        torch.cat([part.saliency for part in parts]),
        torch.cat([part.channel_weights for part in parts]),
        np.concatenate([part.seconds for part in parts]),
        joined("selection_sizes"),
        joined("num_variables"),
        {key: sum((list(part.extra[key]) for part in parts), []) for key in parts[0].extra},
    )


def to_input_saliency(layer_map: Tensor, size: Sequence[int]) -> Tensor:
    """ReLU, bilinear upsampling to ``size`` and per-image min-max to [0, 1] (constant maps → 0)."""
    upsampled = LayerAttribution.interpolate(torch.relu(layer_map.detach()), tuple(size), "bilinear")
    low = upsampled.amin(dim=(2, 3), keepdim=True)
    span = upsampled.amax(dim=(2, 3), keepdim=True) - low
    return torch.where(span > 0, (upsampled - low) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)


def _timed(explain: Callable[[Tensor, Tensor], Tensor], inputs: Tensor, targets: Tensor):
    """Layer maps of all images from one call, and (N,) seconds: the call's wall time split evenly.

    For per-image latency, call with one image at a time.
    """
    start = perf_counter()
    maps = explain(inputs, targets)
    return maps, np.full(len(inputs), (perf_counter() - start) / len(inputs))


def explain_qubo(
    model: nn.Module,
    layer: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    sampler: str,
    sampler_kwargs: Optional[dict] = None,
    k: Optional[Sequence[int]] = None,
    seed: int = 0,
    options: Optional[QuboOptions] = None,
) -> Explanations:
    """The QUBO method; ``k`` None → unconstrained, else k_hot with ``k[i]`` maps for image i.

    ``options``: the formulation (default: the library default; ``QuboOptions.preset("paper")`` for the paper's);
    sampler, seed, formulation and k are set on top. Images sharing a k are explained in one call (one explainer
    per distinct k).
    """
    ks = np.zeros(len(inputs), dtype=int) if k is None else np.asarray(k, dtype=int)
    maps: Optional[Tensor] = None
    weights: Optional[Tensor] = None
    seconds, solve_seconds = np.zeros(len(inputs)), np.zeros(len(inputs))
    sizes, variables = np.zeros(len(inputs), dtype=int), np.zeros(len(inputs), dtype=int)
    for value in np.unique(ks):
        rows = np.flatnonzero(ks == value)
        explainer = QuboFeatureMapAttribution(
            model, layer, options=options, sampler=sampler, sampler_kwargs=sampler_kwargs,
            formulation="unconstrained" if k is None else "k_hot", k=None if k is None else int(value), seed=seed,
        )
        group_maps, seconds[rows] = _timed(lambda x, t: explainer.attribute(x, target=t), inputs[rows], targets[rows])
        if maps is None:
            maps = torch.zeros(len(inputs), *group_maps.shape[1:])
            weights = torch.zeros(len(inputs), explainer.last_channel_weights.shape[1])
        maps[rows] = group_maps
        weights[rows] = explainer.last_channel_weights.float()
        selections = explainer.last_selections
        sizes[rows] = [selection.num_selected for selection in selections]
        variables[rows] = [selection.num_variables for selection in selections]
        solve_seconds[rows] = [selection.timings["solve"] for selection in selections]
    return Explanations(
        to_input_saliency(maps, inputs.shape[2:]), weights, seconds, sizes, variables,
        {"solve_seconds": solve_seconds.tolist()},
    )


def explain_baseline(
    method: str,
    model: nn.Module,
    layer: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    internal_batch_size: int = 64,
) -> Explanations:
    """Grad-CAM (Captum's ``LayerGradCam``), Grad-CAM++ or Score-CAM, maps ReLU-ed as in their papers.

    Grad-CAM's map and its latency come from plain ``LayerGradCam``; its channel weights (mean gradients) from
    ``LayerGradCamWithWeights`` in a separate, untimed pass.
    """
    if method == GRAD_CAM:
        explainer = LayerGradCam(model, layer)
        maps, seconds = _timed(
            lambda x, t: explainer.attribute(x, target=t, relu_attributions=True), inputs, targets
        )
        weights_explainer = LayerGradCamWithWeights(model, layer)
        weights_explainer.attribute(inputs, target=targets)
        weights = weights_explainer.last_channel_weights
    elif method in (GRAD_CAM_PP, SCORE_CAM):
        explainer = LayerGradCamPlusPlus(model, layer) if method == GRAD_CAM_PP else LayerScoreCam(model, layer)
        options = {"internal_batch_size": internal_batch_size} if method == SCORE_CAM else {}
        maps, seconds = _timed(
            lambda x, t: explainer.attribute(x, target=t, relu_attributions=True, **options), inputs, targets
        )
        weights = explainer.last_channel_weights
    else:
        raise ValueError(f"unknown baseline {method!r}; choose one of {BASELINES}")
    return Explanations(to_input_saliency(maps, inputs.shape[2:]), weights.float(), seconds)


def explain_grad_cam_top_k(
    model: nn.Module, layer: nn.Module, inputs: Tensor, targets: Tensor, k: Sequence[int]
) -> Explanations:
    """Ablation: the QUBO's map formula on the ``k[i]`` maps with the largest Grad-CAM weight α (no redundancy term).

    Same K as the QUBO per image, so any difference from the QUBO is the effect of the redundancy coupling J.
    """

    def explain(batch: Tensor, batch_targets: Tensor) -> Tensor:
        gradients, activations = compute_layer_gradients_and_eval(model, layer, (batch,), batch_targets)
        alpha = gradients[0].detach().mean(dim=(2, 3))
        # Only positive α enter the QUBO; the top-K never reaches past them either.
        chosen = top_k_mask(alpha, torch.as_tensor(np.asarray(k, dtype=int))) & (alpha > 0)
        weights.append(torch.where(chosen, alpha, torch.zeros_like(alpha)))
        return explanation_map(weights[-1], activations[0].detach())

    weights: List[Tensor] = []
    maps, seconds = _timed(explain, inputs, targets)
    return Explanations(to_input_saliency(maps, inputs.shape[2:]), weights[0].float(), seconds,
                        (weights[0] > 0).sum(1).numpy())
