"""Which model to explain, from a string: a zoo name or ``package.module:factory``, plus optional weights.

Shared by the command lines (``captum-qubo explain`` and the dataset-scale writer), so a model is named the same
way everywhere. :func:`check_model_spec` validates the string without building anything (the CLI calls it before
loading); :func:`load_model` builds the model, loads the weights, moves it to the device and puts it in eval mode.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union


@dataclass(frozen=True)
class ZooModel:
    """A model that ships in a package, with how to feed and explain it.

    Attributes:
        build: zero-argument function returning the model.
        layer: dotted name of the layer explained by default.
        preprocessing: the :data:`~captum_qubo.zoo.images.NORMALIZATIONS` key its inputs need.
        image_size: side of its square input.
        class_names: zero-argument function returning the class names in logit order (None: indices only).
        input_channels: colour channels of its input (3: RGB; 1: greyscale, e.g. the digits CNN).
    """

    build: Callable[[], object]
    layer: str
    preprocessing: str
    image_size: int
    class_names: Optional[Callable[[], List[str]]] = None
    input_channels: int = 3


def _efficientnet():
    from captum_qubo.zoo.efficientnet import load_efficientnet_lite0

    return load_efficientnet_lite0()


def _imagenet_names() -> List[str]:
    from captum_qubo.zoo.efficientnet import imagenet_class_names

    return imagenet_class_names()


def _digits():
    # Trained in seconds on scikit-learn's digits and cached (captum_qubo.zoo.digits.train_digits_cnn).
    from captum_qubo.zoo.digits import train_digits_cnn

    return train_digits_cnn(num_filters=16, seed=0)


#: Models known by name.
ZOO_MODELS: Dict[str, ZooModel] = {
    "efficientnet-lite0": ZooModel(_efficientnet, "_bn1.activation", "efficientnet", 224, _imagenet_names),
    "digits": ZooModel(_digits, "reduce", "none", 8, lambda: [str(digit) for digit in range(10)], input_channels=1),
}


@dataclass
class LoadedModel:
    """A model ready to explain and what the spec says about it.

    Attributes:
        model: the ``nn.Module``, in eval mode on the requested device.
        name: the spec it came from.
        layer: the zoo's default layer name, None for a ``module:factory`` model (the caller must name one).
        preprocessing: the zoo's normalisation key, None for a ``module:factory`` model.
        image_size: the zoo's input size, None for a ``module:factory`` model.
        class_names: class names in logit order, or None.
    """

    model: object
    name: str
    layer: Optional[str]
    preprocessing: Optional[str]
    image_size: Optional[int]
    class_names: Optional[List[str]]


def check_model_spec(spec: str, weights: Optional[Union[str, os.PathLike]] = None, argument: str = "model") -> None:
    """Raise a ValueError naming the problem when ``spec`` / ``weights`` cannot name a model; builds nothing.

    Args:
        spec: a key of :data:`ZOO_MODELS` or ``"package.module:factory"``.
        weights: a state_dict file for the model, or None.
        argument: how the caller's user spells the setting (``"--model"``), for messages.
    """
    if spec not in ZOO_MODELS:
        module, _, factory = spec.partition(":")
        if not module or not factory or not all(part.isidentifier() for part in [*module.split("."), factory]):
            raise ValueError(
                f"{argument} {spec!r} is neither a zoo model ({', '.join(ZOO_MODELS)}) nor 'package.module:factory' "
                "(a function returning an nn.Module)"
            )
    if weights is not None and not Path(weights).is_file():
        raise ValueError(f"weights file {str(weights)!r} not found")


def load_model(
    spec: str, weights: Optional[Union[str, os.PathLike]] = None, device: str = "cpu", argument: str = "model"
) -> LoadedModel:
    """Build the model ``spec`` names, load ``weights`` (a state_dict) into it, move it to ``device``, eval mode.

    Args:
        spec: a key of :data:`ZOO_MODELS` or ``"package.module:factory"``: ``factory()`` must return an nn.Module.
        weights: a file saved with ``torch.save(model.state_dict(), path)`` (or a dict with a ``"state_dict"``
            entry, as Lightning checkpoints have), loaded with ``weights_only=True`` and ``strict=True``.
        device: a torch device string.
        argument: how the caller's user spells the setting, for messages.

    Returns:
        A :class:`LoadedModel`.
    """
    import torch
    from torch import nn

    check_model_spec(spec, weights, argument)
    zoo = ZOO_MODELS.get(spec)
    if zoo is not None:
        model = zoo.build()
    else:
        module_name, _, factory_name = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ValueError(f"{argument} {spec!r}: cannot import {module_name!r} ({error}); is it on PYTHONPATH?") \
                from None
        factory = getattr(module, factory_name, None)
        if not callable(factory):
            raise ValueError(f"{argument} {spec!r}: {module_name} has no function {factory_name!r}")
        model = factory()
        if not isinstance(model, nn.Module):
            raise ValueError(f"{argument} {spec!r}: {factory_name}() returned a {type(model).__name__}, "
                             "not a torch.nn.Module")
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError) as error:
            raise ValueError(f"weights {str(weights)!r} do not fit {argument} {spec!r}: "
                             f"{str(error).splitlines()[0]}") from None
    model = model.to(device).eval()
    return LoadedModel(
        model=model,
        name=spec,
        layer=zoo.layer if zoo else None,
        preprocessing=zoo.preprocessing if zoo else None,
        image_size=zoo.image_size if zoo else None,
        class_names=zoo.class_names() if zoo and zoo.class_names else None,
    )
