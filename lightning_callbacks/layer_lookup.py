"""Find the layer to explain inside a LightningModule, by dotted name or by the module object itself."""
from __future__ import annotations

from typing import Union

from torch.nn import Module

from captum_qubo.model_access import find_layer, module_names, preview


def layer_name(pl_module: Module, layer: Union[str, Module]) -> str:
    """The dotted name of ``layer`` inside ``pl_module`` (``pl_module.get_submodule(name)`` finds it).

    A name is resolved once here, so a typo fails at ``setup`` with the closest names in the message;
    a module is looked up by identity, so one that is not part of ``pl_module`` fails the same way.
    """
    if isinstance(layer, Module):
        for name, module in pl_module.named_modules():
            if module is layer and name:
                return name
        raise ValueError(
            f"the layer {type(layer).__name__} given to QuboExplanationCallback is not a submodule of "
            f"{type(pl_module).__name__}; pass the module the LightningModule uses, or its dotted name "
            f"(one of: {preview(module_names(pl_module))})"
        )
    find_layer(pl_module, layer)
    return layer
