"""How entry points touch a user's model: find a layer by its dotted name, explain in eval mode and give modes back.

Shared by the CLI, the Quantus adapter and the Lightning callbacks, so a mistyped layer fails the same way
everywhere: with the closest names and where valid names come from.
"""
from __future__ import annotations

import difflib
from contextlib import contextmanager
from typing import Iterator, List

from torch.nn import Module


def find_layer(model: Module, name: str, argument: str = "layer") -> Module:
    """The submodule of ``model`` at dotted ``name`` (as ``model.get_submodule``), or a ValueError with close names.

    Args:
        model: the network.
        name: a dotted module name such as ``"reduce"`` or ``"layer4.1.conv2"``.
        argument: how the caller's user spells the setting (``"layer"``, ``"--layer"``), for the message.

    Returns:
        The submodule.
    """
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a dotted module name (str), got {type(name).__name__}")
    if not name:
        raise ValueError(f"{argument} '' is the whole {type(model).__name__}; name the convolutional layer to explain")
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = module_names(model)
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        suggestion = f"Closest names: {', '.join(repr(n) for n in close)}. " if close else ""
        raise ValueError(
            f"{argument} {name!r} not found in {type(model).__name__}. {suggestion}"
            f"Valid names come from model.named_modules(): {preview(names)}"
        ) from None


def module_names(model: Module) -> List[str]:
    """Every dotted submodule name of ``model`` (the root, named '', left out)."""
    return [name for name, _ in model.named_modules() if name]


def preview(names: List[str], limit: int = 20) -> str:
    """The first ``limit`` names, quoted, and how many more there are."""
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


@contextmanager
def preserved_module_modes(module: Module) -> Iterator[None]:
    """Put ``module`` in eval mode and give every submodule its own train/eval flag back on exit."""
    modes = [(submodule, submodule.training) for submodule in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for submodule, training in modes:
            submodule.training = training
