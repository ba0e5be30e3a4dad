"""The authors' three pair conventions (METHOD.md §8) against brute-force energies written out directly."""
import itertools

import numpy as np
import pytest
import torch

from captum_qubo.formulation.batched import build_batched_qubos
from captum_qubo.formulation.qubo import PAIR_CONVENTIONS, build_feature_map_qubo
from captum_qubo.solvers.batch import selection_energies


def _direct_energy(n, h, J, beta, convention):
    """E(n) transcribed from each convention's formula, pair by pair."""
    d = len(n)
    if convention == "half":  # (1−β) ½ Σ_{p≠q} J n n − β Σ h n
        pairs = 0.5 * sum(J[p, q] * n[p] * n[q] for p in range(d) for q in range(d) if p != q)
    elif convention == "full_zero_diagonal":  # Σ_{p,q} with J_pp = 0
        pairs = sum(J[p, q] * n[p] * n[q] for p in range(d) for q in range(d))
    else:  # Σ_{p,q} with J_pp = 1
        unit = J.copy()
        np.fill_diagonal(unit, 1.0)
        pairs = sum(unit[p, q] * n[p] * n[q] for p in range(d) for q in range(d))
    return (1 - beta) * pairs - beta * sum(h[p] * n[p] for p in range(d))


def _instance(seed, channels=7):
    rng = np.random.default_rng(seed)
    alpha = rng.normal(size=channels)
    alpha[:2] = np.abs(alpha[:2])  # at least two variables
    maps = rng.normal(size=(channels, 4, 4))
    return alpha, maps


STATES = lambda d: np.array(list(itertools.product([0, 1], repeat=d)), dtype=float)  # noqa: E731


@pytest.mark.parametrize("convention", PAIR_CONVENTIONS)
@pytest.mark.parametrize("beta", [0.3, 0.7])
def test_energies_match_the_direct_formula_per_sample_bqm_and_batched(convention, beta):
    alpha, maps = _instance(3)
    qubo = build_feature_map_qubo(alpha, maps, beta, pair_convention=convention)
    states = STATES(qubo.num_variables)
    direct = np.array([_direct_energy(n, qubo.h, qubo.J, beta, convention) for n in states])
    np.testing.assert_allclose(qubo.energies(states), direct, atol=1e-12)
    bqm = qubo.to_bqm()
    np.testing.assert_allclose([bqm.energy(dict(enumerate(n))) for n in states], direct, atol=1e-12)
    batched = build_batched_qubos(torch.tensor(alpha)[None], torch.tensor(maps)[None], beta, pair_convention=convention)
    tensor_states = torch.tensor(states)
    many = batched.energies(tensor_states)  # broadcasts one problem over all states
    np.testing.assert_allclose(many.numpy(), direct, atol=1e-12)
    best = tensor_states[[int(np.argmin(direct))]].bool()
    np.testing.assert_allclose(selection_energies(batched, best), [direct.min()], atol=1e-12)


def test_the_conventions_are_different_problems():
    alpha, maps = _instance(5)
    minimisers = set()
    for convention in PAIR_CONVENTIONS:
        qubo = build_feature_map_qubo(alpha, maps, 0.7, pair_convention=convention)
        states = STATES(qubo.num_variables)
        minimisers.add(tuple(states[np.argmin(qubo.energies(states))]))
    # the unit diagonal charges (1−β) per map: it never selects more maps than "half"
    assert len(minimisers) >= 2


@pytest.mark.parametrize("convention", PAIR_CONVENTIONS)
def test_k_hot_penalty_makes_every_minimiser_k_hot_under_each_convention(convention):
    for seed in range(20):
        alpha, maps = _instance(seed, channels=8)
        beta = [0.0, 0.2, 0.5, 0.9, 1.0][seed % 5]
        d = int((alpha > 0).sum())
        k = 1 + seed % d
        qubo = build_feature_map_qubo(alpha, maps, beta, "k_hot", k, pair_convention=convention)
        states = STATES(d)
        energies = qubo.energies(states)
        # the penalised energy, written directly: convention energy + λ(Σn − K)²
        direct = np.array([_direct_energy(n, qubo.h, qubo.J, beta, convention) for n in states])
        np.testing.assert_allclose(energies, direct + qubo.penalty * (states.sum(1) - k) ** 2, atol=1e-9)
        best = energies.min()
        assert np.all(states[np.isclose(energies, best, atol=1e-9)].sum(1) == k), (convention, seed)
        assert energies[states.sum(1) != k].min() > best + 1e-6


def test_unknown_convention_is_a_clear_error():
    alpha, maps = _instance(0)
    with pytest.raises(ValueError, match="pair_convention must be one of"):
        build_feature_map_qubo(alpha, maps, pair_convention="double")
    with pytest.raises(ValueError, match="pair_convention must be one of"):
        build_batched_qubos(torch.tensor(alpha)[None], torch.tensor(maps)[None], pair_convention="double")


@pytest.mark.parametrize("convention", ["full_zero_diagonal", "full_unit_diagonal"])
def test_explainer_solves_the_convention_it_is_given(convention):
    """dense-tabu on the batched problem and brute force on the per-sample one pick the same minimiser."""
    from captum_qubo.attribution import QuboFeatureMapAttribution
    from captum_qubo.zoo import load_digits_split, train_digits_cnn

    model = train_digits_cnn(16, seed=0)
    x, y = load_digits_split(0)[2][:6], load_digits_split(0)[3][:6]
    from captum_qubo.attribution.options import QuboOptions

    # The paper's formulation (β = 0.7, as the brute force below) with the convention changed.
    explainer = QuboFeatureMapAttribution(model, model.reduce,
                                          options=QuboOptions.preset("paper", pair_convention=convention))
    explainer.attribute(x, target=y)
    for selection in explainer.last_selections:
        qubo = selection.qubo
        assert qubo.pair_convention == convention
        states = STATES(qubo.num_variables)
        best = states[np.argmin([_direct_energy(n, qubo.h, qubo.J, 0.7, convention) for n in states])]
        assert sorted(qubo.selected_channels(best)) == sorted(selection.channels)
