"""Annealer backends by name: a registry of factories returning ``dimod.Sampler`` objects.

A sampler can be given as a registered name (``"exact"``, ``"sa"``, ``"qpu"`` ...), as any
``dimod.Sampler`` instance, or as a zero-argument callable returning one (a sampler class
works too). Anything needing the optional ``dwave`` extra (dwave-system) or D-Wave Leap
credentials is imported and checked lazily, so :func:`check_sampler_ready` can fail fast, with
the fix in the message, before any explanation work starts.

:func:`sample_lowest_energy` runs a sampler on a BQM, passing through only the keyword
arguments the sampler declares in ``.parameters``, and keeps the best sample together with the
SampleSet's ``info`` (timing, embedding context).
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Union

import dimod
import numpy as np
from dwave.samplers import (
    PathIntegralAnnealingSampler,
    SimulatedAnnealingSampler,
    SteepestDescentSampler,
    TabuSampler,
)

from captum_qubo.solvers.dense_sampler import DenseTabuSampler
from captum_qubo.solvers.exact import ExactMinimumSampler

SamplerSpec = Union[str, dimod.Sampler, Callable[[], dimod.Sampler]]

DWAVE_EXTRA_HINT = "install the optional extra: pip install 'captum-qubo[dwave]'"

# Pegasus P16 is the graph of the D-Wave Advantage QPU, so mock-qpu embeds like the real machine.
MOCK_QPU_PEGASUS_SHAPE = 16


class SamplerConfigurationError(ValueError):
    """A sampler cannot be used as configured: unknown name, missing extra or missing credentials."""


@dataclass(frozen=True)
class _RegistryEntry:
    factory: Callable[[], dimod.Sampler]
    check: Optional[Callable[[], None]]
    defaults: Dict[str, Any]


_REGISTRY: Dict[str, _RegistryEntry] = {}


def register_sampler(
    name: str,
    factory: Callable[[], dimod.Sampler],
    overwrite: bool = False,
    check: Optional[Callable[[], None]] = None,
    defaults: Optional[Dict[str, Any]] = None,
) -> None:
    """Make ``factory`` available under ``name`` for :func:`get_sampler`.

    Args:
        name: the registry key, e.g. ``"my-annealer"``.
        factory: zero-argument callable returning a ``dimod.Sampler`` (a sampler class works).
        overwrite: replace an existing entry of that name instead of raising.
        check: optional zero-argument callable raising :class:`SamplerConfigurationError` when the
            sampler cannot run here (missing package, credentials); run by
            :func:`check_sampler_ready` and before ``factory``.
        defaults: keyword arguments every ``sample`` call through this name gets unless the caller
            overrides them (e.g. several reads for a heuristic); see :func:`sampler_defaults`.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"sampler name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory for {name!r} must be a zero-argument callable returning a dimod.Sampler")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"sampler {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = _RegistryEntry(factory, check, dict(defaults or {}))


def sampler_defaults(spec: Any) -> Dict[str, Any]:
    """The default ``sample`` keyword arguments of a registered name ({} for instances and callables)."""
    return dict(_lookup(spec).defaults) if isinstance(spec, str) else {}


def available_samplers() -> List[str]:
    """Registered sampler names, built-ins first, in registration order."""
    return list(_REGISTRY)


def _lookup(name: str) -> _RegistryEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SamplerConfigurationError(
            f"unknown sampler {name!r}.{hint} Available: {', '.join(_REGISTRY)}. You can also pass a "
            "dimod.Sampler instance, a zero-argument callable returning one, or register a name with "
            "captum_qubo.solvers.registry.register_sampler()."
        ) from None


def _not_a_spec(spec: Any) -> TypeError:
    return TypeError(
        f"sampler must be a registered name ({', '.join(_REGISTRY)}), a dimod.Sampler instance or a "
        f"zero-argument callable returning one; got {type(spec).__name__}"
    )


def check_sampler_ready(spec: SamplerSpec) -> None:
    """Fail fast if a sampler spec cannot be used here, without building or contacting anything.

    Names are checked for existence, optional packages and credentials. Instances are ready by
    definition; callables are only called by :func:`get_sampler`, so they are accepted here.

    Raises:
        SamplerConfigurationError: unknown name, missing ``dwave`` extra, no Leap credentials.
        TypeError: ``spec`` is none of the accepted kinds.
    """
    if isinstance(spec, str):
        entry = _lookup(spec)
        if entry.check is not None:
            entry.check()
    elif not (isinstance(spec, dimod.Sampler) or callable(spec)):
        raise _not_a_spec(spec)


def get_sampler(spec: SamplerSpec) -> dimod.Sampler:
    """Resolve a sampler spec to a ``dimod.Sampler``.

    Args:
        spec: a registered name (see :func:`available_samplers`), a ``dimod.Sampler`` instance
            (returned as is) or a zero-argument callable returning one.

    Returns:
        The sampler.

    Raises:
        SamplerConfigurationError: as :func:`check_sampler_ready`.
        TypeError: ``spec`` is none of the accepted kinds, or the callable returned a non-sampler.
    """
    if isinstance(spec, dimod.Sampler):
        return spec
    check_sampler_ready(spec)
    if isinstance(spec, str):
        sampler, origin = _REGISTRY[spec].factory(), f"the factory registered as {spec!r}"
    else:
        sampler, origin = spec(), f"the callable {getattr(spec, '__name__', spec)!r}"
    if not isinstance(sampler, dimod.Sampler):
        raise TypeError(f"{origin} returned {type(sampler).__name__}, not a dimod.Sampler")
    return sampler


@dataclass(frozen=True)
class LowestEnergySample:
    """The best sample a sampler returned for a BQM.

    Attributes:
        state: (d,) int8 values in the BQM's vartype, ordered like ``bqm.variables`` (for
            :meth:`FeatureMapQubo.to_bqm` that is variable 0..d-1, i.e. ready for
            ``qubo.selected_channels(state)``).
        energy: its energy on the given BQM (recomputed, not trusted from the sampler).
        info: the SampleSet's ``info`` (e.g. QPU ``timing``, ``embedding_context``).
        num_samples: rows in the returned SampleSet.
    """

    state: np.ndarray
    energy: float
    info: Dict[str, Any]
    num_samples: int


def sample_lowest_energy(
    bqm: dimod.BinaryQuadraticModel,
    sampler: SamplerSpec,
    seed: Optional[int] = None,
    **sampler_kwargs: Any,
) -> LowestEnergySample:
    """Sample ``bqm`` and keep the lowest-energy sample with the SampleSet's info.

    Args:
        bqm: the problem.
        sampler: a name, ``dimod.Sampler`` or zero-argument callable (see :func:`get_sampler`).
        seed: passed as ``seed`` to samplers that declare it, so a given seed reproduces the
            result; ignored by samplers without one (exact is deterministic; QPUs cannot be seeded).
        **sampler_kwargs: keyword arguments for ``sampler.sample`` (num_reads, num_sweeps ...);
            each must be declared in ``sampler.parameters``. A registered name's defaults
            (:func:`sampler_defaults`) apply beneath them, as in the explainer.

    Returns:
        :class:`LowestEnergySample`. A BQM without variables is not sent to the sampler: its
        only state is empty and its energy the offset.

    Raises:
        SamplerConfigurationError: a keyword argument the sampler does not declare, or the
            sampler returned no samples.
    """
    return submit_sample(bqm, sampler, seed, **sampler_kwargs).result()


class PendingSample:
    """A submitted ``sampler.sample`` call whose SampleSet may still be resolving (remote QPU, hybrid).

    dimod SampleSets resolve lazily, so submitting every problem of a batch before calling :meth:`result`
    on any lets a remote solver work on all of them while the network round trips overlap.
    """

    def __init__(self, bqm: dimod.BinaryQuadraticModel, sampleset: Optional[dimod.SampleSet], sampler_name: str):
        self.bqm, self.sampleset, self.sampler_name = bqm, sampleset, sampler_name

    def done(self) -> bool:
        """True when the result is available without waiting."""
        return self.sampleset is None or self.sampleset.done()

    def result(self) -> LowestEnergySample:
        """Wait for the SampleSet and keep its lowest-energy sample (energy recomputed on the BQM)."""
        if self.sampleset is None:
            return LowestEnergySample(np.zeros(0, dtype=np.int8), float(self.bqm.offset), {}, 0)
        self.sampleset.resolve()
        if len(self.sampleset) == 0:
            raise SamplerConfigurationError(f"{self.sampler_name} returned no samples")
        columns = [self.sampleset.variables.index(v) for v in self.bqm.variables]
        states = self.sampleset.record.sample[:, columns]
        energies = self.bqm.energies((states, self.bqm.variables))
        best = int(np.argmin(energies))
        return LowestEnergySample(
            state=states[best].astype(np.int8),
            energy=float(energies[best]),
            info=dict(self.sampleset.info),
            num_samples=len(self.sampleset),
        )


def submit_sample(
    bqm: dimod.BinaryQuadraticModel,
    sampler: SamplerSpec,
    seed: Optional[int] = None,
    **sampler_kwargs: Any,
) -> PendingSample:
    """Start ``sampler.sample(bqm)`` without waiting for it; arguments as :func:`sample_lowest_energy`."""
    sampler_kwargs = {**sampler_defaults(sampler), **sampler_kwargs}
    sampler = get_sampler(sampler)
    unknown = sorted(set(sampler_kwargs) - set(sampler.parameters))
    if unknown:
        raise SamplerConfigurationError(
            f"{type(sampler).__name__} does not accept {unknown}; its parameters are "
            f"{sorted(sampler.parameters)}"
        )
    if seed is not None and "seed" in sampler.parameters:
        sampler_kwargs.setdefault("seed", seed)
    if bqm.num_variables == 0:
        return PendingSample(bqm, None, type(sampler).__name__)
    return PendingSample(bqm, sampler.sample(bqm, **sampler_kwargs), type(sampler).__name__)


# --- optional dwave-system backends -------------------------------------------------------------


def _import_dwave_system() -> ModuleType:
    try:
        return importlib.import_module("dwave.system")
    except ImportError as exc:
        raise SamplerConfigurationError(
            f"this sampler needs dwave-system, which is not installed ({exc}); {DWAVE_EXTRA_HINT}"
        ) from exc


def _require_dwave_system() -> None:
    _import_dwave_system()


def _require_leap_credentials() -> None:
    """Raise unless a D-Wave API token is configured (file or environment); offline, token-free."""
    _import_dwave_system()
    from dwave.cloud.config import load_config

    try:
        config = load_config()
    except Exception as exc:  # any unreadable/invalid config file; the message names the file
        raise SamplerConfigurationError(
            f"could not read the D-Wave configuration ({type(exc).__name__}: {exc}); fix it with "
            "`dwave config create` or set DWAVE_API_TOKEN"
        ) from exc
    if not config.get("token"):
        raise SamplerConfigurationError(
            "D-Wave Leap samplers (qpu, qpu-clique, hybrid) need an API token and none is configured. "
            "Set the DWAVE_API_TOKEN environment variable or run `dwave config create`. Offline "
            "alternatives: 'mock-qpu' (real minor-embedding onto Pegasus, simulated QPU), 'sa', 'exact'."
        )


def _connect(make: Callable[[], dimod.Sampler]) -> dimod.Sampler:
    """Build a Leap sampler, turning connection/solver failures into a configuration error."""
    try:
        return make()
    except Exception as exc:  # dwave-cloud-client raises many types; the fix is the same
        raise SamplerConfigurationError(
            f"could not reach a D-Wave Leap solver ({type(exc).__name__}: {exc}). Check the token, "
            "solver and network with `dwave ping`."
        ) from exc


def _qpu() -> dimod.Sampler:
    system = _import_dwave_system()
    sampler = system.EmbeddingComposite(_connect(system.DWaveSampler))
    sampler.return_embedding_default = True  # keep the embedding with the result
    return sampler


def _qpu_clique() -> dimod.Sampler:
    return _connect(_import_dwave_system().DWaveCliqueSampler)


def _hybrid() -> dimod.Sampler:
    return _connect(_import_dwave_system().LeapHybridSampler)


def _mock_qpu() -> dimod.Sampler:
    """EmbeddingComposite over a Pegasus MockDWaveSampler whose physical sampler is SA.

    The minor-embedding (minorminer onto Pegasus P16, chains, chain strength, unembedding) is
    the real one; only the QPU is replaced, by simulated annealing on the embedded problem
    (dwave-system's default stand-in, steepest descent, stops at local minima). ``seed``
    seeds both minorminer and the annealing, so seeded runs embed and sample identically.
    The two small classes live here because their bases come from the optional dwave-system.
    """
    system = _import_dwave_system()
    from dwave.system.testing import MockDWaveSampler

    class SeedableMockDWaveSampler(MockDWaveSampler):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.parameters = {**self.parameters, "seed": []}  # forwarded to the substitute SA
            self.mocked_parameters = self.mocked_parameters | {"seed"}

    class SeededEmbeddingComposite(system.EmbeddingComposite):
        def sample(self, bqm, seed=None, embedding_parameters=None, **kwargs):
            if seed is not None:
                embedding_parameters = {"random_seed": seed, **(embedding_parameters or {})}
                kwargs["seed"] = seed
            return super().sample(bqm, embedding_parameters=embedding_parameters, **kwargs)

    child = SeedableMockDWaveSampler(
        topology_type="pegasus",
        topology_shape=[MOCK_QPU_PEGASUS_SHAPE],
        substitute_sampler=SimulatedAnnealingSampler(),
    )
    sampler = SeededEmbeddingComposite(child)
    sampler.return_embedding_default = True
    return sampler


def _quantum_annealing_simulator() -> dimod.Sampler:
    from captum_qubo.annealing import QuantumAnnealingSimulator

    return QuantumAnnealingSimulator()


def _require_annealing_simulator() -> None:
    try:
        from captum_qubo.annealing import QuantumAnnealingSimulator  # noqa: F401
    except ImportError as exc:
        raise SamplerConfigurationError(
            f"'qa-sim' needs captum_qubo.annealing.QuantumAnnealingSimulator, which cannot be imported ({exc})"
        ) from exc


# Heuristic samplers get several reads by default: one read often stops in a local minimum.
# Tabu's own default stops on a 100 ms wall-clock timeout, so its result would depend on machine
# load; a restart budget (with a generous timeout as a safety net) keeps seeded runs reproducible.
# One tabu read, even with restarts, can miss a k_hot optimum that 10 independent reads find.
SEVERAL_READS = {"num_reads": 10}
TABU_DEFAULTS = {"num_reads": 10, "num_restarts": 10, "timeout": 60_000}


def _register_builtins() -> None:
    register_sampler("exact", ExactMinimumSampler)
    register_sampler("dense-tabu", DenseTabuSampler)
    register_sampler("sa", SimulatedAnnealingSampler, defaults=SEVERAL_READS)
    register_sampler("tabu", TabuSampler, defaults=TABU_DEFAULTS)
    register_sampler("steepest", SteepestDescentSampler, defaults=SEVERAL_READS)
    register_sampler("sqa", PathIntegralAnnealingSampler, defaults=SEVERAL_READS)
    register_sampler("qpu", _qpu, check=_require_leap_credentials)
    register_sampler("qpu-clique", _qpu_clique, check=_require_leap_credentials)
    register_sampler("hybrid", _hybrid, check=_require_leap_credentials)
    register_sampler("mock-qpu", _mock_qpu, check=_require_dwave_system, defaults=SEVERAL_READS)
    register_sampler("qa-sim", _quantum_annealing_simulator, check=_require_annealing_simulator)


_register_builtins()
