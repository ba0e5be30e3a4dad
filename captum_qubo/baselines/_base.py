"""Shared plumbing of the channel-weighted CAM baselines (Grad-CAM, Grad-CAM++, Score-CAM).

All three explain a prediction as L = Σ_k w_k A_k over the feature maps A_k of one conv layer; they differ only
in the channel weights w. This module holds what they share, in pytorch-grad-cam's spirit of "one base, each
variant overrides the weights": input/target/layer validation with clear errors, one forward(+backward) pass
through Captum's own helpers, and the weighted sum.
"""
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import torch
from captum._utils.common import _format_tensor_into_tuples
from captum._utils.gradient import _forward_layer_eval, compute_layer_gradients_and_eval
from captum._utils.typing import TargetType
from captum.attr import LayerAttribution
from torch import Tensor
from torch.nn import Module


class TargetCheckedForward:
    """Wraps ``forward_func`` so that a bad ``target`` is reported against the model's real output shape.

    Captum would otherwise fail deep inside ``torch.gather`` with an index error; raising here, inside the
    forward pass, still lets Captum's ``finally`` remove its layer hooks.
    """

    def __init__(self, forward_func: Callable[..., Tensor], target: TargetType, num_examples: int) -> None:
        self.forward_func = forward_func
        self.target = target
        self.num_examples = num_examples
        # Captum reads device ids off a DataParallel forward_func; keep them visible through the wrapper.
        self.device_ids = getattr(forward_func, "device_ids", None)

    def __call__(self, *args: Any) -> Tensor:
        output = self.forward_func(*args)
        check_target(output, self.target, self.num_examples)
        return output


def check_target(output: Tensor, target: TargetType, num_examples: int) -> None:
    """Raise a ValueError naming the problem when ``target`` cannot index ``output`` (N, classes, ...)."""
    if target is None:
        if output.dim() > 1 and output[0].numel() != 1:
            raise ValueError(
                f"target=None, but the model returns {tuple(output.shape[1:])} scores per example; pass "
                "target=<class index> (an int, a list of N ints or a 1-D tensor), e.g. output.argmax(1)"
            )
        return
    if isinstance(target, tuple):
        _check_index_tuple(output, target)
        return
    if isinstance(target, list):
        if len(target) != num_examples:
            raise ValueError(f"target is a list of length {len(target)}, but the inputs hold {num_examples} examples")
        if target and isinstance(target[0], tuple):
            for index_tuple in target:
                _check_index_tuple(output, index_tuple)
            return
    if isinstance(target, Tensor) and target.numel() not in (1, num_examples):
        raise ValueError(f"target tensor has {target.numel()} entries; give 1 or one per example ({num_examples})")
    if output.dim() < 2:
        raise ValueError(f"the model returns one score per example (shape {tuple(output.shape)}); use target=None")
    _check_indices(torch.as_tensor(target), output.shape[1])


def _check_index_tuple(output: Tensor, index_tuple: tuple) -> None:
    if output.dim() < len(index_tuple) + 1:
        raise ValueError(f"target {index_tuple} has more indices than the output {tuple(output.shape)} has dimensions")
    for dim, index in enumerate(index_tuple, start=1):
        _check_indices(torch.as_tensor(index), output.shape[dim])


def _check_indices(indices: Tensor, size: int) -> None:
    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {indices.dtype}")
    out_of_range = (indices < 0) | (indices >= size)
    if out_of_range.any():
        bad = indices[out_of_range].flatten()[0].item()
        raise ValueError(f"target {bad} is out of range for a model output with {size} classes; use 0..{size - 1}")


def check_finite_inputs(inputs: Sequence[Tensor]) -> None:
    """Raise a ValueError when an input tensor holds NaN or infinite values."""
    for position, tensor in enumerate(inputs):
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(
                f"input {position} contains NaN or infinite values; clean or impute the image before explaining it"
            )


def single_4d(layer_tensors: Tuple[Tensor, ...], layer: Module, attribute_to_layer_input: bool) -> Tensor:
    """The layer's one (N, C, H, W) tensor, or a ValueError that says which layer to pick instead."""
    side = "input" if attribute_to_layer_input else "output"
    if len(layer_tensors) != 1 or layer_tensors[0].dim() != 4:
        shapes = [tuple(t.shape) for t in layer_tensors]
        raise ValueError(
            f"the {side} of layer {type(layer).__name__} has shape(s) {shapes}; channel-weighted CAMs need one "
            "(N, C, H, W) feature-map tensor: pass a convolutional layer (or its BatchNorm/activation)"
        )
    return layer_tensors[0]


def layer_gradients_and_activations(
    forward_func: Callable[..., Tensor],
    layer: Module,
    inputs: Union[Tensor, Tuple[Tensor, ...]],
    target: TargetType,
    additional_forward_args: Any,
    device_ids: Optional[List[int]],
    attribute_to_layer_input: bool,
    grad_kwargs: Optional[dict] = None,
) -> Tuple[Tensor, Tensor]:
    """Validated (∂score/∂A, A), both (N, C, H, W) and detached, from one pass of Captum's helper.

    Uses ``torch.autograd.grad`` (via Captum), so parameters' ``.grad`` and the model's mode stay untouched.
    """
    inputs = _format_tensor_into_tuples(inputs)
    check_finite_inputs(inputs)
    gradients, activations = compute_layer_gradients_and_eval(
        TargetCheckedForward(forward_func, target, inputs[0].shape[0]),
        layer,
        inputs,
        target,
        additional_forward_args,
        device_ids=device_ids,
        attribute_to_layer_input=attribute_to_layer_input,
        grad_kwargs=grad_kwargs,
    )
    activations = single_4d(activations, layer, attribute_to_layer_input)
    return gradients[0].detach(), activations.detach()


def layer_activations(
    forward_func: Callable[..., Tensor],
    layer: Module,
    inputs: Tuple[Tensor, ...],
    target: TargetType,
    additional_forward_args: Any,
    device_ids: Optional[List[int]],
    attribute_to_layer_input: bool,
) -> Tensor:
    """Validated activations A (N, C, H, W) from one gradient-free forward pass (target checked on the output)."""
    check_finite_inputs(inputs)
    activations = _forward_layer_eval(
        TargetCheckedForward(forward_func, target, inputs[0].shape[0]),
        inputs,
        layer,
        additional_forward_args,
        device_ids=device_ids,
        attribute_to_layer_input=attribute_to_layer_input,
    )
    return single_4d(activations, layer, attribute_to_layer_input).detach()


def weighted_activation_map(weights: Tensor, activations: Tensor, relu_attributions: bool) -> Tensor:
    """L = Σ_k w_k A_k as (N, 1, H, W), optionally ReLU-ed (as Grad-CAM / Grad-CAM++ / Score-CAM papers do)."""
    cam = torch.einsum("nc,nchw->nhw", weights.to(activations.dtype), activations).unsqueeze(1)
    return torch.relu(cam) if relu_attributions else cam


class ChannelWeightedLayerCam(LayerAttribution):
    """Base of the CAMs added here: subclasses compute channel weights; the map is their weighted sum.

    After ``attribute()``, ``last_channel_weights`` holds the (N, C) weights that made the map, so "the top-K maps
    by the method's own weights" is defined for every method (same convention as
    ``QuboFeatureMapAttribution.last_channel_weights``).
    """

    def __init__(self, forward_func: Callable[..., Tensor], layer: Module, device_ids: Optional[List[int]] = None):
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        self.last_channel_weights: Optional[Tensor] = None

    def _finish(self, weights: Tensor, activations: Tensor, relu_attributions: bool) -> Tensor:
        self.last_channel_weights = weights.detach()
        return weighted_activation_map(weights, activations, relu_attributions)
