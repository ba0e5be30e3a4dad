"""The Quantus adapter with real Quantus metrics on the digits CNN: one per family, MPRT on a deep copy."""
import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

quantus = pytest.importorskip("quantus")

from captum_qubo.attribution import QuboFeatureMapAttribution  # noqa: E402
from captum_qubo.attribution.options import QuboOptions  # noqa: E402
from captum_qubo.integrations.quantus import explain, numpy2_auc_shim  # noqa: E402
from quantus.helpers import utils as quantus_utils  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

QUBO = {"layer": "reduce", "method": "qubo", "options": QuboOptions(sampler="exact")}
GRAD_CAM = {"layer": "reduce", "method": "grad_cam"}
QUIET = dict(disable_warnings=True, display_progressbar=False)


@pytest.fixture(scope="module")
def batch(digits_data):
    _, _, x_test, y_test = digits_data
    x, y = x_test[:12].numpy(), y_test[:12].numpy()
    return x, y, (x > 0.3).astype(np.float64)  # "where the ink is": the localisation ground truth


def reference_grad_cam(model, layer, x, y):
    """Grad-CAM computed here with a forward hook and autograd, independently of the library."""
    saved = {}
    handle = layer.register_forward_hook(lambda module, inputs, output: saved.update(maps=output))
    try:
        logits = model(torch.as_tensor(x))
    finally:
        handle.remove()
    score = logits[torch.arange(len(y)), torch.as_tensor(y)].sum()
    (gradients,) = torch.autograd.grad(score, saved["maps"])
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * saved["maps"]).sum(dim=1, keepdim=True)).detach()
    return F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False).numpy()


def test_grad_cam_through_the_adapter_matches_an_independent_grad_cam(digits_model, batch):
    x, y, _ = batch
    maps = explain(model=digits_model, inputs=x, targets=y, **GRAD_CAM)
    assert isinstance(maps, np.ndarray) and maps.dtype == np.float32 and maps.shape == (12, 1, 8, 8)
    np.testing.assert_allclose(maps, reference_grad_cam(digits_model, digits_model.reduce, x, y), rtol=1e-4, atol=1e-6)


def test_qubo_output_is_the_explainers_map_and_upsampled_to_the_input():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 5 * 5, 3))
    x = torch.rand(4, 1, 10, 10)
    y = np.array([0, 1, 2, 1])
    maps = explain(model=model, inputs=x.numpy(), targets=y, layer="1", sampler="exact")
    direct = QuboFeatureMapAttribution(model, model[1], sampler="exact").attribute(x, target=torch.as_tensor(y))
    assert direct.shape == (4, 1, 5, 5) and maps.shape == (4, 1, 10, 10)
    expected = F.interpolate(direct.detach(), size=(10, 10), mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(maps, expected, atol=1e-6)


def test_the_model_is_left_as_it_was(digits_model, batch):
    x, y, _ = batch
    model = copy.deepcopy(digits_model).train()
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 7.0)
    explain(model=model, inputs=x[:3], targets=y[:3], **QUBO)
    assert all(module.training for module in model.modules())
    assert all(torch.all(parameter.grad == 7.0) for parameter in model.parameters())
    assert all(not module._forward_hooks and not module._backward_hooks for module in model.modules())


def test_faithfulness_correlation(digits_model, batch):
    x, y, _ = batch
    scores = {}
    for name, kwargs in (("qubo", QUBO), ("grad_cam", GRAD_CAM)):
        metric = quantus.FaithfulnessCorrelation(nr_runs=10, subset_size=8, perturb_baseline="black",
                                                 return_aggregate=False, **QUIET)
        np.random.seed(0)  # Quantus draws the pixel subsets from numpy's global stream: same subsets for both
        scores[name] = metric(model=digits_model, x_batch=x, y_batch=y, explain_func=explain,
                              explain_func_kwargs=kwargs, device="cpu")
    for values in scores.values():
        assert len(values) == 12 and all(-1.0 <= v <= 1.0 for v in values)
    assert scores["qubo"] != scores["grad_cam"]  # the two methods' maps really reached the metric


def test_relevance_mass_accuracy_equals_the_mass_of_our_maps_inside_the_mask(digits_model, batch):
    x, y, mask = batch
    metric = quantus.RelevanceMassAccuracy(**QUIET)
    scores = metric(model=digits_model, x_batch=x, y_batch=y, s_batch=mask, explain_func=explain,
                    explain_func_kwargs=QUBO)
    maps = explain(model=digits_model, inputs=x, targets=y, **QUBO)[:, 0]
    expected = (maps * mask[:, 0]).sum(axis=(1, 2)) / maps.sum(axis=(1, 2))  # Arras et al.'s mass accuracy
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    hits = quantus.PointingGame(**QUIET)(model=digits_model, x_batch=x, y_batch=y, s_batch=mask,
                                           explain_func=explain, explain_func_kwargs=QUBO)
    peaks = maps.reshape(len(maps), -1).argmax(axis=1)
    assert hits == [bool(m) for m in mask[:, 0].reshape(len(maps), -1)[np.arange(len(maps)), peaks]]


def test_mprt_explains_randomised_deep_copies(digits_model, batch):
    x, y, _ = batch
    original = {key: value.clone() for key, value in digits_model.state_dict().items()}
    metric = quantus.MPRT(return_average_correlation=True, **QUIET)
    scores = metric(model=digits_model, x_batch=x[:6], y_batch=y[:6], explain_func=explain,
                    explain_func_kwargs=QUBO)
    assert len(scores) == 6 and np.all(np.isfinite(scores)) and np.all(np.abs(scores) <= 1.0)
    assert all(torch.equal(original[key], value) for key, value in digits_model.state_dict().items())
    # The layer is looked up on the model of each call: a copy with a randomised layer explains differently.
    randomised = copy.deepcopy(digits_model)
    torch.manual_seed(3)
    randomised.reduce[0].reset_parameters()
    before = explain(model=digits_model, inputs=x[:6], targets=y[:6], **QUBO)
    after = explain(model=randomised, inputs=x[:6], targets=y[:6], **QUBO)
    assert not np.allclose(before, after)


def test_max_sensitivity_is_zero_without_perturbation_and_positive_with(digits_model, batch):
    x, y, _ = batch
    def sensitivity(bound):
        metric = quantus.MaxSensitivity(nr_samples=3, lower_bound=bound, **QUIET)
        return np.asarray(metric(model=digits_model, x_batch=x[:6], y_batch=y[:6], explain_func=explain,
                                 explain_func_kwargs=GRAD_CAM))
    np.testing.assert_allclose(sensitivity(0.0), 0.0, atol=1e-6)  # uniform noise in [-0, 0]: same maps
    noisy = sensitivity(0.2)
    assert np.all(np.isfinite(noisy)) and noisy.mean() > 1e-3


def test_sparseness_is_the_gini_index_of_our_maps(digits_model, batch):
    x, y, _ = batch
    scores = quantus.Sparseness(**QUIET)(model=digits_model, x_batch=x, y_batch=y, explain_func=explain,
                                         explain_func_kwargs=QUBO)
    maps = np.abs(explain(model=digits_model, inputs=x, targets=y, **QUBO)).reshape(len(x), -1).astype(np.float64)
    maps = maps / maps.max(axis=1, keepdims=True)  # Quantus normalises by the maximum first
    ordered = np.sort(maps, axis=1) + 1e-7
    n = ordered.shape[1]
    ranks = np.arange(1, n + 1)
    gini = ((2 * ranks - n - 1) * ordered).sum(axis=1) / (n * ordered.sum(axis=1))  # Chalasani et al.
    np.testing.assert_allclose(scores, gini, rtol=1e-4)


def test_pixel_flipping_auc_needs_the_numpy2_shim(digits_model, batch):
    x, y, _ = batch
    def pixel_flipping():
        metric = quantus.PixelFlipping(features_in_step=8, perturb_baseline="black", return_auc_per_sample=True,
                                       **QUIET)
        return metric(model=digits_model, x_batch=x[:4], y_batch=y[:4], explain_func=explain,
                      explain_func_kwargs=GRAD_CAM)
    original = quantus_utils.calculate_auc
    if not hasattr(np, "trapz"):
        with pytest.raises(AttributeError, match="trapz"):
            pixel_flipping()
    with numpy2_auc_shim():
        areas = pixel_flipping()
    assert quantus_utils.calculate_auc is original  # restored
    assert len(areas) == 4 and all(0.0 <= a <= 8.0 for a in areas)  # 8 steps of a probability curve


def test_bad_arguments_name_the_fix(digits_model, batch):
    x, y, _ = batch
    with pytest.raises(ValueError, match="needs layer="):
        explain(model=digits_model, inputs=x, targets=y)
    with pytest.raises(ValueError, match="'reduc' not found.*Closest names: 'reduce'"):
        explain(model=digits_model, inputs=x, targets=y, layer="reduc")
    with pytest.raises(ValueError, match="method must be one of"):
        explain(model=digits_model, inputs=x, targets=y, layer="reduce", method="lime")
    with pytest.raises(ValueError, match="only apply to method='qubo'"):
        explain(model=digits_model, inputs=x, targets=y, layer="reduce", method="grad_cam", sampler="exact")
    with pytest.raises(TypeError, match="unknown explainer option"):
        explain(model=digits_model, inputs=x, targets=y, layer="reduce", samplr="exact")
    with pytest.raises(ValueError, match=r"device='cuda' but the model's parameters are on cpu; move the model"):
        explain(model=digits_model, inputs=x, targets=y, layer="reduce", device="cuda")
    with pytest.raises(ValueError, match="one class per input: 12 inputs, 3 targets"):
        explain(model=digits_model, inputs=x, targets=y[:3], layer="reduce")
