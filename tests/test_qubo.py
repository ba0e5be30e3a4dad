"""The QUBO of METHOD.md §1 against an independent transcription of the formula, and its k-hot penalty.

Also home of :func:`real_layer_problems` (real α and feature maps from the zoo models), reused by
test_samplers.py until shared fixtures exist.
"""
import itertools
from functools import lru_cache

import dimod
import numpy as np
import pytest
import torch
from captum._utils.gradient import compute_layer_gradients_and_eval
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from captum_qubo.formulation.batched import build_batched_qubos
from captum_qubo.formulation.qubo import build_feature_map_qubo, k_hot_penalty

DIGIT_IMAGES_PER_PROBLEM_SET = 10
EFFICIENTNET_IMAGES = ("chelsea", "coffee")


# --- real layers ---------------------------------------------------------------------------------


def _layer_importance_and_maps(model, layer, images, targets):
    """Grad-CAM weights α (N, C) = mean of ∂z_c/∂f over H, W, and the maps (N, C, H, W), via Captum."""
    grads, maps = compute_layer_gradients_and_eval(model, layer, images, target_ind=targets)
    return grads[0].mean(dim=(2, 3)).detach().numpy(), maps[0].detach().numpy()


@lru_cache(maxsize=None)
def real_layer_problems():
    """(name, α (C,), maps (C, H, W)) for real predictions, computed once per process.

    Digits CNN (``reduce`` block, 16 maps of 8×8): the first test image of each digit, target its
    label. EfficientNet-Lite0 (head conv, 1280 maps of 7×7): skimage photos, target the top-1 class.
    """
    from captum_qubo.zoo import (
        efficientnet_target_layer,
        load_digits_split,
        load_efficientnet_lite0,
        load_sample_image,
        preprocess_image,
        train_digits_cnn,
    )

    problems = []
    with torch.random.fork_rng(devices=[]):
        digits = train_digits_cnn()
        _, _, x_test, y_test = load_digits_split()
        first_of_each = [int(np.flatnonzero(y_test.numpy() == c)[0]) for c in range(DIGIT_IMAGES_PER_PROBLEM_SET)]
        alpha, maps = _layer_importance_and_maps(digits, digits.reduce, x_test[first_of_each], y_test[first_of_each])
        problems += [(f"digits-{c}", alpha[c], maps[c]) for c in range(len(first_of_each))]

        effnet = load_efficientnet_lite0()
        images = torch.stack([preprocess_image(load_sample_image(name)) for name in EFFICIENTNET_IMAGES])
        with torch.no_grad():
            top1 = effnet(images).argmax(dim=1)
        alpha, maps = _layer_importance_and_maps(effnet, efficientnet_target_layer(effnet), images, top1)
        problems += [(f"efficientnet-{name}", alpha[i], maps[i]) for i, name in enumerate(EFFICIENTNET_IMAGES)]
    return tuple(problems)


def top_positive_maps(alpha, max_maps):
    """α with all but its ``max_maps`` largest positive entries set to 0, so the pre-filter keeps d ≤ max_maps.

    This caps d on EfficientNet (hundreds of positive maps) for brute-force ground truth.
    """
    capped = np.zeros_like(alpha)
    order = np.argsort(alpha)[::-1][:max_maps]
    order = order[alpha[order] > 0]
    capped[order] = alpha[order]
    return capped


# --- an independent transcription of METHOD.md §1 --------------------------------------------------


def direct_energy(alpha, maps, beta, state, k=None, penalty=0.0):
    """E(n) = (1−β)·½ Σ_{p,q} J_pq n_p n_q − β Σ_p h_p n_p (+ λ(Σn − K)²), written out term by term."""
    kept = [a for a in range(len(alpha)) if alpha[a] > 0]
    h = [alpha[a] / max(alpha[b] for b in kept) for a in kept]
    flat = [maps[a].ravel().astype(np.float64) for a in kept]
    energy = 0.0
    for p in range(len(kept)):
        energy -= beta * h[p] * state[p]
        for q in range(len(kept)):
            norm = np.linalg.norm(flat[p]) * np.linalg.norm(flat[q])
            j_pq = 0.0 if p == q or norm == 0 else abs(float(flat[p] @ flat[q])) / norm
            energy += (1 - beta) * 0.5 * j_pq * state[p] * state[q]
    if k is not None:
        energy += penalty * (sum(state) - k) ** 2
    return energy


def all_states(d):
    return np.array(list(itertools.product((0, 1), repeat=d)), dtype=np.int8)


def minimisers(energies, atol=1e-12):
    """Indices of the minimal energies; atol only absorbs float64 rounding (energies are O(1–10))."""
    return np.flatnonzero(energies <= energies.min() + atol)


_small_problem = st.integers(1, 7).flatmap(
    lambda channels: st.tuples(
        hnp.arrays(np.float64, channels, elements=st.floats(-2, 2, allow_subnormal=False)),
        # Map values are 0 or at least 1e-30 in magnitude, as float32 activations are (their smallest normal is
        # ~1.2e-38): below ~1e-154 the squares in |cos| underflow to subnormals, and no two float64 formulas agree.
        hnp.arrays(np.float64, (channels, 2, 3), elements=st.one_of(
            st.just(0.0), st.floats(1e-30, 3), st.floats(-3, -1e-30))),
        st.floats(0, 1),
    )
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=_small_problem, data=st.data())
def test_bqm_energy_matches_the_direct_formula(problem, data):
    alpha, maps, beta = problem
    qubo = build_feature_map_qubo(alpha, maps, beta=beta)
    d = qubo.num_variables
    assert d == int(np.sum(alpha > 0))
    states = data.draw(hnp.arrays(np.int8, (5, d), elements=st.integers(0, 1)))
    bqm = qubo.to_bqm()
    for state in states:
        expected = direct_energy(alpha, maps, beta, state)
        assert bqm.energy(dict(enumerate(state))) == pytest.approx(expected, abs=1e-9)
        assert qubo.energies(state) == pytest.approx(expected, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(problem=_small_problem, data=st.data())
def test_k_hot_energy_matches_the_direct_formula_with_penalty(problem, data):
    alpha, maps, beta = problem
    d = int(np.sum(alpha > 0))
    if d == 0:
        return
    k = data.draw(st.integers(1, d))
    qubo = build_feature_map_qubo(alpha, maps, beta=beta, formulation="k_hot", k=k)
    assert qubo.penalty > 0
    bqm = qubo.to_bqm()
    for state in data.draw(hnp.arrays(np.int8, (5, d), elements=st.integers(0, 1))):
        expected = direct_energy(alpha, maps, beta, state, k=k, penalty=qubo.penalty)
        assert bqm.energy(dict(enumerate(state))) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("formulation, k", [("unconstrained", None), ("k_hot", 2)])
def test_to_bqm_energies_equal_batched_energies_on_every_state(formulation, k):
    rng = np.random.default_rng(0)
    for d in (1, 5, 10):
        qubo = build_feature_map_qubo(rng.random(d) + 0.01, rng.normal(size=(d, 4, 4)), formulation=formulation,
                                      k=min(k, d) if k else None)
        states = all_states(d)
        bqm_energies = qubo.to_bqm().energies((states, range(d)))
        np.testing.assert_allclose(bqm_energies, qubo.energies(states), rtol=0, atol=1e-12)


@pytest.mark.parametrize("formulation, k", [("unconstrained", None), ("k_hot", 3)])
def test_selection_energies_are_each_samples_qubo_energy_whatever_the_batch(monkeypatch, formulation, k):
    """Against the per-sample QUBO's direct energy; bit for bit the same alone, in another batch order, and when the
    selected blocks are gathered in small chunks."""
    from captum_qubo.solvers import batch as solver_batch

    rng = np.random.default_rng(3)
    channels = 30
    alpha = torch.as_tensor(rng.normal(size=(6, channels)) + 0.4)
    maps = torch.as_tensor(np.abs(rng.normal(size=(6, channels, 4, 4))))
    qubos = build_batched_qubos(alpha, maps, 0.8, formulation, k)
    states = torch.zeros(qubos.mask.shape, dtype=torch.bool)
    for i, d in enumerate(qubos.num_variables.tolist()):
        chosen = rng.permutation(d)[: k if k else int(rng.integers(0, d + 1))]
        states[i, chosen] = True
    energies = solver_batch.selection_energies(qubos, states)
    for i in range(6):
        problem = build_feature_map_qubo(alpha[i].numpy(), maps[i].numpy(), 0.8, formulation, k)
        state = states[i, : problem.num_variables].numpy()
        assert energies[i] == pytest.approx(float(problem.energies(state)), abs=1e-12)
        alone = build_batched_qubos(alpha[i:i + 1], maps[i:i + 1], 0.8, formulation, k)
        assert solver_batch.selection_energies(alone, states[i:i + 1, : problem.num_variables])[0] == energies[i]
    order = [4, 1, 5, 0, 3, 2]
    shuffled = build_batched_qubos(alpha[order], maps[order], 0.8, formulation, k)
    assert np.array_equal(solver_batch.selection_energies(shuffled, states[order]), energies[order])
    monkeypatch.setattr(solver_batch, "ENERGY_BLOCK_ENTRIES", 10)  # one problem per chunk
    assert np.array_equal(solver_batch.selection_energies(qubos, states), energies)


def test_a_coupling_buffer_is_filled_only_when_it_fits():
    rng = np.random.default_rng(4)
    alpha = torch.as_tensor(rng.normal(size=(5, 12)) + 0.3)
    maps = torch.as_tensor(np.abs(rng.normal(size=(5, 12, 3, 3))))
    fresh = build_batched_qubos(alpha, maps)
    needed = fresh.J.numel()
    buffer = torch.full((needed + 7,), float("nan"), dtype=torch.float64)  # stale contents must not leak through
    reused = build_batched_qubos(alpha, maps, coupling_buffer=buffer)
    assert reused.J.data_ptr() == buffer.data_ptr() and torch.equal(reused.J, fresh.J)
    for unusable in (torch.zeros(needed - 1, dtype=torch.float64), torch.zeros(needed, dtype=torch.float32),
                     torch.zeros(2 * needed, dtype=torch.float64)[::2]):
        other = build_batched_qubos(alpha, maps, coupling_buffer=unusable)
        assert other.J.data_ptr() != unusable.data_ptr() and torch.equal(other.J, fresh.J)


def test_qubo_fields_follow_the_method():
    rng = np.random.default_rng(1)
    alpha = np.array([0.5, -1.0, 2.0, 0.0, 1.0])
    maps = np.abs(rng.normal(size=(5, 3, 3)))
    qubo = build_feature_map_qubo(alpha, maps)
    np.testing.assert_array_equal(qubo.kept, [0, 2, 4])  # α > 0 only
    np.testing.assert_allclose(qubo.h, [0.25, 1.0, 0.5])
    assert np.allclose(qubo.J, qubo.J.T) and np.all(np.diag(qubo.J) == 0)
    np.testing.assert_array_equal(qubo.selected_channels(np.array([1, 0, 1])), [0, 4])


def _brute_force_k_hot_check(h, J, beta, k, penalty):
    """Indices of non-K-hot minimisers of E + λ(Σn − K)², by the direct formula over all states."""
    states = all_states(len(h)).astype(np.float64)
    energies = (1 - beta) * 0.5 * np.einsum("sp,pq,sq->s", states, J, states) - beta * states @ h
    energies += penalty * (states.sum(axis=1) - k) ** 2
    best = minimisers(energies)
    return best[states[best].sum(axis=1) != k]


def _random_h_j(rng, d):
    """Adversarial-ish instances: sparse and near-1 redundancies, spread-out rewards."""
    J = np.triu(rng.random((d, d)) ** rng.choice([0.2, 1.0, 5.0]), 1)
    J = J + J.T
    h = rng.random(d) ** rng.choice([0.3, 1.0, 4.0])
    return h / h.max(), J


def test_k_hot_penalty_makes_every_minimiser_k_hot_on_random_instances():
    rng = np.random.default_rng(2024)
    for _ in range(300):
        d = int(rng.integers(1, 11))
        h, J = _random_h_j(rng, d)
        beta = float(rng.choice([0.0, 0.3, 0.5, 0.7, 1.0, rng.random()]))
        k = int(rng.integers(1, d + 1))
        assert _brute_force_k_hot_check(h, J, beta, k, k_hot_penalty(h, J, beta)).size == 0


def test_brute_force_check_detects_a_too_small_penalty():
    """Sanity of the check above: without enough penalty some minimiser is not K-hot."""
    rng = np.random.default_rng(2024)
    violations = 0
    for _ in range(100):
        d = int(rng.integers(3, 9))
        h, J = _random_h_j(rng, d)
        violations += _brute_force_k_hot_check(h, J, 0.7, 1, 0.05 * k_hot_penalty(h, J, 0.7)).size > 0
    assert violations > 0


@pytest.mark.parametrize("max_maps", [8, 14])
def test_k_hot_minimisers_are_k_hot_on_real_layers(max_maps):
    for name, alpha, maps in real_layer_problems():
        capped = top_positive_maps(alpha, max_maps)
        d = int(np.sum(capped > 0))
        for k in sorted({1, 2, 3, d // 2, d - 1, d} & set(range(1, d + 1))):
            qubo = build_feature_map_qubo(capped, maps, formulation="k_hot", k=k)
            energies = qubo.energies(all_states(d))
            best = minimisers(energies)
            assert np.all(all_states(d)[best].sum(axis=1) == k), f"{name}, d={d}, K={k}"


def test_real_layers_give_meaningful_problems():
    """Guards the real-instance tests above against a degenerate helper (e.g. all α ≤ 0)."""
    sizes = []
    for name, alpha, maps in real_layer_problems():
        assert np.all(np.isfinite(alpha)) and np.all(np.isfinite(maps)), name
        qubo = build_feature_map_qubo(top_positive_maps(alpha, 14), maps)
        assert qubo.num_variables >= 1 and np.all(qubo.J <= 1), name
        sizes.append(qubo.num_variables)
    assert max(sizes) == 14 and sum(size >= 5 for size in sizes) >= 5, sizes


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(formulation="k_hot", k=4), r"k=4 but only 3 maps.*1 <= k <= 3"),
        (dict(formulation="k_hot", k=0), r"k=0"),
        (dict(formulation="k_hot"), r"needs k"),
        (dict(k=2), r"only used by formulation='k_hot'"),
        (dict(formulation="exact_k"), r"formulation must be one of"),
        (dict(beta=1.5), r"beta must lie in \[0, 1\]"),
        (dict(beta=-0.1), r"beta must lie in \[0, 1\]"),
    ],
)
def test_bad_options_are_clear_errors(kwargs, message):
    alpha, maps = np.array([1.0, 0.5, 0.2, -1.0]), np.ones((4, 2, 2))
    with pytest.raises(ValueError, match=message):
        build_feature_map_qubo(alpha, maps, **kwargs)


@pytest.mark.parametrize(
    "alpha, maps, message",
    [
        (np.array([1.0, np.nan]), np.ones((2, 2, 2)), "finite"),
        (np.array([1.0, 2.0]), np.array([[[1.0, np.inf]], [[1.0, 1.0]]]), "finite"),
        (np.array([1.0, 2.0]), np.ones((2, 4)), r"\(C, H, W\)"),
        (np.array([1.0, 2.0, 3.0]), np.ones((2, 2, 2)), r"C = len\(importance\) = 3"),
    ],
)
def test_bad_arrays_are_clear_errors(alpha, maps, message):
    with pytest.raises(ValueError, match=message):
        build_feature_map_qubo(alpha, maps)


def test_wrong_state_width_and_penalty_margin_are_errors():
    qubo = build_feature_map_qubo(np.array([1.0, 0.5]), np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="3 variables but the QUBO has 2"):
        qubo.energies(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="margin must be > 0"):
        k_hot_penalty(np.ones(2), np.zeros((2, 2)), 0.7, margin=0.0)


def test_no_positive_importance_gives_an_empty_problem():
    qubo = build_feature_map_qubo(np.array([-1.0, 0.0]), np.ones((2, 3, 3)))
    assert qubo.num_variables == 0
    bqm = qubo.to_bqm()
    assert bqm.num_variables == 0 and bqm.vartype is dimod.BINARY


@pytest.mark.parametrize("signed", [False, True])
def test_batched_redundancy_equals_the_per_sample_builder_for_signed_and_non_negative_maps(signed):
    """The batched builder skips |·| for non-negative maps (their cosines cannot be negative); signed maps keep it.
    Either way J equals the per-sample float64 builder's, sample by sample."""
    rng = np.random.default_rng(31)
    maps = rng.normal(size=(3, 9, 4, 4))
    maps = maps if signed else np.maximum(maps, 0.0)
    alpha = np.abs(rng.normal(size=(3, 9))) + 0.05
    batched = build_batched_qubos(torch.tensor(alpha), torch.tensor(maps), 0.7)
    for i in range(3):
        single = build_feature_map_qubo(alpha[i], maps[i], 0.7)
        np.testing.assert_allclose(batched.J[i, :single.num_variables, :single.num_variables].numpy(), single.J,
                                   atol=1e-12)
        flat = maps[i].reshape(9, -1)
        cosines = (flat @ flat.T) / np.outer(np.linalg.norm(flat, axis=1), np.linalg.norm(flat, axis=1))
        assert bool((cosines < -1e-3).any()) == signed  # signed maps do exercise the |·|


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_batched_builder_equals_the_per_sample_builder_on_ragged_batches_with_zero_maps(memory_format):
    """Samples of different d, all below C (padding must stay zero, and each sample's maps must be read from its own
    rows), a kept map that is all zeros (similar to nothing), a negative value only in a map that is not kept, in
    contiguous and channels-last activations (as convolutions on a CPU often return them; read another way): J, h
    and the kept channels still equal the per-sample float64 builder's."""
    rng = np.random.default_rng(5)
    maps = np.maximum(rng.normal(size=(3, 8, 3, 3)), 0.0)
    alpha = np.abs(rng.normal(size=(3, 8))) + 0.05
    alpha[0, [1, 4, 6]] = -1.0  # sample 0 keeps 5 maps
    alpha[1, 7] = -1.0  # sample 1 keeps 7 ...
    maps[1, 2] = 0.0  # ... one of them all zeros
    maps[2, 3, 0, 0] = -0.5  # sample 2 has a signed map ...
    alpha[2, 3] = -0.2  # ... that is not kept
    tensor_maps = torch.tensor(maps).contiguous(memory_format=memory_format)
    assert tensor_maps.is_contiguous() == (memory_format == torch.contiguous_format)
    batched = build_batched_qubos(torch.tensor(alpha), tensor_maps, 0.7)
    assert batched.mask.sum(dim=1).tolist() == [5, 7, 7]
    for i in range(3):
        single = build_feature_map_qubo(alpha[i], maps[i], 0.7)
        d = single.num_variables
        np.testing.assert_array_equal(batched.kept[i, :d].numpy(), single.kept)
        np.testing.assert_allclose(batched.h[i, :d].numpy(), single.h, atol=1e-15)
        np.testing.assert_allclose(batched.J[i, :d, :d].numpy(), single.J, atol=1e-12)
        assert not batched.J[i, d:].any() and not batched.J[i, :, d:].any()
    assert not batched.J[1, 2].any()  # the zero map is coupled to nothing
