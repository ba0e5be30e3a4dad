"""Independent checks of the CAM baselines on tiny models whose gradients and masked scores are known by hand."""
import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from torch import nn

from captum_qubo.baselines import (
    LayerGradCamPlusPlus,
    LayerGradCamWithWeights,
    LayerScoreCam,
    grad_cam_plus_plus_weights,
)

METHODS = [LayerGradCamWithWeights, LayerGradCamPlusPlus, LayerScoreCam]


class GapLinear(nn.Module):
    """CAM architecture: feature maps -> global average pool -> linear. ∂S_c/∂A_kij = W_ck / HW exactly."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, pool: int = 1) -> None:
        super().__init__()
        self.features = nn.AvgPool2d(pool) if pool > 1 else nn.Identity()
        self.head = nn.Linear(weight.shape[1], weight.shape[0]).double()
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class HalfSquareHead(nn.Module):
    """S_c = Σ_k v_ck Σ_ij A_kij² / 2, so ∂S_c/∂A_kij = v_ck A_kij: gradients that vary over the map."""

    def __init__(self, v: torch.Tensor) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.v = nn.Parameter(v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("ck,nk->nc", self.v, self.features(x).pow(2).sum(dim=(2, 3)))


class SmallCnn(nn.Module):
    def __init__(self, num_classes: int = 5, extra_scale: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)
        self.extra_scale = extra_scale

    def forward(self, x: torch.Tensor, scale: torch.Tensor = None) -> torch.Tensor:
        a = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        logits = self.head(a.mean(dim=(2, 3)))
        return logits * scale[:, None] if scale is not None else logits


def _rng_maps(seed: int, shape) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).uniform(0.05, 1.0, size=shape))


# ----------------------------------------------------------------------------------------------- Grad-CAM++
def test_grad_cam_plus_plus_uniform_gradients_closed_form():
    # With ∂S/∂A_k = g_k = W_ck/HW uniform and eps=0: w_k = HW·ReLU(g_k)/(2 + S_k g_k), S_k = Σ_ab A_kab.
    weight = torch.tensor([[0.8, -0.3, 1.5], [0.2, 0.4, -1.0]], dtype=torch.float64)
    model = GapLinear(weight, torch.zeros(2, dtype=torch.float64))
    x = _rng_maps(0, (2, 3, 4, 5))
    method = LayerGradCamPlusPlus(model, model.features)
    method.attribute(x, target=[0, 1], eps=0.0)
    hw = 20
    for n, c in enumerate([0, 1]):
        for k in range(3):
            g = weight[c, k].item() / hw
            expected = hw * max(g, 0.0) / (2 + x[n, k].sum().item() * g)
            assert method.last_channel_weights[n, k].item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_grad_cam_plus_plus_varying_gradients_pixel_by_pixel():
    v = torch.tensor([[0.7, -0.4, 2.0]], dtype=torch.float64)
    model = HalfSquareHead(v)
    x = _rng_maps(1, (1, 3, 3, 4))
    for eps in (0.0, 1e-6, 0.3):
        method = LayerGradCamPlusPlus(model, model.features)
        cam = method.attribute(x, target=0, eps=eps)
        for k in range(3):
            total = x[0, k].sum().item()
            expected = 0.0
            for value in x[0, k].flatten().tolist():
                g = v[0, k].item() * value  # ∂S/∂A_kij for this head
                if g > 0:
                    expected += g * g * g / (2 * g * g + total * g**3 + eps)
            assert method.last_channel_weights[0, k].item() == pytest.approx(expected, rel=1e-12, abs=1e-15)
        direct = (method.last_channel_weights[0, :, None, None] * x[0]).sum(0)
        torch.testing.assert_close(cam[0, 0], direct, rtol=1e-12, atol=1e-15)
    assert model.v.grad is None


def test_grad_cam_plus_plus_zero_gradients_give_zero_weight_not_nan():
    gradients = torch.zeros(1, 2, 3, 3)
    gradients[0, 1, 0, 0] = -1.0  # zero denominators with eps=0; negative gradients never contribute
    weights = grad_cam_plus_plus_weights(gradients, torch.rand(1, 2, 3, 3), eps=0.0)
    assert torch.equal(weights, torch.zeros(1, 2))


# ----------------------------------------------------------------------------------------------- Score-CAM
def _expected_score_cam(x, weight, bias, target, masks, mode):
    """Score-CAM weights by hand: masked image -> GAP -> linear -> softmax over classes or over channels."""
    logits = np.stack([weight @ (x * m).mean(axis=(1, 2)) + bias for m in masks])  # (C, classes)
    if mode == "probability":
        return np.exp(logits[:, target]) / np.exp(logits).sum(axis=1)
    target_logits = logits[:, target]
    return np.exp(target_logits) / np.exp(target_logits).sum()


@pytest.mark.parametrize("mode", ["probability", "logit_softmax"])
def test_score_cam_weights_by_hand_at_input_resolution(mode):
    weight = np.array([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7]])
    model = GapLinear(torch.from_numpy(weight), torch.tensor([0.1, -0.2], dtype=torch.float64))
    x = _rng_maps(2, (1, 3, 4, 4))
    x[0, 2] = 0.6  # a constant map: weight 0, left out of the softmax
    method = LayerScoreCam(model, model.features)
    method.attribute(x, target=1, channel_scores=mode)
    xn = x[0].numpy()
    masks = [(xn[k] - xn[k].min()) / (xn[k].max() - xn[k].min()) for k in range(2)]
    expected = _expected_score_cam(xn, weight, np.array([0.1, -0.2]), 1, masks, mode)
    np.testing.assert_allclose(method.last_channel_weights[0, :2].numpy(), expected, rtol=1e-12)
    assert method.last_channel_weights[0, 2].item() == 0.0


@pytest.mark.parametrize(
    "align_corners, interpolation",
    [
        (False, [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]]),  # half-pixel centres, clamped at the border
        (True, [[1, 0], [2 / 3, 1 / 3], [1 / 3, 2 / 3], [0, 1]]),  # corner pixels aligned
    ],
)
def test_score_cam_upsamples_masks_bilinearly_to_input_size(align_corners, interpolation):
    weight = np.array([[1.0, -0.5], [0.2, 0.9]])
    model = GapLinear(torch.from_numpy(weight), torch.zeros(2, dtype=torch.float64), pool=2)
    x = _rng_maps(3, (1, 2, 4, 4))
    method = LayerScoreCam(model, model.features)
    method.attribute(x, target=0, align_corners=align_corners)
    p = np.array(interpolation)
    pooled = x[0].numpy().reshape(2, 2, 2, 2, 2).mean(axis=(2, 4))  # (C, 2, 2) 2×2 average pooling
    masks = []
    for k in range(2):
        upsampled = p @ pooled[k] @ p.T
        masks.append((upsampled - upsampled.min()) / (upsampled.max() - upsampled.min()))
    expected = _expected_score_cam(x[0].numpy(), weight, np.zeros(2), 0, masks, "probability")
    np.testing.assert_allclose(method.last_channel_weights[0].numpy(), expected, rtol=1e-12)


def test_score_cam_all_constant_maps_give_zero_map_without_nan():
    model = SmallCnn()
    for mode in ("probability", "logit_softmax"):
        method = LayerScoreCam(model, model.conv1)
        cam = method.attribute(torch.ones(2, 3, 6, 6) * 0.0, target=1, channel_scores=mode, relu_attributions=True)
        # a zero image makes every conv1 map constant (its bias)
        assert torch.isfinite(cam).all() and torch.equal(cam, torch.zeros_like(cam))
        assert torch.equal(method.last_channel_weights, torch.zeros(2, 6))


def test_score_cam_result_does_not_depend_on_internal_batch_size():
    model = SmallCnn().double()
    x = torch.from_numpy(np.random.default_rng(4).normal(size=(3, 3, 7, 7)))
    results = []
    for batch in (1, 5, 1000):
        method = LayerScoreCam(model, model.conv2)
        cam = method.attribute(x, target=torch.tensor([0, 3, 4]), internal_batch_size=batch)
        results.append((cam, method.last_channel_weights))
    for cam, weights in results[1:]:
        torch.testing.assert_close(cam, results[0][0], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(weights, results[0][1], rtol=1e-12, atol=1e-14)


def test_score_cam_indexes_per_example_forward_args_for_masked_passes():
    model = SmallCnn().double()
    x = torch.from_numpy(np.random.default_rng(5).normal(size=(2, 3, 6, 6)))
    scale = torch.tensor([2.0, -1.0], dtype=torch.float64)
    with_args = LayerScoreCam(model, model.conv2)
    with_args.attribute(x, target=[1, 2], additional_forward_args=(scale,), channel_scores="logit_softmax")
    for n in range(2):
        one = LayerScoreCam(lambda image, s=scale[n]: model(image) * s, model.conv2)
        one.attribute(x[n : n + 1], target=[1, 2][n], channel_scores="logit_softmax")
        torch.testing.assert_close(with_args.last_channel_weights[n], one.last_channel_weights[0])


# ------------------------------------------------------------------------------------------------- Grad-CAM
def test_grad_cam_weights_are_mean_gradients_by_autograd_and_map_is_captums():
    model = SmallCnn().double()
    x = torch.from_numpy(np.random.default_rng(6).normal(size=(3, 3, 5, 5)))
    target = [4, 0, 2]
    method = LayerGradCamWithWeights(model, model.conv2)
    cam = method.attribute(x, target=target)
    # autograd directly, from the conv2 output onwards
    a = model.conv2(torch.relu(model.conv1(x))).detach().requires_grad_(True)
    logits = model.head(torch.relu(a).mean(dim=(2, 3)))
    (grad,) = torch.autograd.grad(logits[torch.arange(3), target].sum(), a)
    torch.testing.assert_close(method.last_channel_weights, grad.mean(dim=(2, 3)), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(cam, LayerGradCam(model, model.conv2).attribute(x, target=target), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------- shared behaviour
@pytest.mark.parametrize("method_class", METHODS)
def test_channel_weights_shape_and_map_shape(method_class):
    model = SmallCnn()
    method = method_class(model, model.conv2)
    assert method.last_channel_weights is None
    cam = method.attribute(torch.randn(2, 3, 6, 6), target=1)
    assert cam.shape == (2, 1, 6, 6)
    assert method.last_channel_weights.shape == (2, 8) and not method.last_channel_weights.requires_grad


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


@pytest.mark.parametrize("method_class", METHODS)
def test_no_hooks_left_mode_and_grad_untouched(method_class):
    model = SmallCnn().train()
    model.conv1.weight.grad = torch.full_like(model.conv1.weight, 0.25)
    x = torch.randn(2, 3, 6, 6)
    method = method_class(model, model.conv2)
    method.attribute(x, target=[0, 1], relu_attributions=True)
    with pytest.raises(ValueError):
        method.attribute(x, target=99)  # raised inside the forward pass, while Captum's hook is registered
    assert method.last_channel_weights is None  # no stale weights from the previous call
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(model.conv1.weight.grad, torch.full_like(model.conv1.weight, 0.25))
    assert all(p.grad is None for name, p in model.named_parameters() if name != "conv1.weight")
    assert _hook_count(model) == 0
    assert not x.requires_grad


@pytest.mark.parametrize("method_class", METHODS)
def test_clear_errors(method_class):
    model = SmallCnn()
    x = torch.randn(2, 3, 6, 6)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        method_class(model, model.head).attribute(x, target=0)
    method = method_class(model, model.conv2)
    bad = x.clone()
    bad[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        method.attribute(bad, target=0)
    with pytest.raises(ValueError, match="out of range.*0..4"):
        method.attribute(x, target=5)
    with pytest.raises(ValueError, match="out of range"):
        method.attribute(x, target=[0, -1])
    with pytest.raises(ValueError, match="out of range"):
        method.attribute(x, target=torch.tensor([1, 7]))
    with pytest.raises(ValueError, match="length 3"):
        method.attribute(x, target=[0, 1, 2])
    with pytest.raises(ValueError, match="target=<class index>"):
        method.attribute(x)
    assert _hook_count(model) == 0


def test_score_cam_argument_errors():
    model = SmallCnn()
    method = LayerScoreCam(model, model.conv2)
    x = torch.randn(1, 3, 6, 6)
    with pytest.raises(ValueError, match="one image tensor"):
        method.attribute((x, x), target=0)
    with pytest.raises(ValueError, match="internal_batch_size"):
        method.attribute(x, target=0, internal_batch_size=0)
    with pytest.raises(ValueError, match="channel_scores"):
        method.attribute(x, target=0, channel_scores="softmax")
