"""Deletion and insertion AUC (Petsiuk et al., RISE, 2018).

Pixels are ranked by saliency (highest first; ties go to the lower row-major pixel index, so the
order is deterministic). Deletion starts from the image and replaces the top-ranked pixels (all
channels) by a baseline image; insertion starts from the baseline and restores the image's
top-ranked pixels. After step i of S, m_i = ⌊i·P/S⌋ of the P pixels have been changed. The curve
is the softmax probability of the target class against the exact fraction m_i / P ∈ [0, 1]; the
score is its trapezoid area. A faithful map makes deletion fall fast (low AUC) and insertion rise
fast (high AUC).
"""
from __future__ import annotations

import math
from typing import Callable, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from captum_qubo.metrics._model_inputs import TargetType, as_saliency_map, as_target_tensor, target_probabilities

BASELINES = ("zeros", "blur", "mean")
MODES = ("deletion", "insertion")
BaselineType = Union[str, Tensor]


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (N, C, H, W) images, edges replicated.

    Same kernel as ``scipy.ndimage.gaussian_filter(mode="nearest", truncate=3.0)`` per channel:
    radius ⌊3σ + 0.5⌋, weights exp(−x²/2σ²) normalised to sum 1.
    """
    if sigma <= 0:
        raise ValueError(f"blur_sigma must be > 0, got {sigma}")
    radius = int(3.0 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    n, c, h, w = images.shape
    planes = images.reshape(n * c, 1, h, w)
    planes = F.conv2d(F.pad(planes, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    planes = F.conv2d(F.pad(planes, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return planes.reshape(n, c, h, w)


def make_baseline(inputs: Tensor, baseline: BaselineType, blur_sigma: float = 5.0) -> Tensor:
    """The image that deleted pixels take (deletion) or that insertion starts from.

    Args:
        inputs: (N, C, H, W) images as the model sees them (zeros are zeros in that space).
        baseline: ``"zeros"``; ``"blur"`` (Gaussian blur with ``blur_sigma`` pixels); ``"mean"``
            (each image's per-channel mean); or a tensor broadcastable to ``inputs``.
        blur_sigma: standard deviation of the blur, in pixels.

    Returns:
        (N, C, H, W) baseline images.
    """
    if isinstance(baseline, Tensor):
        try:
            return torch.broadcast_to(baseline.to(inputs), inputs.shape)
        except RuntimeError as error:
            raise ValueError(
                f"a tensor baseline must broadcast to the inputs' shape {tuple(inputs.shape)}, "
                f"got {tuple(baseline.shape)}"
            ) from error
    if baseline == "zeros":
        return torch.zeros_like(inputs)
    if baseline == "mean":
        return inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs)
    if baseline == "blur":
        return gaussian_blur(inputs, blur_sigma)
    raise ValueError(f"baseline must be one of {BASELINES} or a tensor, got {baseline!r}")


def pixel_ranks(saliency: Tensor) -> Tensor:
    """(N, 1, H, W) rank of each pixel, 0 = most salient; ties to the lower row-major index."""
    flat = saliency.flatten(1)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions).view_as(saliency)


def deletion_insertion_curve(
    model: Callable[[Tensor], Tensor],
    inputs: Tensor,
    saliency: Tensor,
    target: TargetType,
    mode: str = "deletion",
    steps: int = 100,
    baseline: BaselineType = "zeros",
    blur_sigma: float = 5.0,
    internal_batch_size: int = 64,
) -> Tuple[Tensor, Tensor]:
    """Target probability as pixels are deleted or inserted in saliency order.

    Args:
        model: maps (B, C, H, W) to (B, num_classes) logits; mode left alone, no gradients taken.
        inputs: (N, C, H, W) images.
        saliency: (N, 1, H, W) or (N, H, W) maps at input resolution; only their order matters.
        target: class to score: int, list of N ints or (N,) tensor.
        mode: ``"deletion"`` or ``"insertion"``.
        steps: number of steps S (capped at the pixel count P); the model sees N·(S + 1) images.
        baseline: see :func:`make_baseline`.
        blur_sigma: blur width in pixels for ``baseline="blur"``.
        internal_batch_size: most perturbed images built and scored at once.

    Returns:
        ``(fractions, probabilities)``: (S + 1,) fractions m_i / P from 0 to 1, and (N, S + 1)
        softmax probabilities of the target at each step.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    saliency = as_saliency_map(saliency, inputs)
    target = as_target_tensor(target, inputs.shape[0], inputs.device)
    if internal_batch_size < 1:
        raise ValueError(f"internal_batch_size must be >= 1, got {internal_batch_size}")
    background = make_baseline(inputs, baseline, blur_sigma)
    num_pixels = math.prod(inputs.shape[2:])
    steps = min(steps, num_pixels)
    changed = torch.div(torch.arange(steps + 1, device=inputs.device) * num_pixels, steps, rounding_mode="floor")
    ranks = pixel_ranks(saliency)
    start, end = (inputs, background) if mode == "deletion" else (background, inputs)

    probabilities = []
    num_curve_points = inputs.shape[0] * (steps + 1)
    for first in range(0, num_curve_points, internal_batch_size):
        point = torch.arange(first, min(first + internal_batch_size, num_curve_points), device=inputs.device)
        sample, step = point // (steps + 1), point % (steps + 1)
        is_changed = ranks[sample] < changed[step].view(-1, 1, 1, 1)
        images = torch.where(is_changed, end[sample], start[sample])
        probabilities.append(target_probabilities(model, images, target[sample], internal_batch_size))
    fractions = changed.double() / num_pixels
    return fractions, torch.cat(probabilities).view(inputs.shape[0], steps + 1)


class _PerturbationAUC(Metric):
    """Mean deletion/insertion AUC; states are a summed AUC and an image count."""

    is_differentiable = False
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0
    mode: str

    auc_sum: Tensor
    total: Tensor

    def __init__(
        self,
        steps: int = 100,
        baseline: BaselineType = "zeros",
        blur_sigma: float = 5.0,
        internal_batch_size: int = 64,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if steps < 1 or internal_batch_size < 1 or blur_sigma <= 0:
            raise ValueError("steps and internal_batch_size must be >= 1 and blur_sigma > 0")
        if not isinstance(baseline, Tensor) and baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES} or a tensor, got {baseline!r}")
        self.steps = steps
        self.baseline = baseline
        self.blur_sigma = blur_sigma
        self.internal_batch_size = internal_batch_size
        self.add_state("auc_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, model: Callable[[Tensor], Tensor], inputs: Tensor, saliency: Tensor, target: TargetType) -> None:
        """Score N explanations: see :func:`deletion_insertion_curve` for the arguments."""
        fractions, probabilities = deletion_insertion_curve(
            model, inputs, saliency, target, self.mode, self.steps, self.baseline, self.blur_sigma,
            self.internal_batch_size,
        )
        areas = torch.trapezoid(probabilities.double(), fractions.to(probabilities.device), dim=1)
        self.auc_sum += areas.sum().to(self.auc_sum)
        self.total += inputs.shape[0]

    def compute(self) -> Tensor:
        return self.auc_sum / self.total

    def plot(self, val=None, ax=None):
        """Plot one or more computed values (torchmetrics convention); returns ``(fig, ax)``."""
        return self._plot(val, ax)


class DeletionAUC(_PerturbationAUC):
    """Mean area under the deletion curve. Lower is better; range [0, 1].

    ``update(model, inputs, saliency, target)``; RISE's default baseline for deletion is zeros
    (in the model's input space). See the module docstring for the procedure.
    """

    higher_is_better = False
    mode = "deletion"


class InsertionAUC(_PerturbationAUC):
    """Mean area under the insertion curve. Higher is better; range [0, 1].

    ``update(model, inputs, saliency, target)``; RISE inserts into a blurred copy of the image,
    so the default baseline here is ``"blur"``.
    """

    higher_is_better = True
    mode = "insertion"

    def __init__(self, steps: int = 100, baseline: BaselineType = "blur", blur_sigma: float = 5.0,
                 internal_batch_size: int = 64, **kwargs) -> None:
        super().__init__(steps, baseline, blur_sigma, internal_batch_size, **kwargs)
