"""Photos that ship in scikit-image, and the preprocessing EfficientNet-Lite expects."""
from __future__ import annotations

import numpy as np
import torch

# skimage.data photos showing ImageNet objects. At 224² EfficientNet-Lite0 predicts chelsea → Egyptian cat,
# coffee → espresso; rocket and astronaut are harder (top-1 is not the obvious class).
SAMPLE_IMAGES = ("chelsea", "coffee", "rocket", "astronaut")


def load_sample_image(name: str) -> np.ndarray:
    """An RGB uint8 (H, W, 3) photo from ``skimage.data`` (no download: they ship in the package).

    Args:
        name: a ``skimage.data`` function name, e.g. ``"chelsea"``, ``"coffee"``, ``"rocket"``.
    """
    try:
        from skimage import data
    except ImportError as error:
        raise ImportError("sample images need scikit-image: pip install 'captum-qubo[zoo]'") from error
    loader = getattr(data, name, None)
    if loader is None or not callable(loader):
        raise ValueError(f"unknown sample image {name!r}; try one of {sorted(SAMPLE_IMAGES)}")
    image = np.asarray(loader())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"sample image {name!r} has shape {image.shape}, expected an RGB photo")
    return np.ascontiguousarray(image[..., :3])


def preprocess_image(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """Resize an RGB image (uint8 or float in [0, 1]) to size² and map it to [-1, 1], EfficientNet-Lite's range.

    Returns:
        float32 tensor (3, size, size).
    """
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {array.shape}")
    pixels = torch.tensor(array, dtype=torch.float32).permute(2, 0, 1)  # a copy: read-only arrays are fine
    if array.dtype == np.uint8:
        pixels = pixels / 255.0
    resized = torch.nn.functional.interpolate(
        pixels[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )[0]
    return (resized.clamp(0.0, 1.0) - 0.5) / 0.5
