"""Find the layer to explain inside a LightningModule, by dotted name or by the module object itself."""
from __future__ import annotations

import difflib
from typing import Union

from torch.nn import Module


def layer_name(pl_module: Module, layer: Union[str, Module]) -> str:
    """The dotted name of ``layer`` inside ``pl_module`` (``pl_module.get_submodule(name)`` finds it).

    A name is resolved once here, so a typo fails at ``setup`` with the closest names in the message;
    a module is looked up by identity, so one that is not part of ``pl_module`` fails the same way.
    """
    names = [name for name, _ in pl_module.named_modules() if name]
    if isinstance(layer, Module):
        for name, module in pl_module.named_modules():
            if module is layer and name:
                return name
        raise ValueError(
            f"the layer {type(layer).__name__} given to QuboExplanationCallback is not a submodule of "
            f"{type(pl_module).__name__}; pass the module the LightningModule uses, or its dotted name "
            f"(one of: {_preview(names)})"
        )
    if not isinstance(layer, str):
        raise TypeError(f"layer must be an nn.Module or a dotted module name (str), got {type(layer).__name__}")
    try:
        pl_module.get_submodule(layer)
    except AttributeError:
        close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
        suggestion = f"Closest names: {', '.join(repr(n) for n in close)}. " if close else ""
        raise ValueError(
            f"layer {layer!r} not found in {type(pl_module).__name__}. {suggestion}"
            f"Valid names come from pl_module.named_modules(): {_preview(names)}"
        ) from None
    if not layer:
        raise ValueError("layer '' is the whole LightningModule; name the convolutional layer to explain")
    return layer


def _preview(names: list, limit: int = 20) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
