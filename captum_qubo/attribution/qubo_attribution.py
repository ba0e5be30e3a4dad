"""QuboFeatureMapAttribution: Grad-CAM restricted to the feature maps a QUBO selects (METHOD.md §1–2).

For each sample the layer's Grad-CAM weights α and feature maps define a QUBO over "keep map p?"
(:func:`captum_qubo.formulation.qubo.build_feature_map_qubo`), an injected ``dimod`` sampler solves it, and the
explanation is ``minmax(Σ_{k∈S} ReLU(α_k f_k))`` over the selected maps S, at layer resolution like
:class:`captum.attr.LayerGradCam`.
"""
from __future__ import annotations

import warnings
from time import perf_counter
from typing import Any, Callable, List, Optional, Tuple, Union

import dimod
import numpy as np
import torch
from captum._utils.common import _format_additional_forward_args, _format_tensor_into_tuples
from captum._utils.typing import TargetType
from captum.attr._utils.attribution import GradientAttribution, LayerAttribution
from captum.log import log_usage
from torch import Tensor
from torch.nn import Module

from captum_qubo.attribution.layer_evaluation import layer_gradients_and_activations, layer_name
from captum_qubo.attribution.options import QuboOptions
from captum_qubo.formulation.qubo import build_feature_map_qubo
from captum_qubo.solvers.registry import check_sampler_ready, get_sampler, sample_lowest_energy
from captum_qubo.attribution.selection import FeatureMapSelection

class QuboFeatureMapAttribution(LayerAttribution, GradientAttribution):
    r"""Explains a prediction by the few feature maps of a conv layer that a QUBO selects.

    Per sample: α_a = mean over positions of ∂z_c/∂f^(a) (the Grad-CAM weight); the maps with
    α > 0 become binary variables of E(n) = (1−β)·½ Σ J_pq n_p n_q − β Σ h_p n_p (h = α/max α,
    J = |cosine| between maps), optionally with an exact-cardinality penalty; a sampler minimises
    E; the explanation is ``minmax(Σ_{k∈S} ReLU(α_k f_k))`` over the selected maps S.

    A sample whose maps all have α ≤ 0 has nothing to select: its explanation is all zeros, its
    selection is empty and a ``RuntimeWarning`` says so.
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: Module,
        device_ids: Union[None, List[int]] = None,
        options: Optional[QuboOptions] = None,
        **option_fields: Any,
    ) -> None:
        r"""
        Args:
            forward_func (Callable): The model or any function returning its outputs.
            layer (torch.nn.Module): A layer whose output (or input, see ``attribute``) is a
                        single (N, C, H, W) tensor; usually the last convolutional block.
            device_ids (list[int], optional): As for :class:`captum.attr.LayerGradCam`, only
                        needed when ``forward_func`` applies a DataParallel model.
            options (QuboOptions, optional): How maps are selected (sampler, its kwargs,
                        formulation, k, β, seed, max_variables); see
                        :class:`~captum_qubo.attribution.options.QuboOptions`.
            **option_fields: The same fields as keywords (``sampler="exact"``, ``k=5`` ...),
                        applied over ``options``; an unknown name is a TypeError.
        """
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        GradientAttribution.__init__(self, forward_func)
        self.options = QuboOptions.from_kwargs(options, **option_fields)
        self.sampler_spec = self.options.resolved_sampler
        self.sampler_kwargs = self.options.resolved_sampler_kwargs
        self.seed = self.options.resolved_seed
        self.formulation = self.options.formulation
        self.k = self.options.k
        self.beta = self.options.beta
        self.max_variables = self.options.max_variables
        self._sampler: Optional[dimod.Sampler] = None
        self.last_selections: List[FeatureMapSelection] = []
        self.last_channel_weights: Optional[Tensor] = None

    @log_usage()
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        attribute_to_layer_input: bool = False,
    ) -> Tensor:
        r"""
        Args:
            inputs (Tensor or tuple[Tensor, ...]): Input batch(es), dimension 0 = samples.
            target (int, list, Tensor or tuple, optional): Output index to explain, as in
                        Captum: one int for every sample, or one per sample (list / 1-D tensor).
            additional_forward_args (Any, optional): Extra arguments for ``forward_func``.
            attribute_to_layer_input (bool): Use the layer's input instead of its output.

        Returns:
            *Tensor* of shape (N, 1, H, W) at the layer's resolution, min-max normalised per
            sample to [0, 1]. Upsample with ``LayerAttribution.interpolate``. The selections are
            in ``self.last_selections`` and α on the selected maps in ``self.last_channel_weights``.
        """
        self.last_selections, self.last_channel_weights = [], None  # never leave a stale result
        check_sampler_ready(self.sampler_spec)
        sampler = self._resolve_sampler()
        inputs = _format_tensor_into_tuples(inputs)
        num_samples = inputs[0].shape[0]
        targets = per_sample_targets(target, num_samples)

        # Inference tensors cannot be saved for backward, so explaining inside
        # torch.inference_mode() works on ordinary copies with autograd switched back on.
        with torch.inference_mode(False), torch.enable_grad():
            inputs = tuple(_ordinary(tensor) for tensor in inputs)
            extra_args = _format_additional_forward_args(additional_forward_args)
            if extra_args is not None:
                extra_args = tuple(_ordinary(arg) for arg in extra_args)
            target = _ordinary(target)
            start = perf_counter()
            gradients, activations = layer_gradients_and_activations(
                self.forward_func,
                self.layer,
                inputs,
                target,
                extra_args,
                self.device_ids,
                attribute_to_layer_input,
            )
            forward_backward = perf_counter() - start
        importance = gradients.mean(dim=(2, 3))
        self._check_cardinality(activations.shape[1])

        importance_np = importance.double().cpu().numpy()
        activations_np = activations.double().cpu().numpy()
        selections = [
            self._select(importance_np[i], activations_np[i], sampler, targets[i], forward_backward / num_samples, i)
            for i in range(num_samples)
        ]
        selected = torch.zeros_like(importance, dtype=torch.bool)
        for i, selection in enumerate(selections):
            selected[i, torch.as_tensor(selection.channels, dtype=torch.long, device=selected.device)] = True
        channel_weights = torch.where(selected, importance, torch.zeros_like(importance))
        self.last_selections = selections
        self.last_channel_weights = channel_weights
        return explanation_map(channel_weights, activations)

    def _resolve_sampler(self) -> dimod.Sampler:
        if self._sampler is None:
            self._sampler = get_sampler(self.sampler_spec)
        return self._sampler

    def _check_cardinality(self, num_channels: int) -> None:
        if self.k is not None and self.k > num_channels:
            raise ValueError(
                f"k={self.k} but {layer_name(self.forward_func, self.layer)} has only {num_channels} "
                f"feature maps; choose k <= {num_channels}"
            )

    def _select(
        self,
        importance: np.ndarray,
        feature_maps: np.ndarray,
        sampler: dimod.Sampler,
        target: Any,
        forward_backward: float,
        index: int,
    ) -> FeatureMapSelection:
        start = perf_counter()
        try:
            qubo = build_feature_map_qubo(
                self._cap_variables(importance), feature_maps, self.beta, self.formulation, self.k
            )
        except ValueError as error:
            raise ValueError(f"sample {index} (target {target}): {error}") from error
        build = perf_counter() - start
        d = qubo.num_variables
        if d == 0:
            warnings.warn(
                f"sample {index} (target {target}): no feature map has positive importance, so nothing "
                "is selected and its explanation is all zeros. Check the target or explain another layer.",
                RuntimeWarning,
                stacklevel=3,
            )
            channels, energy, info, solve_time = np.zeros(0, dtype=np.int64), 0.0, {}, 0.0
        else:
            limit = dict(getattr(sampler, "properties", {}) or {}).get("max_num_variables")
            if limit is not None and d > limit:
                raise ValueError(
                    f"sample {index} has d={d} variables but sampler {_sampler_name(sampler)} handles at "
                    f"most {limit}; pass max_variables={limit} or use a heuristic sampler such as 'sa'"
                )
            start = perf_counter()
            best = sample_lowest_energy(qubo.to_bqm(), sampler, self.seed, **self.sampler_kwargs)
            solve_time = perf_counter() - start
            channels, energy, info = np.sort(qubo.selected_channels(best.state)), best.energy, best.info
        return FeatureMapSelection(
            channels=channels.astype(np.int64),
            importance=importance,
            energy=float(energy),
            num_variables=d,
            sampler=self.sampler_spec if isinstance(self.sampler_spec, str) else _sampler_name(sampler),
            info=info,
            timings={"forward_backward": forward_backward, "build": build, "solve": solve_time},
            qubo=qubo,
            target=target,
        )

    def _cap_variables(self, importance: np.ndarray) -> np.ndarray:
        """α with all but the ``max_variables`` largest positive entries set to 0 (pre-filtered)."""
        if self.max_variables is None or np.count_nonzero(importance > 0) <= self.max_variables:
            return importance
        keep = np.argsort(-importance, kind="stable")[: self.max_variables]
        capped = np.zeros_like(importance)
        capped[keep] = importance[keep]
        return capped


def explanation_map(channel_weights: Tensor, feature_maps: Tensor) -> Tensor:
    """METHOD.md §2: minmax(Σ_k ReLU(w_k f_k)) per sample, ReLU per map before summing.

    Args:
        channel_weights: (N, C) α on the selected maps, 0 elsewhere.
        feature_maps: (N, C, H, W) the layer's activations.

    Returns:
        (N, 1, H, W) in [0, 1]; all zeros for a sample whose sum is constant (e.g. nothing selected).
    """
    summed = torch.relu(channel_weights[:, :, None, None] * feature_maps).sum(dim=1, keepdim=True)
    low = summed.amin(dim=(2, 3), keepdim=True)
    span = summed.amax(dim=(2, 3), keepdim=True) - low
    return torch.where(span > 0, (summed - low) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)


def per_sample_targets(target: TargetType, num_samples: int) -> List[Any]:
    """One target per sample (int, tuple or None), validating the Captum target formats."""
    if target is None or isinstance(target, (int, tuple)):
        return [target] * num_samples
    if isinstance(target, Tensor):
        if target.numel() == 1:
            return [int(target.item())] * num_samples
        if target.dim() != 1 or target.numel() != num_samples:
            raise ValueError(
                f"a target tensor must be a scalar or 1-D with one entry per sample ({num_samples}), "
                f"got shape {tuple(target.shape)}"
            )
        return [int(t) for t in target.tolist()]
    if isinstance(target, list):
        if len(target) != num_samples:
            raise ValueError(
                f"a target list needs one entry per sample: {num_samples} samples, {len(target)} targets"
            )
        return [int(t) if isinstance(t, (int, np.integer)) else t for t in target]
    raise TypeError(f"target must be None, an int, a tuple, a list or a tensor, got {type(target).__name__}")


def _ordinary(value: Any) -> Any:
    """An ordinary (non-inference) copy of an inference tensor; anything else unchanged."""
    return value.clone() if isinstance(value, Tensor) and value.is_inference() else value


def _sampler_name(sampler: dimod.Sampler) -> str:
    return getattr(sampler, "name", None) or type(sampler).__name__
