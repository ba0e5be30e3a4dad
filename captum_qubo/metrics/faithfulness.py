"""Average Drop and Increase in Confidence (Chattopadhyay et al., Grad-CAM++, METHOD.md §5).

Both compare the softmax probability of the target class on the image, y_c, with the one on the
image multiplied by its explanation map, o_c (map in [0, 1], upsampled to the image size).
:func:`masked_confidences` computes the two score vectors from a model; the metrics only need the
scores, so they accumulate two scalar "sum" states and sync across processes.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torchmetrics import Metric

from captum_qubo.metrics._model_inputs import TargetType, as_saliency_map, as_target_tensor, target_probabilities

# Bilinear upsampling of a [0, 1] map can overshoot by rounding; anything beyond this is a wrong map.
SALIENCY_RANGE_TOLERANCE = 1e-5


def _check_scores(base_scores: Tensor, masked_scores: Tensor) -> Tuple[Tensor, Tensor]:
    base_scores = torch.as_tensor(base_scores)
    masked_scores = torch.as_tensor(masked_scores)
    if base_scores.ndim != 1 or base_scores.shape != masked_scores.shape:
        raise ValueError(
            "base_scores and masked_scores must be 1-D with the same length (N,), got "
            f"{tuple(base_scores.shape)} and {tuple(masked_scores.shape)}"
        )
    for name, scores in (("base_scores", base_scores), ("masked_scores", masked_scores)):
        if not (torch.isfinite(scores) & (scores >= 0) & (scores <= 1)).all():
            raise ValueError(f"{name} must be softmax probabilities in [0, 1]; apply softmax to the logits")
    if (base_scores <= 0).any():
        raise ValueError("base_scores must be > 0: Average Drop divides by the score on the unmasked image")
    return base_scores, masked_scores


def masked_confidences(
    model: Callable[[Tensor], Tensor],
    inputs: Tensor,
    saliency: Tensor,
    target: TargetType,
    internal_batch_size: int = 64,
) -> Tuple[Tensor, Tensor]:
    """Softmax probability of the target on each image and on the image ⊙ its explanation map.

    Args:
        model: maps (B, C, H, W) to (B, num_classes) logits; its train/eval mode is left alone
            (put it in eval mode yourself) and no gradients are taken.
        inputs: (N, C, H, W) images as the model expects them (normalised).
        saliency: (N, 1, H, W) or (N, H, W) explanation maps in [0, 1] at the input resolution.
        target: class to score: int, list of N ints or (N,) tensor.
        internal_batch_size: most images per model call.

    Returns:
        ``(base_scores, masked_scores)``, each (N,): y_c on ``inputs`` and o_c on ``inputs * saliency``.
    """
    base_scores, (masked_scores,) = masked_confidences_of_methods(model, inputs, [saliency], target,
                                                                  internal_batch_size)
    return base_scores, masked_scores


def masked_confidences_of_methods(
    model: Callable[[Tensor], Tensor],
    inputs: Tensor,
    saliencies: Sequence[Tensor],
    target: TargetType,
    internal_batch_size: int = 64,
    base_scores: Optional[Tensor] = None,
) -> Tuple[Tensor, List[Tensor]]:
    """:func:`masked_confidences` for several methods' maps of the same images, scoring the images once.

    Args:
        base_scores: (N,) y_c when already known, e.g. the softmax of an explainer's own forward pass
            (``QuboFeatureMapAttribution.last_outputs``): the unmasked images are then not scored again.
        The others as for :func:`masked_confidences`; the scoring passes run under ``torch.no_grad``.

    Returns:
        ``(base_scores, [masked_scores per map set])``.
    """
    maps = [as_saliency_map(saliency, inputs) for saliency in saliencies]
    for saliency in maps:
        low, high = torch.aminmax(saliency)
        if low < -SALIENCY_RANGE_TOLERANCE or high > 1 + SALIENCY_RANGE_TOLERANCE:
            raise ValueError(
                f"saliency must lie in [0, 1] (got [{low.item():.4g}, {high.item():.4g}]); "
                "min-max normalise each map first"
            )
    target = as_target_tensor(target, inputs.shape[0], inputs.device)
    if base_scores is not None and tuple(base_scores.shape) != (inputs.shape[0],):
        raise ValueError(f"base_scores must be (N,) = ({inputs.shape[0]},), got {tuple(base_scores.shape)}")
    images = ([] if base_scores is not None else [inputs]) + [inputs * saliency.clamp(0.0, 1.0) for saliency in maps]
    if not images:
        return base_scores, []
    with torch.no_grad():
        scores = target_probabilities(model, torch.cat(images), target.repeat(len(images)), internal_batch_size)
    if base_scores is None:
        base_scores, scores = scores[: inputs.shape[0]], scores[inputs.shape[0]:]
    return base_scores, list(scores.split(inputs.shape[0]))


class AverageDrop(Metric):
    """Average Drop %: mean over images of max(0, y_c − o_c) / y_c · 100.

    Lower is better; range [0, 100] (0: masking by the explanation never lowers the target's
    confidence; 100: it always drives it to zero).

    ``update(base_scores, masked_scores)`` takes (N,) softmax probabilities y_c (image) and o_c
    (image ⊙ explanation map), e.g. from :func:`masked_confidences`. ``compute()`` returns a scalar;
    NaN before any update.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 100.0

    drop_sum: Tensor
    total: Tensor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("drop_sum", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, base_scores: Tensor, masked_scores: Tensor) -> None:
        base_scores, masked_scores = _check_scores(base_scores, masked_scores)
        relative_drop = (base_scores - masked_scores).clamp(min=0) / base_scores
        self.drop_sum += relative_drop.sum().to(self.drop_sum)
        self.total += base_scores.numel()

    def compute(self) -> Tensor:
        return 100.0 * self.drop_sum / self.total

    def plot(self, val=None, ax=None):
        """Plot one or more computed values (torchmetrics convention); returns ``(fig, ax)``."""
        return self._plot(val, ax)


class IncreaseInConfidence(Metric):
    """Increase in Confidence %: share of images with o_c > y_c, times 100.

    Higher is better; range [0, 100] (the share of images whose target confidence rises when only
    the explained region is kept). ``update`` takes the same (N,) score vectors as
    :class:`AverageDrop`; ``compute()`` returns a scalar, NaN before any update.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 100.0

    increased: Tensor
    total: Tensor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("increased", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, base_scores: Tensor, masked_scores: Tensor) -> None:
        base_scores, masked_scores = _check_scores(base_scores, masked_scores)
        self.increased += (masked_scores > base_scores).sum().to(self.increased)
        self.total += base_scores.numel()

    def compute(self) -> Tensor:
        return 100.0 * self.increased / self.total

    def plot(self, val=None, ax=None):
        """Plot one or more computed values (torchmetrics convention); returns ``(fig, ax)``."""
        return self._plot(val, ax)
