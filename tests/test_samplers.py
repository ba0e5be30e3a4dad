"""The sampler registry: dimod API, solution quality on real layers' QUBOs, errors, seeds, credentials."""
import socket
import subprocess
import sys
from functools import lru_cache
from itertools import combinations

import dimod
import numpy as np
import pytest
from dimod.testing import assert_sampler_api
from dwave.samplers import SimulatedAnnealingSampler

from captum_qubo.solvers import registry
from captum_qubo.solvers.exact import ExactMinimumSampler
from captum_qubo.formulation.qubo import build_feature_map_qubo
from captum_qubo.solvers.registry import (
    LowestEnergySample,
    SamplerConfigurationError,
    available_samplers,
    check_sampler_ready,
    get_sampler,
    register_sampler,
    sample_lowest_energy,
)
from test_qubo import real_layer_problems, top_positive_maps  # real-layer helper (tests/ is on sys.path)

OFFLINE_SAMPLERS = ("exact", "sa", "tabu", "steepest", "sqa", "mock-qpu")
LEAP_SAMPLERS = ("qpu", "qpu-clique", "hybrid")
SEEDED_SAMPLERS = ("sa", "tabu", "steepest", "sqa", "mock-qpu")
NUM_READS = 50
K = 3
# (problem name, d): d ≤ 12 for mock-qpu (minor-embedding a 20-clique takes seconds), d = 20 for the
# rest. The top-d positive-α maps are kept so exact enumeration stays cheap (see top_positive_maps).
REAL_CASES = (("digits-5", 16), ("efficientnet-chelsea", 12), ("efficientnet-coffee", 20))


@lru_cache(maxsize=None)
def real_qubo(name, max_maps, formulation):
    """A real layer's QUBO and its exact ground energy and the energies of all its K-hot states."""
    alpha, maps = next((a, m) for n, a, m in real_layer_problems() if n == name)
    qubo = build_feature_map_qubo(
        top_positive_maps(alpha, max_maps), maps, formulation=formulation, k=K if formulation == "k_hot" else None
    )
    d = qubo.num_variables
    k_hot_states = np.zeros((len(list(combinations(range(d), K))), d), dtype=np.int8)
    for row, chosen in enumerate(combinations(range(d), K)):
        k_hot_states[row, list(chosen)] = 1
    ground = ExactMinimumSampler().sample(qubo.to_bqm()).first.energy
    return qubo, ground, qubo.energies(k_hot_states)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails loudly."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def no_credentials(monkeypatch, tmp_path, no_network):
    """A D-Wave environment with no token anywhere: empty config file, no token variable."""
    config = tmp_path / "dwave.conf"
    config.write_text("")
    for variable in ("DWAVE_API_TOKEN", "DWAVE_PROFILE", "DWAVE_API_ENDPOINT", "DWAVE_API_REGION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DWAVE_CONFIG_FILE", str(config))
    return config


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_builtin_names():
    assert set(available_samplers()) >= set(OFFLINE_SAMPLERS + LEAP_SAMPLERS + ("qa-sim",))


@pytest.mark.parametrize("name", OFFLINE_SAMPLERS)
def test_builtin_samplers_follow_the_dimod_api(name):
    sampler = get_sampler(name)
    assert_sampler_api(sampler)
    assert all(isinstance(options, list) for options in sampler.parameters.values())


def test_quantum_annealing_simulator_follows_the_dimod_api():
    annealing = pytest.importorskip("captum_qubo.annealing")
    if not hasattr(annealing, "QuantumAnnealingSimulator"):
        pytest.skip("the annealing simulator is not in this checkout yet")
    assert_sampler_api(get_sampler("qa-sim"))


# Tolerance on the energy above the exact ground state. Unconstrained problems are easy for every
# sampler here (a few local minima); with 50 seeded reads each one reaches the ground state, so we
# allow only float rounding. k_hot is different: the penalty that provably makes every minimiser
# K-hot also walls the K-hot states off from each other (moving between two of them needs a
# detour through a (K±1)-hot state), so single-flip annealers (sa, sqa, and SA on the embedded
# problem in mock-qpu) freeze into a near-random K-hot state early. For them we require a feasible
# answer better than a random K-hot choice (below the median K-hot energy); tabu and steepest
# descent (greedy from 50 random starts) and exact must still hit the ground state.
ROUNDING = 1e-9
EXACT_ON_K_HOT = ("exact", "tabu", "steepest")


@pytest.mark.parametrize("name", OFFLINE_SAMPLERS)
@pytest.mark.parametrize("formulation", ["unconstrained", "k_hot"])
@pytest.mark.parametrize("problem, max_maps", REAL_CASES)
def test_samplers_find_good_feasible_solutions_on_real_layers(name, formulation, problem, max_maps):
    qubo, ground, k_hot_energies = real_qubo(problem, max_maps, formulation)
    if name == "mock-qpu" and qubo.num_variables > 12:
        pytest.skip("mock-qpu is checked on the d ≤ 12 problems")
    kwargs = {} if name == "exact" else {"num_reads": NUM_READS}
    best = sample_lowest_energy(qubo.to_bqm(), name, seed=0, **kwargs)
    assert best.energy == pytest.approx(float(qubo.energies(best.state)), abs=ROUNDING)
    if formulation == "k_hot":
        assert best.state.sum() == K
    if formulation == "unconstrained" or name in EXACT_ON_K_HOT:
        assert best.energy <= ground + ROUNDING
    else:
        assert best.energy < np.median(k_hot_energies)


def test_mock_qpu_embeds_a_real_problem_onto_pegasus():
    qubo, ground, _ = real_qubo("efficientnet-chelsea", 12, "unconstrained")
    assert qubo.num_variables == 12
    sampler = get_sampler("mock-qpu")
    best = sample_lowest_energy(qubo.to_bqm(), sampler, seed=1, num_reads=NUM_READS)
    assert best.energy <= ground + ROUNDING

    context = best.info["embedding_context"]
    chains = {v: list(chain) for v, chain in context["embedding"].items()}
    qpu = sampler.child
    assert qpu.properties["topology"]["type"] == "pegasus"
    qubits, couplers = set(qpu.nodelist), {frozenset(edge) for edge in qpu.edgelist}
    assert set(chains) == set(range(12))
    used = [q for chain in chains.values() for q in chain]
    assert len(used) == len(set(used)), "chains are disjoint"
    assert set(used) <= qubits
    assert any(len(chain) > 1 for chain in chains.values()), "a 12-clique needs chains on Pegasus"
    for chain in chains.values():  # each chain is a connected set of qubits
        reached, frontier = {chain[0]}, [chain[0]]
        while frontier:
            node = frontier.pop()
            for other in chain:
                if other not in reached and frozenset((node, other)) in couplers:
                    reached.add(other)
                    frontier.append(other)
        assert reached == set(chain)
    for u, v in qubo.to_bqm().quadratic:  # every interaction has a physical coupler between the chains
        assert any(frozenset((a, b)) in couplers for a in chains[u] for b in chains[v])
    assert context["chain_strength"] > 0 and "timing" in best.info


@pytest.mark.parametrize("name", SEEDED_SAMPLERS)
def test_same_seed_same_samples(name):
    rng = np.random.default_rng(0)
    qubo = build_feature_map_qubo(rng.random(10), rng.random((10, 4, 4)))
    bqm = qubo.to_bqm()
    kwargs = {} if name == "tabu" else {"num_reads": 5}
    runs = [get_sampler(name).sample(bqm, seed=7, **kwargs) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].record.sample, runs[1].record.sample)
    if name == "mock-qpu":
        assert runs[0].info["embedding_context"]["embedding"] == runs[1].info["embedding_context"]["embedding"]


def test_seed_reaches_the_sampler():
    """On a 40-variable glass with a single sweep SA's read depends on the seed, so equal results
    for equal seeds come from the seed being passed through, not from an easy problem."""
    rng = np.random.default_rng(1)
    d = 40
    bqm = dimod.BinaryQuadraticModel(rng.normal(size=d), np.triu(rng.normal(size=(d, d)), 1), 0.0, "BINARY")
    runs = [sample_lowest_energy(bqm, "sa", seed=s, num_reads=1, num_sweeps=1).state for s in (1, 1, 2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_sample_lowest_energy_passes_declared_kwargs_and_keeps_info():
    qubo = build_feature_map_qubo(np.array([1.0, 0.5, 0.8]), np.eye(3).reshape(3, 1, 3))
    best = sample_lowest_energy(qubo.to_bqm(), "sa", seed=3, num_reads=7, num_sweeps=20)
    assert isinstance(best, LowestEnergySample)
    assert best.num_samples == 7
    assert {"beta_range", "timing"} <= set(best.info)
    # orthogonal maps: no redundancy, so keeping every map is the unique minimum
    np.testing.assert_array_equal(best.state, [1, 1, 1])
    exact = sample_lowest_energy(qubo.to_bqm(), "exact", seed=3)  # seed ignored: exact has none
    assert exact.energy == best.energy


def test_undeclared_kwargs_are_named():
    bqm = build_feature_map_qubo(np.ones(2), np.ones((2, 2, 2))).to_bqm()
    with pytest.raises(SamplerConfigurationError, match=r"does not accept \['num_sweeps'\].*'atol'"):
        sample_lowest_energy(bqm, "exact", num_sweeps=100)


def test_lowest_energy_is_recomputed_and_ordered_by_bqm_variables():
    """A sampler reporting wrong energies and shuffled columns cannot fool the selection."""
    rows = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 0, 1]], dtype=np.int8)  # no row is
    # another row reversed, so a column-order mix-up changes the answer

    class ShuffledSampler(dimod.Sampler):
        parameters, properties = {}, {}

        def sample(self, bqm, **kwargs):
            labels = list(bqm.variables)[::-1]
            return dimod.SampleSet.from_samples(
                (rows[:, ::-1], labels), bqm.vartype, energy=np.zeros(len(rows)), sort_labels=False
            )

    rng = np.random.default_rng(4)
    qubo = build_feature_map_qubo(rng.random(4), rng.random((4, 3, 3)))
    expected = int(np.argmin(qubo.energies(rows)))
    best = sample_lowest_energy(qubo.to_bqm(), ShuffledSampler())
    np.testing.assert_array_equal(best.state, rows[expected])
    assert best.energy == pytest.approx(qubo.energies(rows)[expected])


def test_empty_problem_is_not_sent_to_the_sampler():
    best = sample_lowest_energy(dimod.BinaryQuadraticModel({}, {}, 1.5, "BINARY"), "sa", seed=0, num_reads=3)
    assert best.state.shape == (0,) and best.energy == 1.5 and best.num_samples == 0


def test_instances_callables_and_classes_are_accepted():
    instance = SimulatedAnnealingSampler()
    assert get_sampler(instance) is instance
    assert isinstance(get_sampler(lambda: instance), SimulatedAnnealingSampler)
    assert isinstance(get_sampler(ExactMinimumSampler), ExactMinimumSampler)
    check_sampler_ready(instance)
    check_sampler_ready(ExactMinimumSampler)


@pytest.mark.parametrize("spec", [42, None, ["sa"], object()])
def test_other_specs_are_type_errors_saying_what_is_accepted(spec):
    with pytest.raises(TypeError, match="registered name.*dimod.Sampler instance.*zero-argument callable"):
        get_sampler(spec)


def test_callable_returning_a_non_sampler_is_a_type_error():
    with pytest.raises(TypeError, match="returned str, not a dimod.Sampler"):
        get_sampler(lambda: "sa")


def test_unknown_name_lists_the_available_names():
    with pytest.raises(SamplerConfigurationError, match=r"unknown sampler 'qpu_clique'.*'qpu-clique'") as error:
        check_sampler_ready("qpu_clique")
    for name in available_samplers():
        assert name in str(error.value)
    with pytest.raises(SamplerConfigurationError, match="unknown sampler"):
        get_sampler("annealer")


def test_register_custom_sampler(scratch_registry):
    register_sampler("greedy", lambda: dimod.samplers.ExactSolver())
    assert "greedy" in available_samplers()
    bqm = build_feature_map_qubo(np.array([1.0, 0.2]), np.ones((2, 2, 2))).to_bqm()
    assert sample_lowest_energy(bqm, "greedy").energy == ExactMinimumSampler().sample(bqm).first.energy
    with pytest.raises(ValueError, match="already registered.*overwrite=True"):
        register_sampler("greedy", SimulatedAnnealingSampler)
    register_sampler("greedy", SimulatedAnnealingSampler, overwrite=True)
    assert isinstance(get_sampler("greedy"), SimulatedAnnealingSampler)
    with pytest.raises(ValueError, match="already registered"):
        register_sampler("sa", SimulatedAnnealingSampler)
    with pytest.raises(TypeError, match="zero-argument callable"):
        register_sampler("broken", "not callable")


def test_custom_readiness_check_runs_before_the_factory(scratch_registry):
    built = []

    def refuse():
        raise SamplerConfigurationError("licence server unreachable")

    register_sampler("guarded", lambda: built.append(1) or SimulatedAnnealingSampler(), check=refuse)
    with pytest.raises(SamplerConfigurationError, match="licence server"):
        get_sampler("guarded")
    assert built == []


@pytest.mark.parametrize("name", LEAP_SAMPLERS)
def test_leap_samplers_without_credentials_say_how_to_configure(name, no_credentials):
    for attempt in (check_sampler_ready, get_sampler):
        with pytest.raises(SamplerConfigurationError, match=r"DWAVE_API_TOKEN.*`dwave config create`"):
            attempt(name)


def test_configured_token_passes_the_check_and_is_never_printed(no_credentials):
    secret = "SECRET-TOKEN-1234"
    # unreachable endpoint and no retries: the connection attempt fails at once (sockets are blocked)
    no_credentials.write_text(
        f"[defaults]\ntoken = {secret}\nendpoint = https://127.0.0.1:9/sapi\nhttp_retry_total = 0\n"
    )
    for name in LEAP_SAMPLERS:
        check_sampler_ready(name)
    with pytest.raises(SamplerConfigurationError, match="could not reach a D-Wave Leap solver") as error:
        get_sampler("qpu")
    assert secret not in str(error.value)


@pytest.mark.filterwarnings("ignore:.*not mocked in MockDWaveSampler")
def test_leap_factories_solve_offline_with_a_mock_qpu_behind_them(no_credentials, monkeypatch):
    """The qpu and qpu-clique factories, with their real composites (minorminer embedding, clique
    embedding and scaling), run end to end when the Leap QPU is replaced by a seeded Pegasus mock."""
    import dwave.system
    import dwave.system.samplers.clique as clique
    from dwave.system.testing import MockDWaveSampler

    def mock_leap_qpu(**config):
        return MockDWaveSampler(
            topology_type="pegasus", topology_shape=[6], substitute_sampler=SimulatedAnnealingSampler(),
            substitute_kwargs={"seed": 0},
        )

    monkeypatch.setenv("DWAVE_API_TOKEN", "offline-test-token")
    monkeypatch.setattr(dwave.system, "DWaveSampler", mock_leap_qpu)
    monkeypatch.setattr(clique, "DWaveSampler", mock_leap_qpu)
    qubo, ground, _ = real_qubo("efficientnet-chelsea", 12, "unconstrained")
    # Two 3-hot states lie 0.6% apart here; SA on the clique embedding's long chains needs ~100 reads
    # to separate them (20 and 50 stop in the second-best one).
    for name in ("qpu", "qpu-clique"):
        best = sample_lowest_energy(qubo.to_bqm(), name, num_reads=100)
        assert best.energy <= ground + ROUNDING, name
    assert "embedding_context" in sample_lowest_energy(qubo.to_bqm(), "qpu", num_reads=1).info


def test_missing_dwave_system_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dwave.system", None)  # makes `import dwave.system` fail
    for name in ("mock-qpu",) + LEAP_SAMPLERS:
        with pytest.raises(SamplerConfigurationError, match=r"pip install 'captum-qubo\[dwave\]'"):
            check_sampler_ready(name)


def test_optional_backends_are_imported_lazily():
    code = (
        "import sys, captum_qubo.solvers.registry as s; s.available_samplers(); "
        "assert 'dwave.system' not in sys.modules, 'dwave.system imported eagerly'; "
        "assert 'captum_qubo.annealing' not in sys.modules, 'annealing imported eagerly'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
