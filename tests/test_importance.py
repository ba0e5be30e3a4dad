"""Importance options: the paper's α and the contribution α_k·Σ_ij f_k,ij, checked against the model's weights."""
import pytest
import torch
from torch import nn

from captum_qubo.attribution import QuboFeatureMapAttribution
from captum_qubo.attribution.options import QuboOptions
from captum_qubo.formulation.importance import map_importance


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
