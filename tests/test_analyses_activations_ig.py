"""Activation collection through Captum against direct forward passes; Integrated Gradients' completeness."""
import pytest
import torch

from captum_qubo.analyses import collect_activations, integrated_gradients, resolve_layers


def test_pooled_and_spatial_activations_equal_the_layers_by_composition(digits_model, digits_data):
    _, _, x_test, _ = digits_data
    x = x_test[:37]
    collected = collect_activations(digits_model, ["features.1", "reduce"], x, batch_size=8)
    spatial = collect_activations(digits_model, {"head maps": digits_model.reduce}, x, batch_size=37, pooled=False)
    with torch.no_grad():
        first = digits_model.features[:2](x)
        reduce = digits_model.reduce(digits_model.features(x))
    torch.testing.assert_close(collected["features.1"], first.mean(dim=(2, 3)))
    torch.testing.assert_close(collected["reduce"], reduce.mean(dim=(2, 3)))
    torch.testing.assert_close(spatial["head maps"], reduce)
    assert list(collected) == ["features.1", "reduce"]


def test_modes_hooks_and_batches_are_left_as_they_were(digits_model, digits_data):
    _, _, x_test, _ = digits_data
    digits_model.reduce.train()
    try:
        batches = [(x_test[:10], None), (x_test[10:25], None)]
        from_batches = collect_activations(digits_model, ["reduce"], batches)["reduce"]
        assert digits_model.reduce.training and not digits_model.features.training
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in digits_model.modules())
    finally:
        digits_model.reduce.eval()
    torch.testing.assert_close(from_batches, collect_activations(digits_model, ["reduce"], x_test[:25])["reduce"])


def test_a_misspelt_layer_names_the_closest_layers(digits_model):
    with pytest.raises(ValueError, match=r"'reduc' not found.*Closest names: 'reduce'"):
        resolve_layers(digits_model, ["reduc"])
    with pytest.raises(ValueError, match="not a submodule"):
        resolve_layers(digits_model, [torch.nn.ReLU()])


def test_input_ig_is_complete_within_captums_delta_on_the_digits_cnn(digits_model, digits_data):
    _, _, x_test, y_test = digits_data
    x, target = x_test[:6], y_test[:6]
    for p in digits_model.parameters():
        p.grad = None
    result = integrated_gradients(digits_model, x, target, n_steps=128)
    with torch.no_grad():
        rows = torch.arange(6)
        difference = digits_model(x)[rows, target] - digits_model(torch.zeros_like(x))[rows, target]
    totals = result.attributions.flatten(1).sum(dim=1)
    torch.testing.assert_close(result.output_difference, difference)
    torch.testing.assert_close(totals - difference, result.delta, atol=1e-4, rtol=0)  # δ is what it says
    assert float(result.relative_delta.max()) < 0.01  # and the integral is resolved to 1 %
    assert all(p.grad is None for p in digits_model.parameters())


def test_layer_ig_on_efficientnet_head_is_complete(efficientnet, efficientnet_layer, chelsea):
    # The head feeds GAP → linear, so along the straight path IG is exact: δ at float32 rounding.
    result = integrated_gradients(efficientnet, chelsea, 285, layer=efficientnet_layer, n_steps=8)
    with torch.no_grad():
        difference = efficientnet(chelsea)[0, 285] - efficientnet(torch.zeros_like(chelsea))[0, 285]
    assert result.attributions.shape == (1, 1280, 7, 7)
    assert float(result.map_totals().sum()) == pytest.approx(float(difference), rel=1e-4)
    assert float(result.delta.abs().max()) < 1e-3
