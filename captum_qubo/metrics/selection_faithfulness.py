"""Sufficiency and comprehensiveness of a feature-map selection, measured at the layer itself.

A method that explains a prediction by a set S of a layer's feature maps makes a testable claim: the maps in S
carry the evidence. We test it by intervening on the layer (Captum's :class:`captum.attr.LayerFeatureAblation`,
one call per batch, two groups per sample: S and the rest):

- **sufficiency** = p_c(x | only S kept): the target's softmax probability when every map outside S is removed;
- **comprehensiveness** = p_c(x) − p_c(x | S removed): how much the probability drops when S is removed.

Both are higher-is-better. "Removed" replaces a map, at every position, by its removal value: ``"zero"`` (0), or
``"mean"`` (the map's mean over a reference set of images, from :func:`reference_map_means`, so removal moves the
layer towards a typical input rather than off the data). Keeping all maps gives sufficiency p_c(x) and
comprehensiveness p_c(x) − p_c(all removed); an empty selection gives comprehensiveness 0.

:func:`selection_probabilities` computes the three probabilities; :class:`Sufficiency` and
:class:`Comprehensiveness` accumulate them (torchmetrics, synced across processes); :func:`selection_curve` gives
both as a curve over K for a ranking of the maps (top-K by any channel weights).
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple, Union

import torch
from captum.attr import LayerFeatureAblation
from torch import Tensor
from torch.nn import Module
from torchmetrics import Metric

from captum_qubo.metrics._model_inputs import TargetType, as_target_tensor
from captum_qubo.metrics.disentanglement import top_k_mask

Removal = Union[str, Tensor]


@torch.no_grad()
def reference_map_means(model: Callable[[Tensor], Tensor], layer: Module, reference: Tensor) -> Tensor:
    """(C,) each feature map's mean over a reference set of images (all positions), for ``removal=``.

    Args:
        model: the model; ``layer`` must run during its forward.
        layer: the explained layer, whose output is (N, C, H, W).
        reference: (M, ...) reference images as the model expects them (e.g. training images).
    """
    captured = []
    handle = layer.register_forward_hook(lambda _module, _inputs, output: captured.append(output.detach()))
    try:
        model(reference)
    finally:
        handle.remove()
    return captured[0].mean(dim=(0, 2, 3))


def selection_probabilities(
    model: Callable[[Tensor], Tensor],
    layer: Module,
    inputs: Tensor,
    selected: Tensor,
    target: TargetType,
    removal: Removal = "zero",
) -> Tuple[Tensor, Tensor, Tensor]:
    """Target probabilities on the image, with only the selected maps kept, and with them removed.

    Args:
        model: (N, ...) inputs → (N, classes) logits (eval mode is the caller's job).
        layer: the layer whose maps were selected; its output is (N, C, H, W).
        inputs: (N, ...) images.
        selected: (N, C) bool, the maps each sample's explanation keeps.
        target: class per sample (int, list or (N,) tensor).
        removal: ``"zero"``, or a (C,) tensor of removal values (``reference_map_means``).

    Returns:
        ``(base, kept, removed)``, each (N,): p_c(x), p_c(x | only S), p_c(x | S removed).
    """
    selected = torch.as_tensor(selected, dtype=torch.bool, device=inputs.device)
    if selected.ndim != 2 or selected.shape[0] != inputs.shape[0]:
        raise ValueError(f"selected must be (N, C) with N = {inputs.shape[0]} samples, got {tuple(selected.shape)}")
    target = as_target_tensor(target, inputs.shape[0], inputs.device)
    if isinstance(removal, str):
        if removal != "zero":
            raise ValueError(f"removal must be 'zero' or a (C,) tensor of map means, got {removal!r}")
        baseline = 0.0
    else:
        removal = torch.as_tensor(removal, device=inputs.device, dtype=inputs.dtype)  # the model's precision
        if removal.shape != (selected.shape[1],):
            raise ValueError(
                f"removal values must be (C,) = ({selected.shape[1]},), got {tuple(removal.shape)}; "
                "use reference_map_means(model, layer, reference_images)"
            )
        baseline = removal[None, :, None, None]

    def probabilities(batch: Tensor) -> Tensor:
        return torch.softmax(model(batch), dim=1)

    with torch.no_grad():
        base = probabilities(inputs).gather(1, target[:, None]).squeeze(1)
    # Group 0 = the selection, group 1 = the rest; ablating a group gives base − p(group removed).
    layer_mask = (~selected).long()[:, :, None, None]
    ablation = LayerFeatureAblation(probabilities, layer)
    drop = ablation.attribute(inputs, layer_baselines=baseline, target=target, layer_mask=layer_mask)
    drop = drop.detach().flatten(2)[:, :, 0]  # (N, C): each channel carries its group's drop
    has_selected, has_rest = selected.any(dim=1), (~selected).any(dim=1)
    drop_selected = (drop * selected).sum(1) / selected.sum(1).clamp(min=1)
    drop_rest = (drop * ~selected).sum(1) / (~selected).sum(1).clamp(min=1)
    removed = torch.where(has_selected, base - drop_selected, base)
    kept = torch.where(has_rest, base - drop_rest, base)
    return base, kept, removed


class _MeanOf(Metric):
    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("value_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def _add(self, values: Tensor) -> None:
        self.value_sum += values.double().sum().to(self.value_sum)
        self.total += values.numel()

    def compute(self) -> Tensor:
        return self.value_sum / self.total

    def plot(self, val=None, ax=None):
        """Plot one or more computed values (torchmetrics convention); returns ``(fig, ax)``."""
        return self._plot(val, ax)


class Sufficiency(_MeanOf):
    """Mean p_c(x | only the selected maps kept); higher is better, in [0, 1].

    ``update(kept)`` takes the (N,) ``kept`` probabilities of :func:`selection_probabilities`. NaN before any update.
    """

    def update(self, kept: Tensor) -> None:
        self._add(torch.as_tensor(kept).flatten())


class Comprehensiveness(_MeanOf):
    """Mean p_c(x) − p_c(x | the selected maps removed); higher is better, in [−1, 1].

    ``update(base, removed)`` takes the (N,) ``base`` and ``removed`` probabilities of
    :func:`selection_probabilities`. NaN before any update.
    """

    plot_lower_bound = -1.0

    def update(self, base: Tensor, removed: Tensor) -> None:
        base, removed = torch.as_tensor(base).flatten(), torch.as_tensor(removed).flatten()
        if base.shape != removed.shape:
            raise ValueError(f"base and removed must have the same length, got {base.numel()} and {removed.numel()}")
        self._add(base - removed)


def selection_curve(
    model: Callable[[Tensor], Tensor],
    layer: Module,
    inputs: Tensor,
    channel_weights: Tensor,
    target: TargetType,
    ks: Sequence[int],
    removal: Removal = "zero",
) -> Dict[str, Tensor]:
    """Sufficiency and comprehensiveness of each sample's top-K maps (by ``channel_weights``) for every K in ``ks``.

    Args:
        channel_weights: (N, C) the ranking, e.g. a baseline's ``last_channel_weights`` or a contribution.
        ks: the selection sizes, each in [0, C].
        (the rest as for :func:`selection_probabilities`)

    Returns:
        ``{"k": (len(ks),), "sufficiency": (len(ks),), "comprehensiveness": (len(ks),)}``, means over samples.
    """
    sufficiency, comprehensiveness = [], []
    for k in ks:
        base, kept, removed = selection_probabilities(
            model, layer, inputs, top_k_mask(channel_weights, int(k)), target, removal
        )
        sufficiency.append(kept.mean())
        comprehensiveness.append((base - removed).mean())
    return {
        "k": torch.as_tensor(list(ks)),
        "sufficiency": torch.stack(sufficiency),
        "comprehensiveness": torch.stack(comprehensiveness),
    }
