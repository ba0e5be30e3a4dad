"""Importance options: the paper's α and the contribution α_k·Σ_ij f_k,ij, checked against the model's weights."""
import pytest
import torch
from torch import nn

from captum_qubo.attribution import QuboFeatureMapAttribution
from captum_qubo.attribution.options import QuboOptions
from captum_qubo.formulation.importance import map_importance
from test_attribution import assert_explaining_leaves_model_alone  # tests/ is on sys.path


class PooledLinear(nn.Module):
    """conv → ReLU (the explained layer) → global average pool → linear: the logit is linear in the maps' means."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3)))


def _images(seed=1, n=4):
    return torch.rand((n, 1, 5, 5), generator=torch.Generator().manual_seed(seed))


def test_contribution_is_each_maps_exact_logit_share_for_a_pooled_linear_head():
    model = PooledLinear().double()
    x, target = _images().double(), 2
    maps = model.conv(x)
    maps.retain_grad()
    model.head(maps.mean(dim=(2, 3)))[:, target].sum().backward()
    contribution = map_importance("contribution", maps.grad, maps.detach())
    # Independently: map k's term in z_c is w_ck · mean(f_k); the terms plus the bias give the logit.
    expected = model.head.weight[target][None, :] * maps.detach().mean(dim=(2, 3))
    torch.testing.assert_close(contribution, expected.detach())
    logits = model(x)[:, target].detach()
    torch.testing.assert_close(contribution.sum(dim=1) + model.head.bias[target].detach(), logits)
    # α is the same for every image here; the contribution is not.
    alpha = map_importance("gradient", maps.grad, maps.detach())
    torch.testing.assert_close(alpha, (model.head.weight[target] / 25.0).expand_as(alpha).detach())


def test_gradient_x_activation_is_the_exact_share_for_a_flatten_linear_head():
    torch.manual_seed(0)
    conv, head = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU()).double(), nn.Linear(3 * 25, 2).double()
    maps = conv(_images().double())
    maps.retain_grad()
    head(maps.flatten(1))[:, 1].sum().backward()
    share = map_importance("gradient_x_activation", maps.grad, maps.detach())
    weights = head.weight[1].detach().reshape(3, 5, 5)
    expected = (weights[None] * maps.detach()).sum(dim=(2, 3))  # map k's term Σ_ij W_1,kij f_kij of the logit
    torch.testing.assert_close(share, expected)


def test_pre_filter_applies_to_the_chosen_importance():
    """A map with positive weight but no activation is a variable for "gradient", not for "contribution"."""
    model = PooledLinear()
    with torch.no_grad():
        model.head.weight[0] = torch.tensor([1.0, 0.5, 0.2, -1.0, 0.3, 0.4])
        model.conv[0].weight[2] = 0.0
        model.conv[0].bias[2] = -1.0  # map 2 is all zeros after the ReLU
    x = _images(n=2)
    counts = {}
    for kind in ("gradient", "contribution"):
        explainer = QuboFeatureMapAttribution(model, model.conv, importance=kind, sampler="exact")
        explainer.attribute(x, target=0)
        qubo = explainer.last_selections[0].qubo
        counts[kind] = list(qubo.kept)
    assert counts["gradient"] == [0, 1, 2, 4, 5]
    assert 2 not in counts["contribution"] and 3 not in counts["contribution"]


def test_the_explanation_map_uses_alpha_whatever_the_qubo_rewards():
    model = PooledLinear()
    x = _images(n=3)
    explainer = QuboFeatureMapAttribution(model, model.conv, importance="contribution", sampler="exact")
    explainer.attribute(x, target=1)
    weights = explainer.last_channel_weights
    alpha = (model.head.weight[1] / 25.0).detach()
    for i, selection in enumerate(explainer.last_selections):
        assert len(selection.channels)
        torch.testing.assert_close(weights[i, selection.channels], alpha[selection.channels])


def test_bad_importance_is_a_clear_error():
    with pytest.raises(ValueError, match="importance must be one of"):
        QuboOptions(importance="saliency")
    with pytest.raises(ValueError, match="one shape"):
        map_importance("gradient", torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 4))


def test_paper_preset_is_the_papers_formulation():
    paper = QuboOptions.preset("paper")
    assert (paper.importance, paper.beta, paper.formulation, paper.k, paper.pair_convention) == (
        "gradient", 0.7, "unconstrained", None, "half")
    assert QuboOptions.preset("paper", sampler="exact").sampler == "exact"
    with pytest.raises(ValueError, match="unknown preset"):
        QuboOptions.preset("best")


# --- contrastive: contribution to the margin z_c − z_r over the runner-up class ------------------------------


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())


def _runner_up_by_hand(logits, targets):
    """The highest-scoring class other than the target, looping over classes (no masking trick)."""
    rivals = []
    for row, target in zip(logits.tolist(), targets):
        others = [(score, cls) for cls, score in enumerate(row) if cls != target]
        rivals.append(max(others)[1])
    return rivals


def test_contrastive_is_each_maps_exact_share_of_the_margin_for_a_pooled_linear_head():
    model = PooledLinear(seed=3).double()
    x = _images(n=6).double()
    targets = [0, 1, 2, 2, 1, 0]
    explainer = QuboFeatureMapAttribution(model, model.conv, importance="contrastive", sampler="exact")
    explainer.attribute(x, target=targets)
    with torch.no_grad():
        means = model.conv(x).mean(dim=(2, 3))  # (N, C) mean(f_k)
        logits = model(x)
    rivals = _runner_up_by_hand(logits, targets)
    weight = model.head.weight.detach()
    for i, selection in enumerate(explainer.last_selections):
        assert selection.runner_up == rivals[i]
        expected = (weight[targets[i]] - weight[rivals[i]]) * means[i]  # (w_c − w_r)·mean(f_k), by hand
        torch.testing.assert_close(torch.as_tensor(selection.importance), expected)
        margin = logits[i, targets[i]] - logits[i, rivals[i]]
        bias = model.head.bias[targets[i]] - model.head.bias[rivals[i]]
        torch.testing.assert_close(expected.sum() + bias.detach(), margin)  # the shares make up the margin


@pytest.mark.filterwarnings("ignore:.*no feature map has positive importance")  # the last class: all margins < 0
def test_the_runner_up_is_the_best_other_class_even_when_the_target_is_not_the_top_class():
    model = PooledLinear(seed=5)
    x = _images(seed=7, n=5)
    with torch.no_grad():
        logits = model(x)
    order = logits.argsort(dim=1, descending=True)
    for rank in range(3):  # explain the top class, the second, the last
        targets = order[:, rank]
        explainer = QuboFeatureMapAttribution(model, model.conv, importance="contrastive", sampler="exact")
        explainer.attribute(x, target=targets)
        got = [s.runner_up for s in explainer.last_selections]
        assert got == _runner_up_by_hand(logits, targets.tolist())
        # The top class is contrasted with the second; any other class with the top one.
        assert got == (order[:, 1] if rank == 0 else order[:, 0]).tolist()
        assert all("runner_up" in s.to_dict() for s in explainer.last_selections)


def test_contrastive_map_weights_are_the_margins_alpha():
    model = PooledLinear(seed=3)
    x = _images(n=3)
    explainer = QuboFeatureMapAttribution(model, model.conv, importance="contrastive", sampler="exact")
    explainer.attribute(x, target=1)
    weight = model.head.weight.detach()
    for i, selection in enumerate(explainer.last_selections):
        assert len(selection.channels)
        margin_alpha = (weight[1] - weight[selection.runner_up]) / 25.0
        torch.testing.assert_close(explainer.last_channel_weights[i, selection.channels],
                                   margin_alpha[selection.channels])
        assert torch.all(explainer.last_channel_weights[i, selection.channels] > 0)


def test_a_map_supporting_the_rival_more_is_pre_filtered_out():
    """Map 0 supports the target strongly but the runner-up more: positive for contribution, out for contrastive."""
    model = PooledLinear()
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[2.0, 0.5, 0.5, 0.5, 0.5, 0.5],
                                              [3.0, 0.1, 0.1, 0.1, 0.1, 0.1],
                                              [-5.0, -5.0, -5.0, -5.0, -5.0, -5.0]]))
        model.head.bias.copy_(torch.tensor([10.0, 0.0, 0.0]))
        model.conv[0].bias.fill_(0.5)  # every map active
    x = _images(n=1)
    kept = {}
    for kind in ("contribution", "contrastive"):
        explainer = QuboFeatureMapAttribution(model, model.conv, importance=kind, sampler="exact")
        explainer.attribute(x, target=0)
        kept[kind] = list(explainer.last_selections[0].qubo.kept)
    assert explainer.last_selections[0].runner_up == 1
    assert 0 in kept["contribution"] and 0 not in kept["contrastive"]
    assert kept["contrastive"] == [1, 2, 3, 4, 5]


class OneOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x).mean(dim=(1, 2, 3))[:, None]  # (N, 1): one score per example


class SpatialOutput(PooledLinear):
    def forward(self, x):
        return self.head(self.conv(x).permute(0, 2, 3, 1))  # (N, H, W, classes)


@pytest.mark.parametrize("model, target, error, message", [
    (OneOutput(), 0, ValueError, "at least two classes"),
    (SpatialOutput(), 0, ValueError, "at least two classes"),
    (PooledLinear(), None, ValueError, "needs the class to explain"),
    (PooledLinear(), (1,), ValueError, "index tuple"),
    (PooledLinear(), 3, ValueError, "out of range"),
    (PooledLinear(), [0, 1], ValueError, "one entry per sample"),
    (PooledLinear(), torch.tensor([0.0, 1.0, 2.0]), TypeError, "integer class indices"),
])
def test_contrastive_misuse_is_a_clear_error_and_leaves_no_hooks(model, target, error, message):
    explainer = QuboFeatureMapAttribution(model, model.conv, importance="contrastive", sampler="exact")
    with pytest.raises(error, match=message):
        explainer.attribute(_images(n=3), target=target)
    assert _no_hooks(model)
    assert explainer.last_selections == []


@pytest.mark.parametrize("training", [False, True])
def test_contrastive_keeps_mode_and_parameter_grads(training):
    model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Dropout(0.0),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)).train(training)
    assert_explaining_leaves_model_alone(model, lambda: QuboFeatureMapAttribution(
        model, model[2], importance="contrastive", sampler="exact").attribute(_images(n=4), target=[0, 1, 2, 0]))
    assert _no_hooks(model)


def test_margin_pass_directly_checks_the_target_length_and_returns_the_runner_up():
    from captum_qubo.attribution.layer_evaluation import layer_margin_gradients_and_activations

    model = PooledLinear(seed=2)
    x = _images(n=3)
    with pytest.raises(ValueError, match="length 2"):
        layer_margin_gradients_and_activations(model, model.conv, x, [0, 1], None, None, False)
    assert _no_hooks(model)
    gradients, activations, runner_up = layer_margin_gradients_and_activations(
        model, model.conv, x, torch.tensor([2, 2, 2]), None, None, False)
    with torch.no_grad():
        logits = model(x)
    assert runner_up.tolist() == _runner_up_by_hand(logits, [2, 2, 2])
    expected = (model.head.weight[2] - model.head.weight[runner_up]).detach() / 25.0  # (N, C) ∂margin/∂f, constant
    torch.testing.assert_close(gradients, expected[:, :, None, None].expand_as(gradients))
    torch.testing.assert_close(activations, model.conv(x).detach())
