"""Activations of named layers over a set of inputs, collected in batches with Captum's ``LayerActivation``.

Captum registers (and removes) the forward hooks; this module only batches the inputs, resolves layer names,
and reduces each layer's output to what the analyses take: one value per feature map per input (global
average pooling, ``pooled=True``) or the maps themselves (``pooled=False``).
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Dict, Iterable, Iterator, List, Tuple, Union

import torch
from captum.attr import LayerActivation
from torch import Tensor
from torch.nn import Module

from captum_qubo.model_access import preserved_module_modes

LayerSpec = Union[Mapping, Sequence]


def resolve_layers(model: Module, layers: LayerSpec) -> Dict[str, Module]:
    """``{dotted name: module}`` for the layers to analyse, in the order given.

    Args:
        model: the network.
        layers: dotted names (``"features.3"``), modules of ``model``, or a mapping ``{label: module or name}``.

    Returns:
        An ordered dict from a label (the dotted name unless a mapping gave one) to the submodule.
    """
    if isinstance(layers, (str, Module)):
        layers = [layers]
    items = layers.items() if isinstance(layers, Mapping) else [(None, layer) for layer in layers]
    names = [name for name, _ in model.named_modules() if name]
    resolved: Dict[str, Module] = {}
    for label, layer in items:
        name, module = _find(model, layer, names)
        resolved[label if label is not None else name] = module
    if not resolved:
        raise ValueError("no layers to analyse; name at least one, e.g. layers=['features.3']")
    return resolved


def _find(model: Module, layer: Union[str, Module], names: List[str]) -> Tuple[str, Module]:
    if isinstance(layer, Module):
        for name, module in model.named_modules():
            if module is layer and name:
                return name, module
        raise ValueError(f"the {type(layer).__name__} given as a layer is not a submodule of {type(model).__name__}; "
                         "pass one of its modules or its dotted name")
    if not isinstance(layer, str) or not layer:
        raise TypeError(f"a layer must be a submodule or a non-empty dotted name, got {layer!r}")
    try:
        return layer, model.get_submodule(layer)
    except AttributeError:
        close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
        hint = f" Closest names: {', '.join(map(repr, close))}." if close else ""
        raise ValueError(f"layer {layer!r} not found in {type(model).__name__}.{hint} "
                         f"Valid names come from model.named_modules() ({len(names)} of them)") from None


def pool_maps(output: Tensor) -> Tensor:
    """Global average pooling of a layer output: (N, C, ...) → (N, C); (N, C) stays as it is."""
    if output.ndim < 2:
        raise ValueError(f"a layer output must have a batch and a channel dimension, got shape {tuple(output.shape)}")
    return output if output.ndim == 2 else output.flatten(2).mean(dim=2)


def _batches(inputs: Union[Tensor, Iterable], batch_size: int) -> Iterator[Tensor]:
    if isinstance(inputs, Tensor):
        yield from inputs.split(batch_size)
        return
    for batch in inputs:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def collect_activations(
    model: Module,
    layers: LayerSpec,
    inputs: Union[Tensor, Iterable],
    batch_size: int = 32,
    pooled: bool = True,
    progress: bool = False,
) -> Dict[str, Tensor]:
    """Run ``inputs`` through ``model`` in eval mode and keep the outputs of ``layers`` (float32, CPU).

    One forward pass per batch serves all layers (Captum's ``LayerActivation`` with a list of layers).
    The model's train/eval flags are given back afterwards and no gradients are taken.

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to outputs.
        layers: see :func:`resolve_layers`.
        inputs: an (N, ...) tensor, split into ``batch_size`` batches, or an iterable of batches
            (tensors, or ``(inputs, labels, ...)`` tuples whose first element is used).
        batch_size: inputs per forward pass when ``inputs`` is a tensor.
        pooled: True: one value per map and input, the global average, (N, C). False: the maps, (N, C, ...).
        progress: show a tqdm bar over the batches.

    Returns:
        ``{layer label: activations}`` in the order of ``layers``.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    resolved = resolve_layers(model, layers)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    collected: Dict[str, List[Tensor]] = {label: [] for label in resolved}
    batches = _batches(inputs, batch_size)
    if progress:
        from tqdm.auto import tqdm

        total = -(-len(inputs) // batch_size) if isinstance(inputs, Tensor) else None
        batches = tqdm(batches, total=total, desc="activations", unit="batch")
    recorder = LayerActivation(model, list(resolved.values()))
    with preserved_module_modes(model), torch.no_grad():
        for batch in batches:
            outputs = recorder.attribute(batch.to(device, dtype))
            for label, output in zip(resolved, outputs):
                if not isinstance(output, Tensor):
                    raise TypeError(f"layer {label!r} returns {type(output).__name__}, not a tensor; "
                                    "analyse a submodule whose output is one tensor")
                output = pool_maps(output) if pooled else output
                collected[label].append(output.detach().float().cpu())
    if not any(collected.values()):
        raise ValueError("no inputs: pass at least one input (an (N, ...) tensor with N >= 1)")
    return {label: torch.cat(parts) for label, parts in collected.items()}
