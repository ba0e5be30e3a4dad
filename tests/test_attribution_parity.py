"""Call parity with captum.attr.LayerGradCam: its arguments, a layer by name, unnormalised scale, clear errors.

Expectations come from Captum's own LayerGradCam (per-channel α_k f_k with ``attr_dim_summation=False``) restricted
to the channels the QUBO selected, and from dwave-samplers called directly.
"""
import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam, NoiseTunnel
from dwave.samplers import TabuSampler

from captum_qubo.attribution import QuboFeatureMapAttribution
from captum_qubo.formulation.qubo import build_feature_map_qubo
from captum_qubo.solvers.registry import TABU_DEFAULTS, sample_lowest_energy


@pytest.fixture(scope="module")
def batch(digits_data):
    _, _, images, labels = digits_data
    return images[:6], labels[:6]


@pytest.fixture(scope="module")
def per_channel_grad_cam(digits_model, batch):
    """Captum's α_k f_k per channel, (N, C, H, W)."""
    images, labels = batch
    return LayerGradCam(digits_model, digits_model.reduce).attribute(images, target=labels, attr_dim_summation=False)


def selected_mask(explainer, num_channels):
    mask = torch.zeros(len(explainer.last_selections), num_channels, dtype=torch.bool)
    for i, selection in enumerate(explainer.last_selections):
        mask[i, torch.as_tensor(selection.channels, dtype=torch.long)] = True
    return mask[:, :, None, None]


@pytest.mark.parametrize("relu", [True, False])
def test_unsummed_unnormalised_maps_are_captums_per_channel_terms(digits_model, batch, per_channel_grad_cam, relu):
    images, labels = batch
    explainer = QuboFeatureMapAttribution(digits_model, digits_model.reduce, sampler="exact")
    maps = explainer.attribute(images, target=labels, relu_attributions=relu, attr_dim_summation=False, normalize=False)
    expected = per_channel_grad_cam * selected_mask(explainer, per_channel_grad_cam.shape[1])
    expected = torch.relu(expected) if relu else expected
    assert maps.shape == per_channel_grad_cam.shape
    torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-7)
    summed = explainer.attribute(images, target=labels, relu_attributions=relu, normalize=False)
    torch.testing.assert_close(summed, expected.sum(dim=1, keepdim=True), rtol=1e-5, atol=1e-6)
    if not relu:
        assert (summed < 0).any()  # the signed map keeps negative evidence


def test_the_pass_is_kept_for_a_grad_cam_comparison(digits_model, batch, per_channel_grad_cam):
    """α of every map and the activations: Captum's per-channel Grad-CAM term is exactly their product."""
    images, labels = batch
    explainer = QuboFeatureMapAttribution(digits_model, digits_model.reduce, sampler="exact")
    explainer.attribute(images, target=labels)
    activations = digits_model.reduce(digits_model.features(images)).detach()
    torch.testing.assert_close(explainer.last_activations, activations)
    torch.testing.assert_close(explainer.last_gradient_weights[:, :, None, None] * activations, per_channel_grad_cam,
                               rtol=1e-5, atol=1e-7)
    assert not explainer.last_activations.requires_grad


def test_normalised_map_is_the_min_max_of_the_unnormalised_one(digits_model, batch):
    images, labels = batch
    explainer = QuboFeatureMapAttribution(digits_model, digits_model.reduce, sampler="exact")
    raw = explainer.attribute(images, target=labels, normalize=False)
    scaled = explainer.attribute(images, target=labels)
    low = raw.amin(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(scaled, (raw - low) / (raw.amax(dim=(1, 2, 3), keepdim=True) - low))


def test_layer_by_dotted_name_equals_the_module(digits_model, batch):
    images, labels = batch
    by_name = QuboFeatureMapAttribution(digits_model, "reduce.2", sampler="exact").attribute(images, target=labels)
    by_module = QuboFeatureMapAttribution(digits_model, digits_model.reduce[2], sampler="exact").attribute(
        images, target=labels)
    assert torch.equal(by_name, by_module)
    with pytest.raises(ValueError, match="'reduce.9' not found.*Closest names"):
        QuboFeatureMapAttribution(digits_model, "reduce.9")
    with pytest.raises(TypeError, match="needs forward_func to be the nn.Module"):
        QuboFeatureMapAttribution(lambda x: digits_model(x), "reduce")


class TupleLayer(torch.nn.Module):
    """A block returning (maps, unused side output), like some detection backbones."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        maps = self.conv(x)
        return maps, maps.mean(dim=1)


class UsesFirstOutput(torch.nn.Module):
    def __init__(self, digits_model):
        super().__init__()
        self.inner = digits_model
        self.block = TupleLayer(digits_model.reduce)

    def forward(self, x):
        return self.inner.head(self.block(self.inner.features(x))[0].flatten(1))


def test_tuple_layer_with_an_unused_output_is_a_clear_error(digits_model, batch):
    images, labels = batch
    model = UsesFirstOutput(digits_model)
    with pytest.raises(ValueError, match="tuple output and the model does not use every element"):
        QuboFeatureMapAttribution(model, model.block, sampler="exact").attribute(images, target=labels)


class OneByOne(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 8)
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


def test_one_by_one_layer_warns_and_unnormalised_maps_keep_the_evidence(batch):
    torch.manual_seed(0)
    model, (images, _) = OneByOne(), batch
    explainer = QuboFeatureMapAttribution(model, model.conv, sampler="exact")
    with pytest.warns(RuntimeWarning, match="1x1 feature maps"):
        normalised = explainer.attribute(images, target=0)
    assert torch.count_nonzero(normalised) == 0
    with pytest.warns(RuntimeWarning, match="1x1"):
        raw = explainer.attribute(images, target=0, normalize=False)
    assert (raw > 0).any()


def test_noise_tunnel_gives_each_noisy_copy_its_own_selection(digits_model, batch):
    images, labels = batch
    explainer = QuboFeatureMapAttribution(digits_model, digits_model.reduce, sampler="exact")
    tunnel = NoiseTunnel(explainer)
    smoothed = tunnel.attribute(images[:2], nt_type="smoothgrad", nt_samples=5, stdevs=0.1, target=labels[:2])
    assert smoothed.shape == (2, 1, 8, 8)
    assert len(explainer.last_selections) == 10  # 2 images × 5 noisy copies, each selected on its own


def test_sample_lowest_energy_applies_the_registry_defaults(digits_model, batch):
    images, labels = batch
    from captum_qubo.attribution.layer_evaluation import layer_gradients_and_activations

    gradients, maps = layer_gradients_and_activations(digits_model, digits_model.reduce, images, labels, None, None,
                                                      False)
    problem = build_feature_map_qubo(gradients[0].mean(dim=(1, 2)).double().numpy(), maps[0].double().numpy(), 0.7,
                                     "k_hot", 3)
    bqm = problem.to_bqm()
    ours = sample_lowest_energy(bqm, "tabu", seed=0)
    direct = TabuSampler().sample(bqm, seed=0, **TABU_DEFAULTS)
    assert ours.num_samples == TABU_DEFAULTS["num_reads"] == len(direct)
    assert ours.energy == pytest.approx(direct.first.energy)
    assert np.sum(ours.state) == 3
