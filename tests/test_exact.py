"""The exact enumerator against dimod.ExactSolver (a peer implementation) and hand-built cases."""
import dimod
import numpy as np
import pytest

from captum_qubo.solvers.exact import (
    MAX_EXACT_VARIABLES,
    ExactMinimumSampler,
    all_energies,
    ground_states,
    index_to_states,
    iter_energies,
)
from captum_qubo.formulation.qubo import build_feature_map_qubo


def _random_bqm(rng, d, vartype=dimod.BINARY, integer=False):
    """Dense random BQM; integer biases in {-2..2} make degenerate ground states common."""
    if integer:
        linear = rng.integers(-2, 3, size=d).astype(float)
        quadratic = np.triu(rng.integers(-2, 3, size=(d, d)), 1).astype(float)
    else:
        linear = rng.normal(size=d)
        quadratic = np.triu(rng.normal(size=(d, d)), 1)
    return dimod.BinaryQuadraticModel(linear, quadratic, float(rng.normal()), vartype)


def _minimisers(sampleset):
    """Set of ground-state tuples (ordered by sorted variable labels) and the ground energy."""
    lowest = sampleset.lowest(atol=1e-9)
    labels = sorted(sampleset.variables)
    rows = {tuple(int(s[v]) for v in labels) for s in lowest.samples()}
    return rows, float(lowest.first.energy)


@pytest.mark.parametrize("d", range(1, 13))
@pytest.mark.parametrize("integer", [False, True], ids=["continuous", "degenerate"])
@pytest.mark.parametrize("vartype", [dimod.BINARY, dimod.SPIN], ids=["binary", "spin"])
def test_exact_sampler_matches_dimod_exact_solver(d, integer, vartype):
    rng = np.random.default_rng(1000 * d + 10 * integer + (vartype is dimod.SPIN))
    bqm = _random_bqm(rng, d, vartype, integer)
    expected, expected_energy = _minimisers(dimod.ExactSolver().sample(bqm))
    ours = ExactMinimumSampler().sample(bqm)
    got, got_energy = _minimisers(ours)
    assert got == expected
    assert got_energy == pytest.approx(expected_energy, abs=1e-9)
    assert len(ours) == len(expected), "every minimiser exactly once, nothing else"


@pytest.mark.parametrize("formulation, k", [("unconstrained", None), ("k_hot", 3)])
def test_exact_sampler_matches_dimod_on_feature_map_qubos(formulation, k):
    rng = np.random.default_rng(7)
    for d in (4, 9, 12):
        qubo = build_feature_map_qubo(rng.random(d), rng.random((d, 3, 3)), formulation=formulation, k=k)
        bqm = qubo.to_bqm()
        got, got_energy = _minimisers(ExactMinimumSampler().sample(bqm))
        expected, expected_energy = _minimisers(dimod.ExactSolver().sample(bqm))
        assert got == expected
        assert got_energy == pytest.approx(expected_energy, abs=1e-9)


def test_exact_sampler_keeps_variable_labels():
    bqm = dimod.BinaryQuadraticModel({"b": -1.0, "a": 1.0, "c": -0.5}, {("a", "c"): -3.0}, 0.0, "BINARY")
    best = ExactMinimumSampler().sample(bqm).first
    # a=1,c=1: 1 − 0.5 − 3 = −2.5, plus b=1: −1 → −3.5 (hand-computed minimum).
    assert best.sample == {"a": 1, "b": 1, "c": 1}
    assert best.energy == pytest.approx(-3.5)


def test_ground_states_match_dimod_indices():
    rng = np.random.default_rng(3)
    for d in (2, 6, 10):
        bqm = _random_bqm(rng, d, integer=True)
        linear = np.array([bqm.get_linear(v) for v in range(d)])
        quadratic = np.zeros((d, d))
        for (u, v), bias in bqm.quadratic.items():
            quadratic[u, v] = quadratic[v, u] = bias
        indices, energy = ground_states(linear, quadratic, bqm.offset)
        expected, expected_energy = _minimisers(dimod.ExactSolver().sample(bqm))
        # little-endian: variable p is bit p of the state index
        assert {tuple(row) for row in index_to_states(indices, d)} == expected
        assert energy == pytest.approx(expected_energy, abs=1e-9)
        assert np.all(np.diff(indices) > 0), "indices ascending"


def test_index_to_states_is_little_endian():
    states = index_to_states(np.array([0, 1, 5, 6]), 3)
    np.testing.assert_array_equal(states, [[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 1, 1]])


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1 << 10])
def test_chunking_gives_the_same_energies_as_one_chunk(chunk_size):
    rng = np.random.default_rng(5)
    d = 10
    linear, quadratic = rng.normal(size=d), rng.normal(size=(d, d))
    quadratic = np.triu(quadratic, 1) + np.triu(quadratic, 1).T
    one_chunk = list(iter_energies(linear, quadratic, 0.3, chunk_size=1 << d))
    assert len(one_chunk) == 1
    chunks = list(iter_energies(linear, quadratic, 0.3, chunk_size=chunk_size))
    assert len(chunks) == -(-(1 << d) // chunk_size)
    np.testing.assert_array_equal(np.concatenate([i for i, _ in chunks]), np.arange(1 << d))
    np.testing.assert_allclose(np.concatenate([e for _, e in chunks]), one_chunk[0][1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(all_energies(linear, quadratic, 0.3), one_chunk[0][1], rtol=0, atol=1e-12)


def test_ground_states_across_chunk_boundaries():
    """d = 17 spans two default chunks (2^16 states each); minimisers placed by hand."""
    d = 17
    quadratic = np.zeros((d, d))
    linear = np.ones(d)
    linear[16] = 0.0  # states 0 and 2^16 (first state of the second chunk) both have energy 0
    indices, energy = ground_states(linear, quadratic)
    np.testing.assert_array_equal(indices, [0, 1 << 16])
    assert energy == 0.0

    linear[16] = -1.0  # now the second chunk holds the unique minimum, found after a worse first chunk
    indices, energy = ground_states(linear, quadratic)
    np.testing.assert_array_equal(indices, [1 << 16])
    assert energy == -1.0


def test_more_than_max_variables_is_a_clear_error():
    d = MAX_EXACT_VARIABLES + 1
    bqm = dimod.BinaryQuadraticModel(np.ones(d), {}, 0.0, "BINARY")
    with pytest.raises(ValueError, match=rf"{d} variables.*limit is {MAX_EXACT_VARIABLES}.*'sa'"):
        ExactMinimumSampler().sample(bqm)
    with pytest.raises(ValueError, match="limit"):
        ground_states(np.ones(d), np.zeros((d, d)))


def test_exact_sampler_rejects_unknown_keywords_and_handles_empty_bqm():
    bqm = dimod.BinaryQuadraticModel({0: 1.0}, {}, 0.0, "BINARY")
    with pytest.raises(ValueError, match="num_reads"):
        ExactMinimumSampler().sample(bqm, num_reads=10)
    empty = ExactMinimumSampler().sample(dimod.BinaryQuadraticModel("BINARY"))
    assert len(empty.variables) == 0
