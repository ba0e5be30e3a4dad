"""QuboFeatureMapAttribution on real models: Captum interop, correctness against independent
re-computations (brute force, a second implementation of METHOD.md §1–2), safety and bad input."""
import copy
import itertools

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution
from captum.attr import visualization as captum_viz
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from captum_qubo.attribution import QuboFeatureMapAttribution
from captum_qubo.attribution.options import QuboOptions
from captum_qubo.solvers.registry import SamplerConfigurationError

EGYPTIAN_CAT = 285
BETA = 0.7
# The tests that re-derive the QUBO from α (importance = α, β = 0.7) name the paper's formulation explicitly.
PAPER = QuboOptions.preset("paper")


@pytest.fixture(scope="module")
def chelsea_explanation(efficientnet, efficientnet_layer, chelsea):
    explainer = QuboFeatureMapAttribution(efficientnet, efficientnet_layer, options=PAPER, sampler="sa", seed=0)
    attribution = explainer.attribute(chelsea, target=EGYPTIAN_CAT)
    return explainer, attribution


def test_the_default_formulation_also_sits_on_the_cat(efficientnet, efficientnet_layer, chelsea):
    """The library default (contribution, β = 0.9): same face criterion as the paper preset's test below."""
    explainer = QuboFeatureMapAttribution(efficientnet, efficientnet_layer, sampler="sa", seed=0)
    upsampled = LayerAttribution.interpolate(explainer.attribute(chelsea, target=EGYPTIAN_CAT), (224, 224),
                                             "bilinear")[0, 0].clamp(min=0)
    face = torch.zeros(224, 224, dtype=torch.bool)
    face[40:224, 30:180] = True
    assert float(upsampled[face].sum() / upsampled.sum()) > 0.5
    (selection,) = explainer.last_selections
    importance = selection.importance  # the contribution α_k·Σf_k; the map's weights stay α
    assert selection.num_variables == int((importance > 0).sum()) and np.all(importance[selection.channels] > 0)
    assert torch.all(explainer.last_channel_weights[0, selection.channels] > 0)


@pytest.fixture(scope="module")
def digits_batch(digits_model, digits_data):
    """Four correctly classified test digits and their labels."""
    _, _, x_test, y_test = digits_data
    with torch.no_grad():
        correct = digits_model(x_test).argmax(1) == y_test
    return x_test[correct][:4], y_test[correct][:4]


def independent_alpha_and_maps(model, images, targets):
    """α and the reduce-block maps by running the DigitsCNN by hand (no hooks, no Captum)."""
    maps = model.reduce(model.features(images)).detach().requires_grad_(True)
    logits = model.head(maps.flatten(1))
    (grad,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), maps)
    return grad.mean(dim=(2, 3)).double().numpy(), maps.detach().double().numpy()


def brute_force_selection(alpha, maps, beta=BETA):
    """METHOD.md §1 minimised over all 2^d bitstrings, written from the formula, not from qubo.py."""
    kept = np.flatnonzero(alpha > 0)
    flat = maps[kept].reshape(len(kept), -1)
    norms = np.sqrt((flat**2).sum(axis=1))
    J = np.abs(flat @ flat.T) / np.outer(norms, norms)
    np.fill_diagonal(J, 0.0)
    h = alpha[kept] / alpha[kept].max()
    states = np.array(list(itertools.product((0.0, 1.0), repeat=len(kept))))
    energies = (1 - beta) * 0.5 * np.einsum("sp,pq,sq->s", states, J, states) - beta * states @ h
    best = int(np.argmin(energies))
    return sorted(int(c) for c in kept[states[best] == 1]), float(energies[best])


def no_hooks(model):
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules()
    )


# --- shape, Captum interop, the cat ---------------------------------------------------------------


def test_shape_range_and_captum_visualization(chelsea_explanation, chelsea):
    explainer, attribution = chelsea_explanation
    assert attribution.shape == (1, 1, 7, 7)  # layer resolution, like LayerGradCam on the head maps
    assert attribution.min() == 0.0 and attribution.max() == 1.0  # min-max per sample
    upsampled = LayerAttribution.interpolate(attribution, (224, 224), "bilinear")
    assert upsampled.shape == (1, 1, 224, 224)
    figure = Figure()
    FigureCanvasAgg(figure)
    picture = (chelsea[0].permute(1, 2, 0).numpy() * 0.5 + 0.5).clip(0, 1)
    returned_figure, axis = captum_viz.visualize_image_attr(
        upsampled[0].permute(1, 2, 0).numpy(),
        picture,
        method="blended_heat_map",
        sign="positive",
        plt_fig_axis=(figure, figure.subplots()),
        use_pyplot=False,
    )
    assert returned_figure is figure and axis.images


def test_egyptian_cat_explanation_sits_on_the_cat(chelsea_explanation):
    _, attribution = chelsea_explanation
    upsampled = LayerAttribution.interpolate(attribution, (224, 224), "bilinear")[0, 0].clamp(min=0)
    # Hand-drawn from the 224² (squashed) photo: eyes, nose and muzzle; excludes the blurred
    # background strip on the right and the top corners.
    face = torch.zeros(224, 224, dtype=torch.bool)
    face[40:224, 30:180] = True
    inside = float(upsampled[face].sum() / upsampled.sum())
    assert inside > 0.5, "most of the explanation's mass must lie on the cat's face"
    assert inside > float(face.float().mean()), "more concentrated on the face than a uniform map"
    peak = np.unravel_index(int(upsampled.argmax()), upsampled.shape)
    assert face[peak]
    # The criterion can fail: the same map turned inside out puts most mass on the background.
    inverted = 1 - upsampled
    assert float(inverted[face].sum() / inverted.sum()) < float(face.float().mean())


def test_selection_record_and_channel_weights(chelsea_explanation):
    explainer, _ = chelsea_explanation
    (selection,) = explainer.last_selections
    alpha = selection.importance
    assert selection.num_variables == int((alpha > 0).sum())
    assert selection.num_selected >= 1 and np.all(alpha[selection.channels] > 0)
    expected = np.zeros_like(alpha)
    expected[selection.channels] = alpha[selection.channels]
    np.testing.assert_allclose(explainer.last_channel_weights[0].double().numpy(), expected, rtol=1e-6)
    state = np.isin(selection.qubo.kept, selection.channels)
    assert selection.energy == pytest.approx(float(selection.qubo.energies(state)))
    assert set(selection.timings) == {"forward_backward", "build", "solve"}
    assert selection.sampler == "sa" and "timing" in selection.info


def test_exact_sampler_refuses_a_large_layer_with_the_fix(efficientnet, efficientnet_layer, chelsea):
    explainer = QuboFeatureMapAttribution(efficientnet, efficientnet_layer, sampler="exact")
    with pytest.raises(ValueError, match="max_variables"):
        explainer.attribute(chelsea, target=EGYPTIAN_CAT)
    assert no_hooks(efficientnet)


# --- correctness against independent re-computation (digits CNN, N_f = 16) -------------------------


def test_exact_selection_is_the_brute_force_minimum(digits_model, digits_batch):
    images, labels = digits_batch
    explainer = QuboFeatureMapAttribution(digits_model, digits_model.reduce, options=PAPER, sampler="exact")
    explainer.attribute(images, target=labels)
    alpha, maps = independent_alpha_and_maps(digits_model, images, labels)
    for i, selection in enumerate(explainer.last_selections):
        assert selection.num_variables <= 16
        channels, energy = brute_force_selection(alpha[i], maps[i])
        assert list(selection.channels) == channels
        assert selection.energy == pytest.approx(energy, abs=1e-9)
        np.testing.assert_allclose(selection.importance, alpha[i], rtol=1e-5, atol=1e-9)


def test_default_selection_is_the_brute_force_minimum_of_the_contribution_qubo(digits_model, digits_batch):
    images, labels = digits_batch
    explainer = QuboFeatureMapAttribution(digits_model, digits_model.reduce, sampler="exact")
    assert (explainer.options.importance, explainer.beta) == ("contribution", 0.9)
    explainer.attribute(images, target=labels)
    alpha, maps = independent_alpha_and_maps(digits_model, images, labels)
    contribution = alpha * maps.sum(axis=(2, 3))
    for i, selection in enumerate(explainer.last_selections):
        channels, energy = brute_force_selection(contribution[i], maps[i], beta=0.9)
        assert list(selection.channels) == channels
        assert selection.energy == pytest.approx(energy, rel=1e-6)  # the library computes the contribution in float32
        np.testing.assert_allclose(selection.importance, contribution[i], rtol=1e-5, atol=1e-9)


def test_explanation_map_is_method_section_2(digits_model, digits_batch):
    images, labels = digits_batch
    explainer = QuboFeatureMapAttribution(digits_model, digits_model.reduce, sampler="exact")
    attribution = explainer.attribute(images, target=labels)
    alpha, maps = independent_alpha_and_maps(digits_model, images, labels)
    for i, selection in enumerate(explainer.last_selections):
        summed = sum(np.maximum(alpha[i][c] * maps[i][c], 0.0) for c in selection.channels)
        expected = (summed - summed.min()) / (summed.max() - summed.min())
        np.testing.assert_allclose(attribution[i, 0].double().numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("importance", ["contribution", "contrastive"])
def test_last_outputs_are_the_models_output_on_the_inputs(digits_model, digits_batch, importance):
    images, labels = digits_batch
    explainer = QuboFeatureMapAttribution(digits_model, digits_model.reduce, importance=importance)
    explainer.attribute(images, target=labels)
    with torch.no_grad():
        expected = digits_model(images)
    assert not explainer.last_outputs.requires_grad
    torch.testing.assert_close(explainer.last_outputs, expected)
    with pytest.raises(ValueError):
        explainer.attribute(images, target=99)
    assert explainer.last_outputs is None  # a failed call leaves no stale output


def test_a_kept_coupling_buffer_gives_the_same_explanations(digits_model, digits_batch, monkeypatch):
    """Small coupling tensors are not kept (they would pin the heap); large ones are, and refilling one for later,
    smaller batches changes nothing."""
    from captum_qubo.attribution import qubo_attribution

    images, labels = digits_batch
    explainer = QuboFeatureMapAttribution(digits_model, digits_model.reduce)
    explainer.attribute(images, target=labels)
    assert explainer._coupling_buffer is None  # digits J: a few kB
    monkeypatch.setattr(qubo_attribution, "REUSED_COUPLING_BYTES", 0)
    reusing = QuboFeatureMapAttribution(digits_model, digits_model.reduce)
    reusing.attribute(images, target=labels)
    kept = reusing._coupling_buffer.data_ptr()
    for rows in (slice(0, 5), slice(3, 4), slice(None)):
        maps = reusing.attribute(images[rows], target=labels[rows])
        assert reusing._coupling_buffer.data_ptr() == kept
        fresh = QuboFeatureMapAttribution(digits_model, digits_model.reduce)
        torch.testing.assert_close(maps, fresh.attribute(images[rows], target=labels[rows]), rtol=0, atol=0)
        assert [s.energy for s in reusing.last_selections] == [s.energy for s in fresh.last_selections]
    reusing.release_workspace()
    assert reusing._coupling_buffer is None


def test_per_sample_targets_equal_one_at_a_time(digits_model, digits_batch):
    images, labels = digits_batch
    other = (labels + 1) % 10
    for target in (other.tolist(), other):
        explainer = QuboFeatureMapAttribution(digits_model, digits_model.reduce, sampler="exact")
        batch = explainer.attribute(images, target=target)
        batch_channels = [list(s.channels) for s in explainer.last_selections]
        for i in range(len(images)):
            single = explainer.attribute(images[i : i + 1], target=int(other[i]))
            assert list(explainer.last_selections[0].channels) == batch_channels[i]
            assert explainer.last_selections[0].target == int(other[i])
            torch.testing.assert_close(single[0], batch[i])


@pytest.mark.parametrize(
    "sampler, sampler_kwargs", [("sa", {"num_reads": 2, "num_sweeps": 20}), ("tabu", None)]
)
def test_same_seed_same_selection(digits_model, digits_batch, sampler, sampler_kwargs):
    images, labels = digits_batch

    def explainer():
        return QuboFeatureMapAttribution(
            digits_model, digits_model.reduce, sampler=sampler, sampler_kwargs=sampler_kwargs, seed=7
        )

    runs = []
    for _ in range(2):
        attribution = explainer()
        runs.append((attribution.attribute(images, target=labels), attribution.last_selections))
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=0, atol=0)
    for first, second in zip(runs[0][1], runs[1][1]):
        assert list(first.channels) == list(second.channels) and first.energy == second.energy
    # An image's selection does not depend on its position in the batch.
    alone = explainer()
    alone.attribute(images[2:3], target=labels[2:3])
    assert list(alone.last_selections[0].channels) == list(runs[0][1][2].channels)


def test_layer_input_equals_previous_layer_output(digits_model, digits_batch):
    images, labels = digits_batch
    relu, batch_norm = digits_model.reduce[1], digits_model.reduce[2]
    on_input = QuboFeatureMapAttribution(digits_model, batch_norm, sampler="exact")
    on_output = QuboFeatureMapAttribution(digits_model, relu, sampler="exact")
    torch.testing.assert_close(
        on_input.attribute(images, target=labels, attribute_to_layer_input=True),
        on_output.attribute(images, target=labels),
    )
    assert [list(s.channels) for s in on_input.last_selections] == [list(s.channels) for s in on_output.last_selections]


def test_additional_forward_args_and_logit_scale_invariance(digits_model, digits_batch):
    """Scaling the logits scales every α alike; h = α / max α, so the QUBO and the map are unchanged."""
    images, labels = digits_batch

    def scaled(x, scale):
        return digits_model(x) * scale

    plain = QuboFeatureMapAttribution(digits_model, digits_model.reduce, sampler="exact")
    expected = plain.attribute(images, target=labels)
    explainer = QuboFeatureMapAttribution(scaled, digits_model.reduce, sampler="exact")
    torch.testing.assert_close(explainer.attribute(images, target=labels, additional_forward_args=(3.0,)), expected)
    for mine, reference in zip(explainer.last_selections, plain.last_selections):
        assert list(mine.channels) == list(reference.channels)
        np.testing.assert_allclose(mine.importance, 3.0 * reference.importance, rtol=1e-4, atol=1e-8)  # float32


def test_k_hot_selects_exactly_k(digits_model, digits_batch):
    images, labels = digits_batch
    explainer = QuboFeatureMapAttribution(
        digits_model, digits_model.reduce, sampler="exact", formulation="k_hot", k=3
    )
    explainer.attribute(images, target=labels)
    assert all(s.num_selected == 3 for s in explainer.last_selections)


# --- safety: hooks, mode, .grad, grad modes --------------------------------------------------------


def test_no_hooks_left_after_success_and_after_an_exception(digits_model, digits_batch):
    images, labels = digits_batch
    QuboFeatureMapAttribution(digits_model, digits_model.reduce, sampler="exact").attribute(images, target=labels)
    assert no_hooks(digits_model)

    def raises_after_the_layer(x):
        digits_model(x)
        raise RuntimeError("model failed mid-forward")

    explainer = QuboFeatureMapAttribution(raises_after_the_layer, digits_model.reduce, sampler="exact")
    with pytest.raises(RuntimeError, match="mid-forward"):
        explainer.attribute(images, target=labels)
    assert no_hooks(digits_model)
    with pytest.raises(ValueError, match="out of range"):
        QuboFeatureMapAttribution(digits_model, digits_model.reduce).attribute(images, target=10)
    assert no_hooks(digits_model)


def assert_explaining_leaves_model_alone(model, explain):
    """``explain()`` keeps every module's train/eval mode and every parameter's ``.grad`` (one set beforehand)."""
    first = next(model.parameters())
    first.grad = torch.full_like(first, 3.0)
    before = {name: (None if p.grad is None else p.grad.clone()) for name, p in model.named_parameters()}
    modes = [m.training for m in model.modules()]
    explain()
    assert [m.training for m in model.modules()] == modes
    for name, p in model.named_parameters():
        if before[name] is None:
            assert p.grad is None, name
        else:
            assert torch.equal(p.grad, before[name]), name


@pytest.mark.parametrize("training", [False, True])
def test_mode_and_parameter_grads_untouched(digits_model, digits_batch, training):
    images, labels = digits_batch
    model = copy.deepcopy(digits_model).train(training)
    assert_explaining_leaves_model_alone(model, lambda: QuboFeatureMapAttribution(
        model, model.reduce, sampler="exact").attribute(images, target=labels))


@pytest.mark.parametrize("grad_mode", [torch.no_grad, torch.inference_mode])
def test_works_under_no_grad_and_inference_mode(digits_model, digits_batch, grad_mode):
    images, labels = digits_batch
    expected = QuboFeatureMapAttribution(digits_model, digits_model.reduce, sampler="exact").attribute(
        images, target=labels
    )
    with grad_mode():
        inputs, targets = images.clone(), labels.clone()  # inference tensors under inference_mode
        explained = QuboFeatureMapAttribution(digits_model, digits_model.reduce, sampler="exact").attribute(
            inputs, target=targets
        )
    torch.testing.assert_close(explained, expected)
    assert no_hooks(digits_model)


# --- bad input -------------------------------------------------------------------------------------


def test_layer_output_not_4d_is_named(digits_model, digits_batch):
    images, labels = digits_batch
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*layer 'head' \(Linear\) gives output shape\(s\) \[\(4, 10\)\]"):
        QuboFeatureMapAttribution(digits_model, digits_model.head).attribute(images, target=labels)


def test_k_larger_than_the_number_of_maps(digits_model, digits_batch):
    images, labels = digits_batch
    explainer = QuboFeatureMapAttribution(digits_model, digits_model.reduce, formulation="k_hot", k=17)
    with pytest.raises(ValueError, match="only 16 feature maps; choose k <= 16"):
        explainer.attribute(images, target=labels)
    alpha, _ = independent_alpha_and_maps(digits_model, images, labels)
    assert (alpha[0] > 0).sum() < 16  # precondition of the second case
    explainer = QuboFeatureMapAttribution(digits_model, digits_model.reduce, formulation="k_hot", k=16)
    with pytest.raises(ValueError, match="sample 0 .*positive importance"):
        explainer.attribute(images, target=labels)  # fewer than 16 maps have α > 0


class NegativeEvidence(torch.nn.Module):
    """A real conv net whose single output falls with every activation: every α < 0."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.relu = torch.nn.ReLU()

    def forward(self, x):
        return -self.relu(self.conv(x)).mean(dim=(1, 2, 3))[:, None]


def test_no_positive_map_gives_zero_map_and_warning(digits_batch):
    images, _ = digits_batch
    model = NegativeEvidence()
    explainer = QuboFeatureMapAttribution(model, model.relu, sampler="exact")
    with pytest.warns(RuntimeWarning, match="no feature map has positive importance"):
        attribution = explainer.attribute(images, target=0)
    assert attribution.shape == (4, 1, 8, 8) and not attribution.any()
    assert all(s.num_selected == 0 and s.num_variables == 0 for s in explainer.last_selections)
    assert not explainer.last_channel_weights.any()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs_are_rejected(digits_model, digits_batch, bad):
    images, labels = digits_batch
    images = images.clone()
    images[1, 0, 3, 3] = bad
    with pytest.raises(ValueError, match=r"NaN or inf \(samples \[1\]\)"):
        QuboFeatureMapAttribution(digits_model, digits_model.reduce).attribute(images, target=labels)


@pytest.mark.parametrize(
    "target, message",
    [(10, r"target 10 is out of range.*0\.\.9"), (-1, "out of range"), ([1, 2], "one entry per sample"),
     (None, "pass target=")],
)
def test_bad_targets(digits_model, digits_batch, target, message):
    images, _ = digits_batch
    with pytest.raises(ValueError, match=message):
        QuboFeatureMapAttribution(digits_model, digits_model.reduce).attribute(images, target=target)
    assert no_hooks(digits_model)


def test_unknown_sampler_fails_before_any_forward_pass(digits_model, digits_batch):
    images, labels = digits_batch
    calls = []

    def counting_model(x):
        calls.append(1)
        return digits_model(x)

    with pytest.raises(SamplerConfigurationError, match="Available"):
        QuboFeatureMapAttribution(counting_model, digits_model.reduce, sampler="annealer-9000").attribute(
            images, target=labels
        )
    assert not calls


@pytest.mark.parametrize(
    "kwargs, message",
    [({"formulation": "k_hot"}, "needs a positive integer k"), ({"k": 3}, "only used by formulation='k_hot'"),
     ({"beta": 1.5}, r"beta must lie in \[0, 1\]"), ({"formulation": "sparse"}, "formulation must be one of")],
)
def test_bad_options_fail_at_construction(digits_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        QuboFeatureMapAttribution(digits_model, digits_model.reduce, **kwargs)


def test_seed_in_sampler_kwargs_takes_precedence(digits_model, digits_batch):
    images, labels = digits_batch
    via_kwargs = QuboFeatureMapAttribution(
        digits_model, digits_model.reduce, sampler="sa", seed=0, sampler_kwargs={"seed": 7}
    )
    via_seed = QuboFeatureMapAttribution(digits_model, digits_model.reduce, sampler="sa", seed=7)
    via_kwargs.attribute(images, target=labels)
    via_seed.attribute(images, target=labels)
    assert via_kwargs.seed == 7
    for a, b in zip(via_kwargs.last_selections, via_seed.last_selections):
        np.testing.assert_array_equal(a.channels, b.channels)
