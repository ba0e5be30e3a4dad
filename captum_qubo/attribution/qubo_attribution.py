"""QuboFeatureMapAttribution: Grad-CAM restricted to the feature maps a QUBO selects (METHOD.md §1–2).

For each sample the layer's Grad-CAM weights α and feature maps define a QUBO over "keep map p?"
(:func:`captum_qubo.formulation.qubo.build_feature_map_qubo`), an injected ``dimod`` sampler solves it, and the
explanation is ``minmax(Σ_{k∈S} ReLU(α_k f_k))`` over the selected maps S, at layer resolution like
:class:`captum.attr.LayerGradCam`.
"""
from __future__ import annotations

import warnings
from functools import partial
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

from captum_qubo.attribution.layer_evaluation import (
    layer_gradients_and_activations,
    layer_margin_gradients_and_activations,
    layer_name,
)
from captum_qubo.attribution.options import QuboOptions
from captum_qubo.model_access import find_layer
from captum_qubo.formulation.batched import (
    BatchedFeatureMapQubo,
    SampleQuboError,
    build_batched_qubos,
    states_to_channels,
)
from captum_qubo.formulation.importance import MARGIN_IMPORTANCES, map_importance
from captum_qubo.formulation.qubo import build_feature_map_qubo
from captum_qubo.solvers.batch import solve_batch
from captum_qubo.solvers.registry import check_sampler_ready, get_sampler
from captum_qubo.attribution.selection import FeatureMapSelection

#: Coupling tensors at least this large are kept for the next batch. glibc maps blocks this size fresh from the
#: kernel on every allocation (page faults); smaller ones come from the heap's own free memory, and keeping one
#: alive between epochs would pin the heap (the resident set then grows in a training run).
REUSED_COUPLING_BYTES = 32 << 20


class QuboFeatureMapAttribution(LayerAttribution, GradientAttribution):
    r"""Explains a prediction by the few feature maps of a conv layer that a QUBO selects.

    Per sample: α_a = mean over positions of ∂z_c/∂f^(a) (the Grad-CAM weight) and an importance s_a
    (``options.importance``: the default contribution α_a·Σ_ij f^(a)_ij, the paper's α itself, ...); the
    maps with s > 0 become binary variables of E(n) = (1−β)·½ Σ J_pq n_p n_q − β Σ h_p n_p (h = s/max s,
    J = |cosine| between maps), optionally with an exact-cardinality penalty; a sampler minimises
    E; the explanation is ``minmax(Σ_{k∈S} ReLU(α_k f_k))`` over the selected maps S.
    ``QuboOptions.preset("paper")`` is the paper's formulation (s = α, β = 0.7).

    A sample whose maps all have importance ≤ 0 has nothing to select: its explanation is all zeros, its
    selection is empty and a ``RuntimeWarning`` says so.

    On a CPU the explainer keeps the (B, D, D) coupling tensor of its last freshly allocated batch, when that is at
    least :data:`REUSED_COUPLING_BYTES`, and fills it again for the next batch that fits (~100 MB in float64 for 64
    EfficientNet head QUBOs): a fresh tensor of that size costs a CPU about as much in page faults as the matmul
    that fills it (CUDA's caching allocator needs no such help). :meth:`release_workspace` or deleting the explainer
    frees it. Like the ``last_*`` attributes, this makes one explainer unsafe to share between threads.
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: Union[Module, str],
        device_ids: Union[None, List[int]] = None,
        options: Optional[QuboOptions] = None,
        **option_fields: Any,
    ) -> None:
        r"""
        Args:
            forward_func (Callable): The model or any function returning its outputs.
            layer (torch.nn.Module or str): A layer whose output (or input, see ``attribute``) is a
                        single (N, C, H, W) tensor; usually the last convolutional block. A dotted
                        name (``"features.7"``) is looked up on ``forward_func`` (an ``nn.Module``).
            device_ids (list[int], optional): As for :class:`captum.attr.LayerGradCam`, only
                        needed when ``forward_func`` applies a DataParallel model.
            options (QuboOptions, optional): How maps are selected (sampler, its kwargs,
                        formulation, k, β, seed, max_variables); see
                        :class:`~captum_qubo.attribution.options.QuboOptions`.
            **option_fields: The same fields as keywords (``sampler="exact"``, ``k=5`` ...),
                        applied over ``options``; an unknown name is a TypeError.
        """
        if isinstance(layer, str):
            if not isinstance(forward_func, Module):
                raise TypeError(
                    f"layer={layer!r} is a dotted name, which needs forward_func to be the nn.Module holding it; "
                    "pass the layer module itself"
                )
            layer = find_layer(forward_func, layer)
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
        self.last_gradient_weights: Optional[Tensor] = None
        self.last_activations: Optional[Tensor] = None
        self.last_outputs: Optional[Tensor] = None
        # J of the last batch, reused by the next one (see build_batched_qubos' coupling_buffer).
        self._coupling_buffer: Optional[Tensor] = None

    @log_usage()
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        attr_dim_summation: bool = True,
        normalize: bool = True,
    ) -> Tensor:
        r"""
        Args:
            inputs (Tensor or tuple[Tensor, ...]): Input batch(es), dimension 0 = samples.
            target (int, list, Tensor or tuple, optional): Output index to explain, as in
                        Captum: one int for every sample, or one per sample (list / 1-D tensor).
            additional_forward_args (Any, optional): Extra arguments for ``forward_func``.
            attribute_to_layer_input (bool): Use the layer's input instead of its output.
            relu_attributions (bool): True (default, the paper's map): each selected map
                        contributes ReLU(α_k f_k), so the map is non-negative. False: the signed
                        α_k f_k, as ``LayerGradCam`` without its ReLU. (Captum's ``LayerGradCam``
                        applies one ReLU after summing; the paper applies it per map.)
            attr_dim_summation (bool): True: sum over the selected maps, (N, 1, H, W). False:
                        one channel per feature map, (N, C, H, W), zero for maps not selected.
            normalize (bool): min-max normalise each sample's map to [0, 1] (per sample over all
                        channels). False keeps the scale of α·f, for scale-aware comparisons
                        (infidelity, sensitivity).

        Returns:
            *Tensor* at the layer's resolution. Upsample with ``LayerAttribution.interpolate``.
            The selections are in ``self.last_selections``, α on the selected maps in
            ``self.last_channel_weights``; α of every map (the Grad-CAM weights) in
            ``self.last_gradient_weights`` and the layer's (N, C, h, w) activations in
            ``self.last_activations``, so a Grad-CAM comparison needs no second pass; the model's
            output of the explained forward pass (detached) is in ``self.last_outputs``, so scoring
            the unmasked inputs needs none either (under ``NoiseTunnel``: the outputs of the last call's
            noisy copies). With
            ``importance="contrastive"`` α is the margin's, ∂(z_c − z_r)/∂f averaged, and each
            selection's ``runner_up`` names r.

        Under :class:`captum.attr.NoiseTunnel` every noisy copy is a sample of its own, so each
        copy gets its own selection (``last_selections`` then holds one per copy) and the tunnel
        averages maps built from possibly different maps.
        """
        # Never leave a stale result.
        self.last_selections, self.last_channel_weights = [], None
        self.last_gradient_weights = self.last_activations = self.last_outputs = None
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
            runner_up, outputs = None, []
            arguments = (self.forward_func, self.layer, inputs, target, extra_args, self.device_ids,
                         attribute_to_layer_input)
            if self.options.importance in MARGIN_IMPORTANCES:  # one pass on the margin z_c − z_r
                gradients, activations, runner_up = layer_margin_gradients_and_activations(*arguments, outputs=outputs)
            else:
                gradients, activations = layer_gradients_and_activations(*arguments, outputs=outputs)
            forward_backward = perf_counter() - start
        # The map's weight (METHOD.md §2) whatever the QUBO rewards: α of the explained score (z_c, or the
        # margin z_c − z_r for the contrastive importance).
        alpha = gradients.mean(dim=(2, 3))
        importance = map_importance(self.options.importance, gradients, activations)
        self._check_layer(activations)

        start = perf_counter()
        try:
            qubos = build_batched_qubos(
                importance, activations, self.beta, self.formulation, self.k, self.max_variables,
                pair_convention=self.options.pair_convention, coupling_buffer=self._coupling_buffer,
            )
        except SampleQuboError as error:
            raise ValueError(f"sample {error.sample} (target {targets[error.sample]}): {error.reason}") from error
        build = (perf_counter() - start) / max(num_samples, 1)
        if qubos.J.device.type == "cpu" and qubos.J.nbytes >= REUSED_COUPLING_BYTES and (
                self._coupling_buffer is None or qubos.J.data_ptr() != self._coupling_buffer.data_ptr()):
            self._coupling_buffer = qubos.J.view(-1)  # a fresh J (first, larger or moved batch): reuse it next time
        solution = solve_batch(qubos, sampler, self.seed, self.sampler_kwargs)
        channels = states_to_channels(qubos, solution.states)
        capped = capped_importance(importance, qubos)
        sampler_name = self.sampler_spec if isinstance(self.sampler_spec, str) else _sampler_name(sampler)
        # One conversion per batch tensor; the records take rows of them.
        alpha_numpy, importance_numpy = alpha.double().cpu().numpy(), importance.double().cpu().numpy()
        energies, sizes = solution.energies.tolist(), qubos.num_variables.tolist()
        selections = []
        for i in range(num_samples):
            if not channels[i].size and sizes[i] == 0:
                warnings.warn(
                    f"sample {i} (target {targets[i]}): no feature map has positive importance, so nothing is "
                    "selected and its explanation is all zeros. Check the target or explain another layer.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            selections.append(
                FeatureMapSelection(
                    channels=channels[i],
                    importance=importance_numpy[i],
                    energy=energies[i],
                    num_variables=sizes[i],
                    sampler=sampler_name,
                    info=solution.infos[i],
                    timings={"forward_backward": forward_backward / num_samples, "build": build,
                             "solve": solution.solve_seconds[i]},
                    qubo_factory=partial(self._sample_qubo, capped[i], activations, i),
                    target=targets[i],
                    alpha=alpha_numpy[i],
                    runner_up=None if runner_up is None else int(runner_up[i]),
                )
            )
        selected = torch.zeros_like(importance, dtype=torch.bool)
        rows = torch.arange(num_samples, device=qubos.kept.device)[:, None].expand_as(qubos.kept)
        selected[rows[solution.states], qubos.kept[solution.states]] = True
        channel_weights = torch.where(selected, alpha, torch.zeros_like(alpha))
        self.last_selections = selections
        self.last_channel_weights = channel_weights
        self.last_gradient_weights, self.last_activations = alpha.detach(), activations.detach()
        self.last_outputs = outputs[0]
        return explanation_map(channel_weights, activations, relu_attributions, attr_dim_summation, normalize)

    def release_workspace(self) -> None:
        """Free the coupling tensor kept for the next batch (see the class docstring); the next call allocates."""
        self._coupling_buffer = None

    def _sample_qubo(self, importance: np.ndarray, activations: Tensor, index: int):
        """Sample ``index``'s :class:`FeatureMapQubo`, built on demand for ``FeatureMapSelection.qubo``."""
        maps = activations[index].double().cpu().numpy()
        return build_feature_map_qubo(
            importance, maps, self.beta, self.formulation, self.k, pair_convention=self.options.pair_convention
        )

    def _resolve_sampler(self) -> dimod.Sampler:
        if self._sampler is None:
            self._sampler = get_sampler(self.sampler_spec)
        return self._sampler

    def _check_layer(self, activations: Tensor) -> None:
        num_channels, height, width = activations.shape[1:]
        if self.k is not None and self.k > num_channels:
            raise ValueError(
                f"k={self.k} but {layer_name(self.forward_func, self.layer)} has only {num_channels} "
                f"feature maps; choose k <= {num_channels}"
            )
        if height * width == 1:
            warnings.warn(
                f"{layer_name(self.forward_func, self.layer)} has 1x1 feature maps: every map is one number, so "
                "|cos| redundancy is 1 between any two active maps and a min-max normalised map is all zeros. "
                "Explain an earlier layer with spatial maps, or pass normalize=False.",
                RuntimeWarning,
                stacklevel=3,
            )


def capped_importance(importance: Tensor, qubos: BatchedFeatureMapQubo) -> List[np.ndarray]:
    """Per sample, α with every channel outside its QUBO set to 0 (what the per-sample builder must see)."""
    in_problem = torch.zeros_like(importance, dtype=torch.bool)
    rows = torch.arange(importance.shape[0], device=importance.device)[:, None].expand_as(qubos.kept)
    in_problem[rows[qubos.mask], qubos.kept[qubos.mask]] = True
    capped = torch.where(in_problem, importance, torch.zeros_like(importance)).double().cpu().numpy()
    return list(capped)


def explanation_map(
    channel_weights: Tensor,
    feature_maps: Tensor,
    relu_attributions: bool = True,
    attr_dim_summation: bool = True,
    normalize: bool = True,
) -> Tensor:
    """METHOD.md §2: minmax(Σ_k ReLU(w_k f_k)) per sample, ReLU per map before summing.

    Args:
        channel_weights: (N, C) α on the selected maps, 0 elsewhere.
        feature_maps: (N, C, H, W) the layer's activations.
        relu_attributions: ReLU each weighted map (the paper's); False keeps the sign.
        attr_dim_summation: sum over maps to (N, 1, H, W); False keeps (N, C, H, W).
        normalize: min-max normalise each sample (over all its channels and positions) to [0, 1].

    Returns:
        The map; a sample whose values are constant (e.g. nothing selected) is all zeros when normalised.
    """
    weighted = channel_weights[:, :, None, None] * feature_maps
    if relu_attributions:
        weighted = torch.relu(weighted)
    result = weighted.sum(dim=1, keepdim=True) if attr_dim_summation else weighted
    if not normalize:
        return result
    low = result.amin(dim=(1, 2, 3), keepdim=True)
    span = result.amax(dim=(1, 2, 3), keepdim=True) - low
    return torch.where(span > 0, (result - low) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)


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
