"""Reading and preprocessing images: torchvision's Resize + CenterCrop geometry, EXIF, 16-bit, alpha, strides."""
import numpy as np
import pytest
import torch
from PIL import Image

from captum_qubo.zoo import load_sample_image
from captum_qubo.zoo.images import preprocess_image, read_image, to_rgb_float

IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def torchvision_reference(image: np.ndarray, resize: int = 256, crop: int = 224) -> np.ndarray:
    """torchvision's documented PIL pipeline written out: Resize(resize) (short side, bilinear) → CenterCrop(crop)
    → ToTensor → Normalize(ImageNet), as (H, W, 3)."""
    height, width = image.shape[:2]
    if height <= width:
        size = (int(resize * width / height), resize)  # PIL takes (width, height)
    else:
        size = (resize, int(resize * height / width))
    resized = Image.fromarray(image).resize(size, Image.BILINEAR)
    top, left = int(round((size[1] - crop) / 2.0)), int(round((size[0] - crop) / 2.0))
    cropped = np.asarray(resized.crop((left, top, left + crop, top + crop)), dtype=np.float64) / 255.0
    return (cropped - IMAGENET_MEAN) / IMAGENET_STD


@pytest.mark.parametrize("name", ["chelsea", "rocket"])  # landscape 300×451 and portrait 427×640
def test_matches_torchvisions_pil_pipeline(name):
    image = load_sample_image(name)
    ours = preprocess_image(image, normalization="imagenet").permute(1, 2, 0).numpy()
    reference = torchvision_reference(image)
    assert ours.shape == reference.shape == (224, 224, 3)
    error = np.abs(ours - reference) * IMAGENET_STD  # back in [0, 1] pixel units
    assert error.max() <= 1.2 / 255  # PIL rounds its resize to 8 bits, we resize in float
    assert error.mean() <= 0.4 / 255


@pytest.mark.parametrize("shape", [(60, 90), (90, 60)])
def test_crop_is_central_and_the_aspect_ratio_is_kept(shape):
    height, width = shape
    rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    ramp = np.stack([columns / (width - 1), rows / (height - 1), np.zeros_like(rows, dtype=float)], axis=2)
    out = preprocess_image(ramp, size=32, resize_size=40, normalization="none").numpy()
    # Short side 60 → 40 (scale 2/3), long side 90 → 60; crop offsets (60 - 32) / 2 = 14 on the long side, 4 on the
    # short. A linear ramp stays (nearly: the sampled antialiasing kernel wobbles by ~0.03 px) linear under bilinear
    # resizing away from the border, so output
    # pixel i sits at input coordinate (offset + i + 0.5) * 1.5 - 0.5.
    long_offset, short_offset = 14, 4
    x_offset, y_offset = (long_offset, short_offset) if width > height else (short_offset, long_offset)
    index = np.arange(4, 28)
    expected_x = ((x_offset + index + 0.5) * 1.5 - 0.5) / (width - 1)
    expected_y = ((y_offset + index + 0.5) * 1.5 - 0.5) / (height - 1)
    np.testing.assert_allclose(out[0, 16, 4:28], expected_x, atol=1e-3)  # a 1-pixel shift would be ~1e-2
    np.testing.assert_allclose(out[1, 4:28, 16], expected_y, atol=1e-3)


def test_flipped_views_are_accepted_and_flip_the_result():
    image = load_sample_image("chelsea")
    flipped = image[::-1, ::-1]
    assert flipped.strides[0] < 0
    result = preprocess_image(flipped)
    torch.testing.assert_close(result, preprocess_image(np.ascontiguousarray(flipped)))
    torch.testing.assert_close(result, preprocess_image(image).flip(1, 2), atol=1e-4, rtol=0)  # symmetric crop


def test_alpha_is_composited_over_white_and_greyscale_repeated():
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 255, 51]]], dtype=np.uint8)
    np.testing.assert_allclose(to_rgb_float(rgba)[0], [[1, 0, 0], [1, 1, 1], [0.8, 0.8, 1.0]], atol=1e-6)
    grey = np.array([[0, 128, 255]], dtype=np.uint8)
    np.testing.assert_allclose(to_rgb_float(grey)[0], np.repeat(grey.T / 255.0, 3, axis=1), atol=1e-6)


def test_files_exif_sixteen_bit_rgba_palette(tmp_path):
    stored = np.zeros((40, 60, 3), dtype=np.uint8)
    stored[:10, :10] = 255  # a white block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: display = stored rotated 90° clockwise
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    upright = read_image(tmp_path / "rotated.jpg")
    assert upright.shape == (60, 40, 3)
    np.testing.assert_allclose(upright, np.rot90(stored, k=-1) / 255.0, atol=0.1)  # JPEG is lossy
    assert upright[:10, -10:].mean() > 0.9 and upright[:10, :10].mean() < 0.1  # the block is now top-right

    deep = (np.arange(30 * 20).reshape(30, 20) * 109).astype(np.uint16)  # up to 65291: beyond 8 bits
    Image.fromarray(deep).save(tmp_path / "deep.png")
    read = read_image(tmp_path / "deep.png")
    np.testing.assert_allclose(read[..., 0], deep / 65535.0, atol=1e-6)  # not clipped at 255, depth kept

    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 2], rgba[..., 3] = 200, 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    alpha = 128 / 255
    np.testing.assert_allclose(read_image(tmp_path / "alpha.png")[0, 0],
                               [1 - alpha, 1 - alpha, 200 / 255 * alpha + 1 - alpha], atol=1e-6)

    Image.fromarray(stored).convert("P").save(tmp_path / "palette.png")
    assert read_image(tmp_path / "palette.png").shape == (40, 60, 3)


def test_bad_images_say_what_is_wrong(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match="cannot read .*broken.png"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(ValueError, match="not found"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match=r"expected an image \(H, W\) or \(H, W, 1\|2\|3\|4\)"):
        preprocess_image(np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="float image must lie in"):
        preprocess_image(np.full((4, 4, 3), 255.0))
    with pytest.raises(ValueError, match=r"must lie in \[0, 65535\] for 16-bit samples"):
        to_rgb_float(np.array([[70000]]), bit_depth=16)
    with pytest.raises(ValueError, match="needs bit_depth="):
        to_rgb_float(np.array([[7]], dtype=np.int32))
    with pytest.raises(ValueError, match="normalization must be one of"):
        preprocess_image(np.zeros((4, 4, 3)), normalization="caffe")
    with pytest.raises(ValueError, match="smaller than the crop"):
        preprocess_image(np.zeros((4, 4, 3)), size=8, resize_size=6)
