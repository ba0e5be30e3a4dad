"""One validated pass through Captum's layer machinery, shared by every feature-map method.

QuboFeatureMapAttribution and the CAM baselines all need the same things from a layer: its (N, C, H, W) feature
maps and, for the gradient methods, ∂score/∂maps — taken with Captum's own ``compute_layer_gradients_and_eval`` /
``_forward_layer_eval`` (``torch.autograd.grad``: parameters' ``.grad`` and the model's mode stay untouched,
Captum removes its hooks even when the model raises). This module adds the checks that turn Captum's deep errors
into messages naming the problem and the fix: non-finite inputs, bad targets, layers without 4-D maps.
"""
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import torch
from captum._utils.common import _format_tensor_into_tuples
from captum._utils.gradient import _forward_layer_eval, compute_layer_gradients_and_eval
from captum._utils.typing import TargetType
from torch import Tensor
from torch.nn import Module

from captum_qubo.tensor_checks import all_finite


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
        self.output: Optional[Tensor] = None

    def __call__(self, *args: Any) -> Tensor:
        output = self.forward_func(*args)
        check_target(output, self.target, self.num_examples)
        self.output = output.detach()
        return output


class MarginForward:
    """Wraps ``forward_func`` to return, per example, the margin z_c − z_r of the target c over the runner-up r.

    r is the highest-scoring class other than c *in this forward pass* (per example; recorded, detached, in
    :attr:`runner_up`). Captum then differentiates this (N,) score with ``target=None``, so one forward and one
    backward give ∂(z_c − z_r)/∂f, exactly as one pass gives ∂z_c/∂f for the other importances. Raising here,
    inside the forward pass, still lets Captum's ``finally`` remove its layer hooks.

    Args:
        forward_func: the model or any function returning (N, classes) scores, classes ≥ 2.
        target: the explained class: an int, a list of N ints, or a scalar / (N,) integer tensor.
        num_examples: N.

    Raises:
        ValueError: no target, a tuple target, a model with one output or with more than one output dimension,
            a target list or tensor of the wrong length, an out-of-range class (on the first forward pass).
        TypeError: a target that is not integer class indices.
    """

    def __init__(self, forward_func: Callable[..., Tensor], target: TargetType, num_examples: int) -> None:
        if target is None:
            raise ValueError(
                "importance='contrastive' needs the class to explain (it contrasts it with the runner-up class): "
                "pass target=<class index> (an int, a list of N ints or a 1-D tensor), e.g. output.argmax(1)"
            )
        if isinstance(target, tuple) or (isinstance(target, list) and target and isinstance(target[0], tuple)):
            raise ValueError(
                f"importance='contrastive' needs class indices of a (N, classes) output, got the index tuple {target!r}; "
                "use importance='contribution' for models with multi-dimensional outputs"
            )
        self.forward_func = forward_func
        self.target = target
        self.num_examples = num_examples
        self.device_ids = getattr(forward_func, "device_ids", None)
        self.runner_up: Optional[Tensor] = None
        self.output: Optional[Tensor] = None

    def __call__(self, *args: Any) -> Tensor:
        output = self.forward_func(*args)
        if output.dim() != 2 or output.shape[1] < 2:
            raise ValueError(
                "importance='contrastive' needs a model that returns (N, classes) scores with at least two classes "
                f"(it contrasts the target with the runner-up class), but this one returns shape {tuple(output.shape)}; "
                "use importance='contribution' instead"
            )
        check_target(output, self.target, self.num_examples)
        targets = torch.as_tensor(self.target, device=output.device).long().flatten()
        targets = targets.expand(output.shape[0]) if targets.numel() == 1 else targets
        self.output = output.detach()
        rivals = self.output.clone()
        rivals.scatter_(1, targets[:, None], float("-inf"))
        runner_up = rivals.argmax(dim=1)
        self.runner_up = runner_up
        return output.gather(1, targets[:, None])[:, 0] - output.gather(1, runner_up[:, None])[:, 0]


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
    """Raise a ValueError naming the input and the samples that hold NaN or infinite values."""
    for position, tensor in enumerate(inputs):
        if not all_finite(tensor):
            bad = (~torch.isfinite(tensor)).flatten(1).any(dim=1).nonzero().flatten().tolist()
            raise ValueError(
                f"inputs[{position}] contains NaN or inf (samples {bad}); clean or drop those samples "
                "(e.g. torch.nan_to_num) before explaining"
            )


def single_4d(
    layer_tensors: Tuple[Tensor, ...], forward_func: Callable, layer: Module, attribute_to_layer_input: bool
) -> Tensor:
    """The layer's one (N, C, H, W) tensor, or a ValueError that names the layer and says which to pick instead."""
    side = "input" if attribute_to_layer_input else "output"
    if len(layer_tensors) != 1 or layer_tensors[0].dim() != 4:
        shapes = [tuple(t.shape) for t in layer_tensors]
        raise ValueError(
            f"feature-map methods need a layer whose {side} is one (N, C, H, W) tensor, but "
            f"{layer_name(forward_func, layer)} gives {side} shape(s) {shapes}. Pick a convolutional layer or "
            "block (or its BatchNorm/activation), e.g. the last conv block."
        )
    return layer_tensors[0]


def layer_name(forward_func: Callable, layer: Module) -> str:
    """``layer 'name' (Type)`` when ``forward_func`` is the module holding ``layer``, else ``layer Type``."""
    if isinstance(forward_func, Module):
        for name, module in forward_func.named_modules():
            if module is layer:
                return f"layer '{name}' ({type(layer).__name__})"
    return f"layer {type(layer).__name__}"


def layer_gradients_and_activations(
    forward_func: Callable[..., Tensor],
    layer: Module,
    inputs: Union[Tensor, Tuple[Tensor, ...]],
    target: TargetType,
    additional_forward_args: Any,
    device_ids: Optional[List[int]],
    attribute_to_layer_input: bool,
    grad_kwargs: Optional[dict] = None,
    outputs: Optional[List[Tensor]] = None,
) -> Tuple[Tensor, Tensor]:
    """Validated (∂score/∂A, A), both (N, C, H, W) and detached, from one pass of Captum's helper.

    Uses ``torch.autograd.grad`` (via Captum), so parameters' ``.grad`` and the model's mode stay untouched.
    The model's output of that pass, detached, is appended to ``outputs`` when one is given.
    """
    inputs = _format_tensor_into_tuples(inputs)
    wrapped = TargetCheckedForward(forward_func, target, inputs[0].shape[0])
    return _gradients_and_activations(
        wrapped, forward_func, layer, inputs, target, additional_forward_args, device_ids, attribute_to_layer_input,
        grad_kwargs, outputs,
    )


def layer_margin_gradients_and_activations(
    forward_func: Callable[..., Tensor],
    layer: Module,
    inputs: Union[Tensor, Tuple[Tensor, ...]],
    target: TargetType,
    additional_forward_args: Any,
    device_ids: Optional[List[int]],
    attribute_to_layer_input: bool,
    grad_kwargs: Optional[dict] = None,
    outputs: Optional[List[Tensor]] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """(∂(z_c − z_r)/∂A, A, r): the margin over the runner-up class r, from one forward and one backward pass.

    As :func:`layer_gradients_and_activations` (``outputs`` too), with the score wrapped by :class:`MarginForward`;
    r is (N,) long, the highest-scoring class other than the target per example, from the same forward pass.
    """
    inputs = _format_tensor_into_tuples(inputs)
    wrapped = MarginForward(forward_func, target, inputs[0].shape[0])
    gradients, activations = _gradients_and_activations(
        wrapped, forward_func, layer, inputs, None, additional_forward_args, device_ids, attribute_to_layer_input,
        grad_kwargs, outputs,
    )
    return gradients, activations, wrapped.runner_up.detach()


def _gradients_and_activations(
    wrapped: Callable[..., Tensor],
    forward_func: Callable[..., Tensor],
    layer: Module,
    inputs: Tuple[Tensor, ...],
    target: TargetType,
    additional_forward_args: Any,
    device_ids: Optional[List[int]],
    attribute_to_layer_input: bool,
    grad_kwargs: Optional[dict],
    outputs: Optional[List[Tensor]],
) -> Tuple[Tensor, Tensor]:
    check_finite_inputs(inputs)
    try:
        gradients, activations = compute_layer_gradients_and_eval(
            wrapped,
            layer,
            inputs,
            target,
            additional_forward_args,
            device_ids=device_ids,
            attribute_to_layer_input=attribute_to_layer_input,
            grad_kwargs=grad_kwargs,
        )
    except RuntimeError as error:
        if "allow_unused" not in str(error):
            raise
        # Captum differentiates every tensor the layer returns; one the model never uses has no gradient.
        side = "input" if attribute_to_layer_input else "output"
        raise ValueError(
            f"{layer_name(forward_func, layer)} gives a tuple {side} and the model does not use every element, so "
            f"its gradient is undefined. Feature-map methods need a layer whose {side} is one (N, C, H, W) tensor "
            "that the prediction depends on: pick that submodule (or wrap the layer to return only the used tensor)."
        ) from error
    activations = single_4d(activations, forward_func, layer, attribute_to_layer_input)
    if outputs is not None:
        outputs.append(wrapped.output)
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
    return single_4d(activations, forward_func, layer, attribute_to_layer_input).detach()
