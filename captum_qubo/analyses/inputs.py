"""The inputs and layers the analyses run on for the two bundled models (nothing is downloaded).

EfficientNet-Lite0 sees the colour and grey photos that ship inside scikit-image, each also mirrored and
cropped, so that there are enough inputs for a spectrum; the digits CNN sees the test split of
``sklearn.datasets.load_digits``.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

#: Photos in scikit-image's own data folder (available offline), colour first.
BUNDLED_PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "hubble_deep_field", "immunohistochemistry",
                  "retina", "logo", "camera", "coins", "moon", "brick", "grass", "gravel", "clock", "page")

#: Default layers: one block per resolution stage, then the activated head (1280 × 7 × 7) the QUBO explains.
EFFICIENTNET_LAYERS = ("_blocks.2", "_blocks.4", "_blocks.7", "_blocks.10", "_blocks.14", "_blocks.15",
                       "_bn1.activation")
DIGITS_LAYERS = ("features.1", "features.3", "reduce.1", "reduce")

#: (flip, crop box as fractions (top, left, height, width)); the first variant is the whole photo.
VARIANTS = ((False, (0.0, 0.0, 1.0, 1.0)), (True, (0.0, 0.0, 1.0, 1.0)), (False, (0.0, 0.0, 0.75, 0.75)),
            (True, (0.25, 0.25, 0.75, 0.75)), (False, (0.25, 0.0, 0.75, 0.75)), (True, (0.0, 0.25, 0.75, 0.75)),
            (False, (0.125, 0.125, 0.75, 0.75)), (True, (0.1, 0.1, 0.5, 0.5)))


def _variant(image: np.ndarray, flip: bool, box: Tuple[float, ...]) -> np.ndarray:
    height, width = image.shape[:2]
    top, left = int(box[0] * height), int(box[1] * width)
    cropped = image[top:top + max(1, int(box[2] * height)), left:left + max(1, int(box[3] * width))]
    return np.ascontiguousarray(cropped[:, ::-1] if flip else cropped)


def efficientnet_inputs(count: int = 64) -> Tuple[Tensor, List[str]]:
    """``count`` EfficientNet-Lite0 inputs (3 × 224², in [-1, 1]): the bundled photos, then their mirrored and
    cropped variants, photo-major within each variant round.

    Returns:
        ((count, 3, 224, 224) tensor, a name per input such as ``"coffee/flip/crop0.75@0.25,0.25"``).
    """
    from captum_qubo.zoo import load_sample_image, preprocess_image

    limit = len(BUNDLED_PHOTOS) * len(VARIANTS)
    if not 1 <= count <= limit:
        raise ValueError(f"--images must lie in [1, {limit}] for efficientnet-lite0 "
                         f"({len(BUNDLED_PHOTOS)} bundled photos x {len(VARIANTS)} flips/crops), got {count}")
    photos = {name: load_sample_image(name) for name in BUNDLED_PHOTOS}
    tensors, names = [], []
    for flip, box in VARIANTS:
        for name, image in photos.items():
            if len(tensors) == count:
                break
            tensors.append(preprocess_image(_variant(image, flip, box)))
            crop = "" if box[2] == 1.0 else f"/crop{box[2]:g}@{box[0]:g},{box[1]:g}"
            names.append(f"{name}{'/flip' if flip else ''}{crop}")
    return torch.stack(tensors), names


def digits_inputs(count: int = 540) -> Tuple[Tensor, List[str]]:
    """The first ``count`` images of the digits test split (seed 0), named ``"test3:digit7"``."""
    from captum_qubo.zoo import load_digits_split

    _, _, x_test, y_test = load_digits_split(seed=0)
    if not 1 <= count <= len(x_test):
        raise ValueError(f"--images must lie in [1, {len(x_test)}] for digits (its test split), got {count}")
    return x_test[:count], [f"test{i}:digit{int(y)}" for i, y in enumerate(y_test[:count])]


def input_groups(model_name: str, names: List[str]) -> Optional[List[str]]:
    """Which inputs are variants of one photo (EfficientNet-Lite0), for the group-preserving MI null.

    None for digits (independent test images), and when the photos do not all have the same number of variants
    (``--images`` not a multiple of 16): whole photos cannot then be swapped, and the plain null is used.
    """
    if model_name != "efficientnet-lite0":
        return None
    groups = [name.split("/")[0] for name in names]
    sizes = {groups.count(group) for group in set(groups)}
    return groups if len(sizes) == 1 and sizes != {1} else None


def display_images(model_name: str, inputs: Tensor) -> np.ndarray:
    """Inputs as pictures in [0, 1]: (N, H, W, 3) for photos, (N, H, W) for digits."""
    if model_name == "digits":
        return inputs[:, 0].numpy()
    return (inputs.permute(0, 2, 3, 1).numpy() * 0.5 + 0.5).clip(0.0, 1.0)


def _efficientnet():
    from captum_qubo.zoo import load_efficientnet_lite0

    return load_efficientnet_lite0()


def _digits():
    from captum_qubo.zoo import train_digits_cnn

    return train_digits_cnn(num_filters=16, seed=0)


#: model name → (loader, default layers, input builder, default number of inputs, default between-layer MI pair).
MODELS: Dict[str, Tuple[Callable, Tuple[str, ...], Callable, int, Tuple[str, str]]] = {
    "efficientnet-lite0": (_efficientnet, EFFICIENTNET_LAYERS, efficientnet_inputs, 64,
                           ("_blocks.15", "_bn1.activation")),
    "digits": (_digits, DIGITS_LAYERS, digits_inputs, 540, ("features.3", "reduce")),
}
