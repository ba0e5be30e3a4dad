"""Input checks and batched target-probability calls shared by the model-driven metrics."""
from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
from torch import Tensor

TargetType = Union[int, Sequence[int], Tensor]


def as_target_tensor(target: TargetType, num_samples: int, device: torch.device) -> Tensor:
    """Turn a Captum-style target (int, list of ints or 1-D tensor) into a (N,) long tensor."""
    if target is None:
        raise ValueError("target is required: pass the class index to score (int, list or (N,) tensor)")
    target = torch.as_tensor(target, device=device)
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer class indices, got dtype {target.dtype}")
    if target.ndim == 0:
        target = target.expand(num_samples)
    if target.shape != (num_samples,):
        raise ValueError(f"target must be an int or have shape ({num_samples},), got {tuple(target.shape)}")
    return target.long()


def as_saliency_map(saliency: Tensor, inputs: Tensor, name: str = "saliency") -> Tensor:
    """Check a per-pixel map against (N, C, H, W) inputs and return it as (N, 1, H, W)."""
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be (N, C, H, W) images, got shape {tuple(inputs.shape)}")
    if inputs.shape[0] == 0:
        raise ValueError("inputs hold no images (N = 0); pass at least one")
    if saliency.ndim == 3:
        saliency = saliency.unsqueeze(1)
    expected = (inputs.shape[0], 1, *inputs.shape[2:])
    if saliency.ndim != 4 or tuple(saliency.shape) != expected:
        raise ValueError(
            f"{name} must be (N, 1, H, W) or (N, H, W) matching the inputs, i.e. {expected}, got "
            f"{tuple(saliency.shape)}; upsample layer attributions first, e.g. with "
            "captum.attr.LayerAttribution.interpolate(attr, inputs.shape[2:], 'bilinear')"
        )
    if not torch.isfinite(saliency).all():
        raise ValueError(f"{name} contains NaN or inf")
    return saliency.to(dtype=inputs.dtype, device=inputs.device)


@torch.no_grad()
def target_probabilities(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    target: Tensor,
    internal_batch_size: int,
) -> Tensor:
    """Softmax probability of ``target[i]`` for ``images[i]``, in chunks of ``internal_batch_size``.

    Args:
        model: maps (B, C, H, W) images to (B, num_classes) logits. Its train/eval mode is
            left as it is (put it in eval mode yourself).
        images: (M, C, H, W).
        target: (M,) long class indices.
        internal_batch_size: most images per model call.

    Returns:
        (M,) probabilities.
    """
    if internal_batch_size < 1:
        raise ValueError(f"internal_batch_size must be >= 1, got {internal_batch_size}")
    chunks = []
    for start in range(0, images.shape[0], internal_batch_size):
        logits = model(images[start : start + internal_batch_size])
        if logits.ndim != 2:
            raise ValueError(f"the model must return (batch, num_classes) logits, got shape {tuple(logits.shape)}")
        chunk_target = target[start : start + internal_batch_size]
        if chunk_target.max() >= logits.shape[1] or chunk_target.min() < 0:
            raise ValueError(f"target indices must lie in [0, {logits.shape[1]}) for this model")
        probabilities = torch.softmax(logits, dim=1, dtype=torch.promote_types(logits.dtype, torch.float32))
        chunks.append(probabilities.gather(1, chunk_target[:, None]).squeeze(1))
    return torch.cat(chunks)
