"""Photos that ship in scikit-image, reading image files, and ImageNet preprocessing as torchvision does it.

:func:`preprocess_image` follows torchvision's evaluation transform ``Resize(256) → CenterCrop(224) → ToTensor →
Normalize``: the short side is resized to ``resize_size`` keeping the aspect ratio (the long side becomes
``int(resize_size * long / short)``), bilinear with antialiasing, then the centre ``size × size`` is cut out (offsets
``int(round((H - size) / 2))``), so objects are not stretched. The resize is done in float (torchvision's tensor
path, as ``torch.nn.functional.interpolate(..., antialias=True)``) without rounding back to 8 bits, so 16-bit
images keep their depth.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

# skimage.data photos showing ImageNet objects. EfficientNet-Lite0 (resize 256, crop 224) predicts chelsea → tiger cat
# (0.38, Egyptian cat 0.37),
# coffee → espresso; rocket and astronaut are harder (top-1 is not the obvious class).
SAMPLE_IMAGES = ("chelsea", "coffee", "rocket", "astronaut")

#: Per-channel (mean, std) of each normalisation: EfficientNet-Lite's [-1, 1] and torchvision's ImageNet statistics.
NORMALIZATIONS = {
    "efficientnet": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def load_sample_image(name: str) -> np.ndarray:
    """An RGB uint8 (H, W, 3) photo from ``skimage.data`` (no download: they ship in the package).

    Args:
        name: a ``skimage.data`` function name, e.g. ``"chelsea"``, ``"coffee"``, ``"rocket"``.

    Returns:
        (H, W, 3) uint8 array.
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


def read_image(path: Union[str, Path]) -> np.ndarray:
    """An image file as an RGB float32 (H, W, 3) array in [0, 1], upright and without alpha.

    EXIF orientation is applied (phone photos are stored sideways), 16-bit files keep their depth, greyscale is
    repeated to three channels, and transparency (RGBA, LA, palette with transparency) is composited over white.

    Args:
        path: a file PIL can open (PNG, JPEG, TIFF, BMP ...).

    Returns:
        (H, W, 3) float32 array in [0, 1].
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    file = Path(path)
    if not file.is_file():
        raise ValueError(f"image file {str(path)!r} not found")
    try:
        with Image.open(file) as opened:
            upright = ImageOps.exif_transpose(opened)
            upright.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"cannot read {str(path)!r} as an image ({type(error).__name__}: {error})") from None
    if upright.mode in ("I;16", "I;16B", "I;16L", "I"):
        return to_rgb_float(np.asarray(upright).astype(np.uint16 if upright.mode != "I" else np.int64),
                            bit_depth=16)
    if upright.mode == "P":
        upright = upright.convert("RGBA")
    if upright.mode not in ("L", "LA", "RGB", "RGBA"):
        upright = upright.convert("RGBA" if "A" in upright.mode else "RGB")
    return to_rgb_float(np.asarray(upright))


def to_rgb_float(image: np.ndarray, bit_depth: Optional[int] = None) -> np.ndarray:
    """Any (H, W), (H, W, 1|2|3|4) image array as RGB float32 in [0, 1]; alpha composited over white.

    Args:
        image: uint8 (0-255), uint16 (0-65535), other integers with ``bit_depth``, bool, or float in [0, 1].
            Views with negative strides (``image[::-1]``) are fine.
        bit_depth: bits per sample of an integer image; default from the dtype (8 for uint8, 16 for uint16).

    Returns:
        (H, W, 3) float32 array, C-contiguous.
    """
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an image (H, W) or (H, W, 1|2|3|4) such as an RGB (H, W, 3) array, "
                         f"got shape {array.shape}")
    if array.dtype == np.bool_:
        pixels = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.integer):
        bits = bit_depth or {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(array.dtype)
        if bits is None:
            raise ValueError(f"an image of dtype {array.dtype} needs bit_depth= (8 or 16) to be scaled to [0, 1]")
        if array.size and (array.min() < 0 or array.max() > 2**bits - 1):
            raise ValueError(f"integer image values must lie in [0, {2**bits - 1}] for {bits}-bit samples, "
                             f"got [{array.min()}, {array.max()}]")
        pixels = array.astype(np.float32) / float(2**bits - 1)
    elif np.issubdtype(array.dtype, np.floating):
        pixels = array.astype(np.float32)
        if pixels.size and (np.nanmin(pixels) < 0.0 or np.nanmax(pixels) > 1.0):
            raise ValueError("a float image must lie in [0, 1]; divide 8-bit values by 255 or pass uint8")
    else:
        raise ValueError(f"unsupported image dtype {array.dtype}; pass uint8, uint16, bool or float in [0, 1]")
    if not np.all(np.isfinite(pixels)):
        raise ValueError("the image contains NaN or infinite values")
    if pixels.shape[2] in (2, 4):  # colour + alpha: composite over a white background
        colour, alpha = pixels[..., :-1], pixels[..., -1:]
        pixels = colour * alpha + (1.0 - alpha)
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels, dtype=np.float32)


def resized_size(height: int, width: int, short_side: int) -> tuple:
    """(H, W) after torchvision's ``Resize(short_side)``: short side to ``short_side``, aspect ratio kept."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


def preprocess_image(
    image: np.ndarray, size: int = 224, resize_size: Optional[int] = None, normalization: str = "efficientnet"
) -> torch.Tensor:
    """An image as a model input: resize the short side, centre crop ``size``², normalise (torchvision's recipe).

    Args:
        image: an image array accepted by :func:`to_rgb_float` (uint8, uint16, float in [0, 1]; greyscale, RGB or
            with alpha; any strides).
        size: side of the square crop (224 for ImageNet models).
        resize_size: the short side before cropping; default ``round(size * 256 / 224)`` (256 for 224, the
            ImageNet convention).
        normalization: a key of :data:`NORMALIZATIONS`: ``"efficientnet"`` ([-1, 1], EfficientNet-Lite's range),
            ``"imagenet"`` (torchvision's mean/std) or ``"none"`` ([0, 1]).

    Returns:
        float32 tensor (3, size, size).
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {sorted(NORMALIZATIONS)}, got {normalization!r}")
    short = resize_size if resize_size is not None else int(round(size * 256 / 224))
    if short < size:
        raise ValueError(f"resize_size={short} is smaller than the crop size={size}; use resize_size >= size")
    pixels = torch.from_numpy(to_rgb_float(image)).permute(2, 0, 1)
    height, width = pixels.shape[1:]
    new_height, new_width = resized_size(height, width, short)
    resized = torch.nn.functional.interpolate(
        pixels[None], size=(new_height, new_width), mode="bilinear", align_corners=False, antialias=True
    )[0].clamp(0.0, 1.0)
    top, left = int(round((new_height - size) / 2.0)), int(round((new_width - size) / 2.0))
    cropped = resized[:, top:top + size, left:left + size]
    mean, std = (torch.tensor(v, dtype=torch.float32)[:, None, None] for v in NORMALIZATIONS[normalization])
    return ((cropped - mean) / std).contiguous()
