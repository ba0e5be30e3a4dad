"""The batched dense tabu search against brute force, on random and real feature-map QUBOs.

Expectations come from exhaustive enumeration (``captum_qubo.solvers.exact.ground_states``, itself checked
against ``dimod.ExactSolver`` in test_exact.py), from dimod's sampler API checks, and from best-known energies that
dwave-samplers' annealing and tabu search found (tests/data/head_qubo_best_known.json).
"""
from __future__ import annotations

import itertools

import dimod
import dimod.testing
import numpy as np
import pytest
import torch

from captum_qubo.formulation.batched import build_batched_qubos
from captum_qubo.formulation.qubo import build_feature_map_qubo
from captum_qubo.solvers import get_sampler
from captum_qubo.solvers.dense_sampler import DenseTabuSampler
from captum_qubo.solvers.dense_tabu import DEFAULT_CAPACITY, dense_tabu_search
from captum_qubo.solvers.exact import ground_states


def random_feature_map_problem(rng: np.random.Generator, d: int):
    """Importance and maps whose positive-α part has d maps: sparse, non-negative maps like ReLU outputs."""
    channels = d + int(rng.integers(0, 4))
    alpha = -np.abs(rng.normal(size=channels))
    alpha[rng.permutation(channels)[:d]] = np.abs(rng.normal(size=d)) + 1e-3
    maps = np.abs(rng.normal(size=(channels, 5, 5))) * (rng.random((channels, 5, 5)) < rng.uniform(0.2, 0.9))
    return alpha, maps


# The tabu search alone (both implementations), and the default: enumeration up to 16 variables, tabu above.
SOLVERS = [("compiled", 0), ("torch", 0), ("compiled", None)]


@pytest.mark.parametrize("backend, exhaustive", SOLVERS, ids=["compiled-tabu", "torch-tabu", "default"])
@pytest.mark.parametrize("seed", range(4))
def test_equals_brute_force_on_random_feature_map_qubos(seed, backend, exhaustive):
    """40 QUBOs per seed, each unconstrained and k_hot (≥ 300 instances in all): d = 2–16 plus one of d = 17–20, in
    padded batches (a problem's result does not depend on its batch: tested below)."""
    rng = np.random.default_rng(seed)
    instances = []
    for index in range(40):
        d = int(rng.integers(2, 17)) if index else 17 + seed
        alpha, maps = random_feature_map_problem(rng, d)
        instances.append((alpha, maps, float(rng.choice([0.5, 0.7, 0.9])), int(rng.choice([1, 2, 3, 5]))))
    groups = {("unconstrained", None): list(range(40))}
    for index, (_, maps, _, k) in enumerate(instances):
        groups.setdefault(("k_hot", k), []).append(index)
    checked = 0
    for (formulation, k), members in groups.items():
        problems = [build_feature_map_qubo(*instances[i][:3], formulation, k) for i in members
                    if k is None or (instances[i][0] > 0).sum() >= k]
        states = dense_tabu_search(*_padded_batch(problems), k=k, backend=backend,
                                   exhaustive_max_variables=exhaustive).states.numpy()
        for problem, state in zip(problems, states):
            _, optimum = ground_states(problem.linear, problem.quadratic, problem.offset)
            state = state[: problem.num_variables]
            assert problem.energies(state) == pytest.approx(optimum, abs=1e-9), (problem.num_variables, formulation, k)
            if k is not None:
                assert state.sum() == k
            checked += 1
    assert checked >= 75  # ≥ 300 over the 4 seeds (an instance with d < K is skipped for k_hot)


def test_equals_brute_force_on_real_digits_qubos(digits_model, digits_data):
    from captum_qubo.attribution.layer_evaluation import layer_gradients_and_activations

    _, _, images, labels = digits_data
    gradients, maps = layer_gradients_and_activations(
        digits_model, digits_model.reduce, images[:40], labels[:40], None, None, False
    )
    alpha = gradients.mean(dim=(2, 3))
    for (formulation, k), exhaustive in itertools.product(
            (("unconstrained", None), ("k_hot", 2), ("k_hot", 3)), (0, None)):
        usable = ((alpha > 0).sum(dim=1) >= (k or 1)).nonzero().flatten()
        batch = build_batched_qubos(alpha[usable], maps[usable], 0.7, formulation, k)
        result = dense_tabu_search(batch.linear, batch.quadratic, batch.mask, k=k, exhaustive_max_variables=exhaustive)
        assert len(usable) >= 30
        for row, index in enumerate(usable.tolist()):
            problem = build_feature_map_qubo(alpha[index].double().numpy(), maps[index].double().numpy(), 0.7,
                                             formulation, k)
            _, optimum = ground_states(problem.linear, problem.quadratic, problem.offset)
            state = result.states[row, : problem.num_variables].numpy()
            assert problem.energies(state) == pytest.approx(optimum, abs=1e-9)


def _padded_batch(problems):
    width = max(p.num_variables for p in problems)
    linear = torch.zeros(len(problems), width, dtype=torch.float64)
    quadratic = torch.zeros(len(problems), width, width, dtype=torch.float64)
    mask = torch.zeros(len(problems), width, dtype=torch.bool)
    for i, p in enumerate(problems):
        d = p.num_variables
        linear[i, :d] = torch.tensor(-p.beta * p.h)
        quadratic[i, :d, :d] = torch.tensor((1 - p.beta) * p.J)
        mask[i, :d] = True
    return linear, quadratic, mask


@pytest.mark.parametrize("k", [None, 3])
def test_a_problem_solves_the_same_alone_and_anywhere_in_a_batch(k):
    rng = np.random.default_rng(7)
    problems = [build_feature_map_qubo(*random_feature_map_problem(rng, int(d)), 0.7) for d in (40, 12, 70, 25, 55)]
    alone = [dense_tabu_search(*_padded_batch([p]), k=k, seed=3) for p in problems]
    for order in ([0, 1, 2, 3, 4], [4, 2, 0, 3, 1]):
        together = dense_tabu_search(*_padded_batch([problems[i] for i in order]), k=k, seed=3)
        for row, i in enumerate(order):
            d = problems[i].num_variables
            assert torch.equal(together.states[row, :d], alone[i].states[0, :d])
            assert not together.states[row, d:].any()  # padding is never selected
            assert torch.equal(together.start_energies[row], alone[i].start_energies[0])


def test_seeded_runs_are_identical_and_seeds_matter_for_the_starts():
    rng = np.random.default_rng(11)
    linear, quadratic, mask = _padded_batch(
        [build_feature_map_qubo(*random_feature_map_problem(rng, 60), 0.7) for _ in range(3)]
    )
    first = dense_tabu_search(linear, quadratic, mask, seed=5)
    second = dense_tabu_search(linear, quadratic, mask, seed=5)
    assert torch.equal(first.start_states, second.start_states)
    assert torch.equal(first.start_energies, second.start_energies)
    # With no steps, each start's best state is where it began: random starts follow the seed.
    initial = [dense_tabu_search(linear, quadratic, mask, seed=s, max_iterations=0).start_states for s in (5, 5, 6)]
    assert torch.equal(initial[0], initial[1]) and not torch.equal(initial[0], initial[2])


@pytest.mark.parametrize("k", [None, 1, 3, 6])
def test_compiled_and_torch_searches_make_the_same_moves(k):
    """The two implementations of one search (compiled loops on CPU, batched torch ops for GPUs) agree bit for bit:
    every start's best state and energy, in padded batches with holes in the masks, including unconstrained optima
    that outgrow the default slots (β = 0.97) and so take the doubled-capacity re-solve."""
    rng = np.random.default_rng(21 if k is None else k)
    problems = [build_feature_map_qubo(*random_feature_map_problem(rng, int(d)), beta, "unconstrained")
                for d, beta in ((30, 0.5), (80, 0.7), (9, 0.9), (120, 0.97), (60, 0.97), (45, 0.7))]
    linear, quadratic, mask = _padded_batch(problems)
    mask[1, 3] = mask[4, 10] = False  # a hole: that variable is not real
    results = [dense_tabu_search(linear, quadratic, mask, k=k, seed=4, backend=b, exhaustive_max_variables=0)
               for b in ("compiled", "torch")]
    assert torch.equal(results[0].start_states, results[1].start_states)
    assert torch.equal(results[0].start_energies, results[1].start_energies)
    assert not results[0].start_states[~mask[:, None, :].expand_as(results[0].start_states)].any()
    if k is None:
        assert int(results[0].states.sum(dim=1).max()) > DEFAULT_CAPACITY  # the re-solve was exercised


@pytest.mark.parametrize("k", [None, 4])
def test_compiled_search_prunes_only_what_cannot_win(k):
    """The compiled swap scan skips maps by a bound that holds only without negative couplings. Against the torch
    search (which scans everything): couplings of mixed sign, a negative scale, and non-negative couplings but
    for one map's row — the scan must stop pruning once that map enters — all make the same moves, bit for bit."""
    rng = np.random.default_rng(31 if k is None else k)
    d = 70
    signed = rng.normal(size=(d, d)) * 0.3
    signed = np.triu(signed, 1) + np.triu(signed, 1).T
    one_negative_row = np.abs(signed).copy()
    one_negative_row[5, 6:40] = one_negative_row[6:40, 5] = -0.4
    linear = torch.as_tensor(rng.normal(size=(3, d)) - 0.6)
    linear[2, 5] = -3.0  # the map with the negative row is among the first to enter
    quadratic = torch.as_tensor(np.stack([signed, np.abs(signed), one_negative_row]))
    for scale in (1.0, -0.5):
        results = [dense_tabu_search(linear, quadratic, k=k, seed=2, backend=backend, quadratic_scale=scale,
                                     exhaustive_max_variables=0) for backend in ("compiled", "torch")]
        assert torch.equal(results[0].start_states, results[1].start_states)
        assert torch.equal(results[0].start_energies, results[1].start_energies)


@pytest.mark.parametrize("k", [None, 3])
def test_compiled_ordered_scan_breaks_ties_as_a_full_scan(k):
    """Integer-valued problems tie everywhere; a spiky linear profile (a few strongly negative terms) keeps the
    ordered, pruned scan on for the whole search. Ties must still go to the lowest index, as in the torch search."""
    rng = np.random.default_rng(40 if k is None else k)
    d, batch = 50, 4
    linear = torch.full((batch, d), 3.0, dtype=torch.float64)
    for i in range(batch):
        linear[i, rng.permutation(d)[:10]] = torch.as_tensor(rng.integers(-3, 0, size=10), dtype=torch.float64)
    couplings = (rng.random((batch, d, d)) < 0.3).astype(float)
    couplings = np.triu(couplings, 1) + np.transpose(np.triu(couplings, 1), (0, 2, 1))
    quadratic = torch.as_tensor(couplings)
    results = [dense_tabu_search(linear, quadratic, k=k, num_starts=12, seed=5, backend=backend,
                                 exhaustive_max_variables=0) for backend in ("compiled", "torch")]
    assert torch.equal(results[0].start_states, results[1].start_states)
    assert torch.equal(results[0].start_energies, results[1].start_energies)


@pytest.mark.parametrize("k, seed", [(None, 11), (None, 150), (3, 3)])
def test_compiled_index_order_scan_breaks_ties_as_a_full_scan(k, seed):
    """Integer-valued couplings of mixed sign switch pruning off, so every swap scan is the vectorised one, which
    looks up the entering map only for the step's winning move. Ties everywhere, and aspiration letting tabu maps
    back in (by swaps and, unconstrained, by additions), must still go to the lowest index, as in the torch search."""
    rng = np.random.default_rng(seed)
    d, batch = 40, 4
    linear = torch.as_tensor(rng.integers(-4, 2, size=(batch, d)), dtype=torch.float64)
    couplings = rng.integers(-1, 3, size=(batch, d, d)).astype(float)
    couplings = np.triu(couplings, 1) + np.transpose(np.triu(couplings, 1), (0, 2, 1))
    quadratic = torch.as_tensor(couplings)
    results = [dense_tabu_search(linear, quadratic, k=k, num_starts=12, seed=3, tenure=6, backend=backend,
                                 exhaustive_max_variables=0) for backend in ("compiled", "torch")]
    assert torch.equal(results[0].start_states, results[1].start_states)
    assert torch.equal(results[0].start_energies, results[1].start_energies)


@pytest.mark.parametrize("count", [0, 1, 5, 9, 12])
def test_start_order_kernel_takes_the_smallest_keys_in_order(count):
    """The compiled start order equals a stable argsort's first ``count`` (ties by index), with padding keys +inf
    and rows shorter than ``count``."""
    from captum_qubo.solvers.dense_tabu_kernel import smallest_keys_kernel

    rng = np.random.default_rng(count)
    keys = rng.integers(0, 6, size=(3, 4, 12)).astype(float)  # many ties
    keys[1, :, 7:] = np.inf
    keys[2] = rng.random((4, 12))
    order = smallest_keys_kernel(keys, count)
    assert order.shape == (3, 4, count)
    np.testing.assert_array_equal(order, np.argsort(keys, axis=2, kind="stable")[:, :, :count])


def test_without_numba_auto_falls_back_to_the_same_torch_search(monkeypatch):
    """Without numba every problem, small ones included (no enumeration then), takes the torch tabu search."""
    from captum_qubo.solvers import dense_tabu

    rng = np.random.default_rng(5)
    linear, quadratic, mask = _padded_batch(
        [build_feature_map_qubo(*random_feature_map_problem(rng, d), 0.7) for d in (30, 8)])
    compiled = dense_tabu_search(linear, quadratic, mask, backend="compiled", exhaustive_max_variables=0)
    monkeypatch.setattr(dense_tabu, "compiled_search_available", lambda: False)
    monkeypatch.setattr(dense_tabu, "_run_compiled", lambda *args, **kwargs: pytest.fail("the compiled search ran"))
    monkeypatch.setattr(dense_tabu, "_enumerate", lambda *args: pytest.fail("the compiled enumeration ran"))
    fallback = dense_tabu_search(linear, quadratic, mask)
    assert torch.equal(fallback.start_states, compiled.start_states)
    mask[1] = False  # a problem without variables goes to the torch search too, not to the enumeration
    assert not dense_tabu_search(linear, quadratic, mask).states[1].any()
    with pytest.raises(ImportError, match="pip install numba"):
        dense_tabu_search(linear, quadratic, mask, backend="compiled")


def test_small_problems_are_enumerated_exactly_with_ties_to_the_lowest_binary_index():
    """Up to ``exhaustive_max_variables`` the result is the brute-force optimum itself (no steps taken), every start
    holds it, and between equal energies the state with the lower Σ n_p 2^p wins: here variables 0 and 1 are exact
    copies (equal linear terms and couplings), so {0, 2} and {1, 2} tie at −0.625 (dyadic numbers: exact
    arithmetic on any path) and {0, 2} must win."""
    linear = torch.tensor([[-0.5, -0.5, -0.25]], dtype=torch.float64)
    quadratic = torch.tensor([[[0.0, 1.0, 0.125], [1.0, 0.0, 0.125], [0.125, 0.125, 0.0]]], dtype=torch.float64)
    for k in (None, 2):
        result = dense_tabu_search(linear, quadratic, k=k, num_starts=5)
        assert result.states[0].tolist() == [True, False, True] and float(result.energies[0]) == -0.625
        assert result.iterations == 0 and torch.equal(result.start_states[0], result.states[0].expand(5, -1))
    rng = np.random.default_rng(17)
    # Odd and even sizes (the enumeration splits the variables into a low and a high half), up to the default limit.
    problems = [build_feature_map_qubo(*random_feature_map_problem(rng, d), 0.8) for d in (13, 11, 6, 16, 5)]
    for k in (None, 4):
        result = dense_tabu_search(*_padded_batch(problems), k=k, exhaustive_max_variables=16)
        assert result.iterations == 0  # all enumerated
        for problem, state, energy in zip(problems, result.states.numpy(), result.energies):
            state = state[: problem.num_variables]
            linear_part, pairs = -problem.beta * problem.h, (1 - problem.beta) * problem.J
            _, optimum = ground_states(linear_part, pairs, 0.0)
            if k is not None:  # brute force over the K-hot states only
                hot = [s for s in itertools.product((0, 1), repeat=problem.num_variables) if sum(s) == k]
                values = [np.dot(linear_part, s) + 0.5 * np.asarray(s) @ pairs @ np.asarray(s) for s in hot]
                optimum = min(values)
                assert state.sum() == k
            assert float(energy) == pytest.approx(optimum, abs=1e-12)
            # ... and the returned state is one that has it (the bits map back to the right variables)
            direct = np.dot(linear_part, state) + 0.5 * state @ pairs @ state
            assert direct == pytest.approx(optimum, abs=1e-12)
    # A hole in the mask: the optimum of the problem without that variable, which is never selected.
    linear, quadratic, mask = _padded_batch(problems[1:2])
    mask[0, 4] = False
    keep = [p for p in range(problems[1].num_variables) if p != 4]
    result = dense_tabu_search(linear, quadratic, mask)
    _, optimum = ground_states(linear[0, keep].numpy(), quadratic[0][keep][:, keep].numpy(), 0.0)
    assert not result.states[0, 4] and float(result.energies[0]) == pytest.approx(optimum, abs=1e-12)


@pytest.mark.parametrize("k, exhaustive", [(None, 0), (3, 0), (None, None)])
def test_a_coupling_scale_gives_the_numbers_of_the_scaled_couplings(k, exhaustive):
    """quadratic_scale=c with J is the search on c·J itself, bit for bit, in both implementations."""
    rng = np.random.default_rng(8)
    problems = [build_feature_map_qubo(*random_feature_map_problem(rng, d), 0.7) for d in (40, 9, 25)]
    linear, quadratic, mask = _padded_batch(problems)
    for backend in ("compiled", "torch"):
        scaled = dense_tabu_search(linear, 0.37 * quadratic, mask, k=k, backend=backend,
                                   exhaustive_max_variables=exhaustive)
        by_scale = dense_tabu_search(linear, quadratic, mask, k=k, backend=backend, quadratic_scale=0.37,
                                     exhaustive_max_variables=exhaustive)
        assert torch.equal(scaled.start_states, by_scale.start_states)
        assert torch.equal(scaled.start_energies, by_scale.start_energies)


def test_dimod_sampler_api_and_generic_bqms():
    sampler = DenseTabuSampler()
    dimod.testing.assert_sampler_api(sampler)
    assert isinstance(get_sampler("dense-tabu"), DenseTabuSampler)
    rng = np.random.default_rng(2)
    for vartype in (dimod.BINARY, dimod.SPIN):
        # A generic BQM (negative couplings too, string labels): the search is not specific to feature maps.
        labels = [f"x{i}" for i in range(12)]
        bqm = dimod.BinaryQuadraticModel(
            {v: rng.normal() for v in labels},
            {(u, v): rng.normal() for i, u in enumerate(labels) for v in labels[i + 1:]},
            rng.normal(), vartype,
        )
        sampleset = sampler.sample(bqm, num_reads=6, seed=0)
        dimod.testing.assert_sampleset_energies(sampleset, bqm)
        assert len(sampleset) == 6 and set(sampleset.variables) == set(labels)
        assert sampleset.first.energy == pytest.approx(dimod.ExactSolver().sample(bqm).first.energy)
    k_hot = build_feature_map_qubo(*random_feature_map_problem(rng, 14), 0.7, "k_hot", 4).to_bqm()
    assert all(sum(s.values()) == 4 for s in sampler.sample(k_hot, k=4, seed=0).samples())


def test_bad_arguments_name_the_problem():
    linear, quadratic = torch.zeros(1, 4, dtype=torch.float64), torch.zeros(1, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="at least k"):
        dense_tabu_search(linear, quadratic, k=5)
    with pytest.raises(ValueError, match="num_starts"):
        dense_tabu_search(linear, quadratic, num_starts=0)
    with pytest.raises(ValueError, match=r"\(B, D, D\)"):
        dense_tabu_search(linear, quadratic[:, :3])
    with pytest.raises(ValueError, match="backend must be one of"):
        dense_tabu_search(linear, quadratic, backend="numba")
    with pytest.raises(ValueError, match="exhaustive_max_variables"):
        dense_tabu_search(linear, quadratic, exhaustive_max_variables=31)
    with pytest.raises(ValueError, match="quadratic_scale"):
        dense_tabu_search(linear, quadratic, quadratic_scale=float("nan"))
    with pytest.raises(ValueError, match="takes no"):
        DenseTabuSampler().sample(dimod.BinaryQuadraticModel({0: 1.0}, {}, 0.0, dimod.BINARY), sweeps=3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none; the CPU path is tested above)")
def test_cuda_and_cpu_give_the_same_selections():
    """On CUDA the batched torch search runs, on CPU the compiled one: the same selections."""
    rng = np.random.default_rng(4)
    # Large problems take the searches; the d = 10 ones are enumerated on the CPU for either device.
    problems = [build_feature_map_qubo(*random_feature_map_problem(rng, d), 0.7) for d in (300,) * 6 + (10, 10)]
    linear, quadratic, mask = _padded_batch(problems)
    for k in (None, 5):
        cpu = dense_tabu_search(linear, quadratic, mask, k=k, seed=0)
        gpu = dense_tabu_search(linear.cuda(), quadratic.cuda(), mask.cuda(), k=k, seed=0)
        assert torch.equal(cpu.states, gpu.states.cpu())
    with pytest.raises(ValueError, match="CPU tensors only"):
        dense_tabu_search(linear.cuda(), quadratic.cuda(), backend="compiled")

