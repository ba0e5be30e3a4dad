"""Sufficiency / comprehensiveness on a hand-built model where every probability is analytic."""
import numpy as np
import pytest
import torch
from torch import nn

from captum_qubo.metrics import (
    Comprehensiveness,
    Sufficiency,
    reference_map_means,
    selection_curve,
    selection_probabilities,
)

W = np.array([[2.0, -1.0, 0.5, 1.5], [-0.5, 1.0, 1.0, -2.0], [0.0, 0.3, -0.7, 0.2]])
B = np.array([0.1, -0.2, 0.3])


class PoolHead(nn.Module):
    """Identity "layer" (the inputs are the maps) → global average pool → linear(W, B)."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Identity()
        self.head = nn.Linear(4, 3).double()
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor(W))
            self.head.bias.copy_(torch.tensor(B))

    def forward(self, x):
        return self.head(self.layer(x).mean(dim=(2, 3)))


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _analytic(maps, keep, removal, target):
    """p_c with map k's mean replaced by its removal value where ``keep`` is False."""
    means = np.where(keep, maps.mean(axis=(1, 2)), removal)
    return _softmax(W @ means + B)[target]


X = torch.rand((3, 4, 3, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
SELECTED = torch.tensor([[True, False, False, True], [False, True, True, False], [True, True, True, True]])
TARGETS = [0, 1, 2]


@pytest.mark.parametrize("removal_kind", ["zero", "mean"])
def test_probabilities_and_metrics_match_the_analytic_softmax(removal_kind):
    model = PoolHead()
    reference = torch.rand((5, 4, 3, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    removal = "zero" if removal_kind == "zero" else reference_map_means(model, model.layer, reference)
    values = np.zeros(4) if removal_kind == "zero" else reference.mean(dim=(0, 2, 3)).numpy()
    base, kept, removed = selection_probabilities(model, model.layer, X, SELECTED, TARGETS, removal)
    maps, selected = X.numpy(), SELECTED.numpy()
    all_on = np.ones(4, dtype=bool)
    expect_base = [_analytic(maps[i], all_on, values, t) for i, t in enumerate(TARGETS)]
    expect_kept = [_analytic(maps[i], selected[i], values, t) for i, t in enumerate(TARGETS)]
    expect_removed = [_analytic(maps[i], ~selected[i], values, t) for i, t in enumerate(TARGETS)]
    np.testing.assert_allclose(base.numpy(), expect_base, rtol=1e-10)
    np.testing.assert_allclose(kept.numpy(), expect_kept, rtol=1e-10)
    np.testing.assert_allclose(removed.numpy(), expect_removed, rtol=1e-10)
    assert kept[2] == pytest.approx(base[2].item())  # everything kept: sufficiency = p_c(x)

    sufficiency, comprehensiveness = Sufficiency(), Comprehensiveness()
    sufficiency.update(kept[:2])
    sufficiency.update(kept[2:])
    comprehensiveness.update(base, removed)
    assert sufficiency.compute().item() == pytest.approx(np.mean(expect_kept), rel=1e-10)
    assert comprehensiveness.compute().item() == pytest.approx(
        np.mean(np.array(expect_base) - expect_removed), rel=1e-10)


def test_curve_over_k_follows_the_ranking():
    model = PoolHead()
    weights = torch.tensor([[4.0, 3.0, 2.0, 1.0]]).expand(3, 4)  # top-K = the first K maps
    curve = selection_curve(model, model.layer, X, weights, TARGETS, ks=[0, 2, 4])
    maps = X.numpy()
    for row, k in enumerate([0, 2, 4]):
        keep = np.arange(4) < k
        kept = [_analytic(maps[i], keep, np.zeros(4), t) for i, t in enumerate(TARGETS)]
        base = [_analytic(maps[i], np.ones(4, bool), np.zeros(4), t) for i, t in enumerate(TARGETS)]
        removed = [_analytic(maps[i], ~keep, np.zeros(4), t) for i, t in enumerate(TARGETS)]
        assert curve["sufficiency"][row].item() == pytest.approx(np.mean(kept), rel=1e-10)
        assert curve["comprehensiveness"][row].item() == pytest.approx(np.mean(np.subtract(base, removed)), rel=1e-10)
    assert curve["comprehensiveness"][0].item() == pytest.approx(0.0)


def test_bad_arguments_are_clear_errors():
    model = PoolHead()
    with pytest.raises(ValueError, match="removal must be"):
        selection_probabilities(model, model.layer, X, SELECTED, TARGETS, removal="blur")
    with pytest.raises(ValueError, match=r"removal values must be \(C,\)"):
        selection_probabilities(model, model.layer, X, SELECTED, TARGETS, removal=torch.zeros(3))
    with pytest.raises(ValueError, match="selected must be"):
        selection_probabilities(model, model.layer, X, SELECTED[:2], TARGETS)
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert torch.isnan(Sufficiency().compute())
