"""Parity of our CAM baselines with the peer library pytorch-grad-cam (PyPI ``grad-cam``) on real models.

pytorch-grad-cam min-max normalises and upsamples its maps (``scale_cam_image``), so our layer-resolution maps
go through that same function before comparing. Channel weights are compared directly as well.

The peer needs torchvision, which imports only beside torch 2.14.1, so it lives in its own venv:
``bash .ci/peers.sh`` builds it and runs this file there with CAPTUM_QUBO_REQUIRE_PEERS=1, which turns a
missing peer into a failure instead of a skip.
"""
import os

import numpy as np
import pytest
import torch

from captum_qubo.baselines import LayerGradCamPlusPlus, LayerGradCamWithWeights, LayerScoreCam

try:
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    PEER_IMPORT_ERROR = None
except ImportError as error:  # the main venv has no torchvision, hence no peer
    PEER_IMPORT_ERROR = error

if PEER_IMPORT_ERROR is not None:
    message = f"pytorch-grad-cam is not importable ({PEER_IMPORT_ERROR}); run `bash .ci/peers.sh`"
    if os.environ.get("CAPTUM_QUBO_REQUIRE_PEERS") == "1":
        raise ImportError(message) from PEER_IMPORT_ERROR  # a collection error: the run fails, never skips
    pytest.skip(message, allow_module_level=True)

from captum_qubo import zoo  # noqa: E402

# float32 models, so agreement is to rounding. Measured worst cases (digits Grad-CAM++): weights 4e-6 of the
# largest weight, normalised maps 2.5e-6 absolute; the bounds leave 5-10x headroom for other BLAS builds.
WEIGHT_TOL = 2e-5  # relative, and absolute relative to the largest peer weight
MAP_ATOL = 2e-5  # maps are in [0, 1]
PEER_METHODS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "scorecam": ScoreCAM}


def _ours(name, model, layer):
    if name == "gradcam":
        return LayerGradCamWithWeights(model, layer), {}
    if name == "gradcam++":
        return LayerGradCamPlusPlus(model, layer), {}
    # pytorch-grad-cam's ScoreCAM: softmax over channels of the target logits, align_corners=True masks.
    return LayerScoreCam(model, layer), {
        "channel_scores": "logit_softmax",
        "align_corners": True,
        "internal_batch_size": 64,
    }


def _peer_run(name, model, layer, images, classes):
    """The peer's normalised maps (N, H, W) and its channel weights (N, C) from the same activations."""
    cam = PEER_METHODS[name](model=model, target_layers=[layer])
    cam.batch_size = 64
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    try:
        maps = cam(input_tensor=images, targets=targets)
        store = cam.activations_and_grads
        activations = store.activations[0].numpy()
        gradients = store.gradients[0].numpy() if store.gradients else None
        with torch.no_grad():
            weights = cam.get_cam_weights(images, layer, targets, activations, gradients)
    finally:
        cam.activations_and_grads.release()  # remove the peer's hooks from the shared model
    return maps, np.asarray(weights)


def _normalised_like_peer(cam: torch.Tensor, size) -> np.ndarray:
    """Our (N, 1, h, w) map through the peer's post-processing: ReLU, scale_cam_image to input size, again."""
    per_layer = scale_cam_image(np.maximum(cam[:, 0].detach().numpy(), 0), size)
    return scale_cam_image(np.maximum(per_layer, 0))


def _check_parity(name, model, layer, images, classes):
    ours, kwargs = _ours(name, model, layer)
    cam = ours.attribute(images, target=classes.tolist(), relu_attributions=True, **kwargs)
    peer_maps, peer_weights = _peer_run(name, model, layer, images, classes)
    scale = np.abs(peer_weights).max()
    np.testing.assert_allclose(ours.last_channel_weights.numpy(), peer_weights, rtol=WEIGHT_TOL, atol=WEIGHT_TOL * scale)
    ours_maps = _normalised_like_peer(cam, (images.shape[-1], images.shape[-2]))
    assert ours_maps.shape == peer_maps.shape
    np.testing.assert_allclose(ours_maps, peer_maps, rtol=0, atol=MAP_ATOL)
    assert peer_maps.max() > 0.99  # a real, non-degenerate map was compared


@pytest.fixture(scope="module")
def efficientnet():
    model = zoo.load_efficientnet_lite0()
    images = torch.stack([zoo.preprocess_image(zoo.load_sample_image(n)) for n in ("chelsea", "coffee")])
    with torch.no_grad():
        classes = model(images).argmax(1)
    return model, zoo.efficientnet_target_layer(model), images, classes


@pytest.fixture(scope="module")
def digits():
    model = zoo.train_digits_cnn(num_filters=16, seed=0)
    _, _, x_test, _ = zoo.load_digits_split(seed=0)
    images = x_test[:12]
    with torch.no_grad():
        classes = model(images).argmax(1)
    return model, model.reduce, images, classes


@pytest.mark.parametrize("name", ["gradcam", "gradcam++"])
def test_efficientnet_gradient_cams_match_peer(efficientnet, name):
    _check_parity(name, *efficientnet)


@pytest.mark.slow
def test_efficientnet_score_cam_matches_peer(efficientnet):
    # The last MBConv block (320 maps, 7x7) needs a quarter of the masked passes of the 1280 head maps; its
    # maps are not activated, so this also checks both libraries treat negative maps alike.
    model, _, images, classes = efficientnet
    _check_parity("scorecam", model, model._blocks[-1], images[:1], classes[:1])


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "scorecam"])
def test_digits_cnn_cams_match_peer(digits, name):
    _check_parity(name, *digits)
