"""``QuantumAnnealingSimulator``: a dimod sampler whose reads are measurements of |ψ(τ)⟩.

The full state vector of the closed-system anneal is integrated (see
:mod:`captum_qubo.annealing.evolution`) and ``num_reads`` bitstrings are drawn from |ψ(τ)|²
with a seeded generator. Ideal, noiseless, zero temperature: it answers "what would a perfectly
coherent annealer of duration τ return?", which is what the success-probability study needs.
"""
from __future__ import annotations

from typing import Optional, Union

import dimod
import numpy as np

from captum_qubo.annealing.evolution import evolve
from captum_qubo.annealing.hamiltonian import DRIVERS, AnnealingHamiltonian, bqm_energies
from captum_qubo.annealing.schedules import SCHEDULES, Schedule
from captum_qubo.solvers.exact import index_to_states

# Working memory of one anneal: the state, the coarse/fine copies and temporaries, all complex128
# over 2^d amplitudes, plus the float64 energies.
_BYTES_PER_AMPLITUDE = 6 * 16 + 8


def required_memory_bytes(num_variables: int) -> int:
    """Approximate peak memory of simulating ``num_variables`` qubits."""
    return _BYTES_PER_AMPLITUDE << num_variables


class QuantumAnnealingSimulator(dimod.Sampler):
    """State-vector simulation of quantum annealing as a ``dimod.Sampler``.

    Args:
        max_num_variables: refuse larger problems (memory and time grow as 2^d; d = 20 takes
            ~100 MiB and about a minute or two per read-out batch on two cores).

    Sample parameters (all optional):
        tau: annealing time in units of ħ/max B (default 10, the authors' shortest).
        schedule: ``"linear"`` (default), ``"quadratic"``, ``"dwave"`` or a :class:`Schedule`.
        num_reads: shots; default d² as in the authors' study.
        seed: seed of the shot generator (same seed → same shots).
        driver: ``"standard"`` (−Σσx, default) or ``"paper"`` (+(1/d)Σσx).
        tolerance: error target of the integrator on ψ(τ) (default 1e-5).
    """

    def __init__(self, max_num_variables: int = 20) -> None:
        self._max_num_variables = int(max_num_variables)

    @property
    def parameters(self) -> dict:
        return {
            "tau": [],
            "schedule": ["schedules"],
            "num_reads": [],
            "seed": [],
            "driver": ["drivers"],
            "tolerance": [],
        }

    @property
    def properties(self) -> dict:
        return {
            "max_num_variables": self._max_num_variables,
            "schedules": sorted(SCHEDULES),
            "drivers": list(DRIVERS),
            "default_tau": 10.0,
        }

    def sample(
        self,
        bqm: dimod.BinaryQuadraticModel,
        tau: float = 10.0,
        schedule: Union[str, Schedule] = "linear",
        num_reads: Optional[int] = None,
        seed: Optional[int] = None,
        driver: str = "standard",
        tolerance: float = 1e-5,
        **unknown,
    ) -> dimod.SampleSet:
        """Anneal ``bqm`` and return ``num_reads`` shots drawn from |ψ(τ)|².

        Returns:
            A SampleSet with one row per shot; ``info`` holds success_probability (F over the
            ground manifold), error_estimate, num_steps, tau, schedule and driver.
        """
        if unknown:
            raise ValueError(
                f"QuantumAnnealingSimulator.sample got unknown parameters {sorted(unknown)}; "
                f"accepted: {sorted(self.parameters)}"
            )
        d = len(bqm.variables)
        if d > self._max_num_variables:
            need = required_memory_bytes(d)
            raise ValueError(
                f"QuantumAnnealingSimulator simulates all 2^{d} amplitudes: d={d} needs about "
                f"{need / 2**30:.1f} GiB of memory (and time ∝ 2^d), above its limit of "
                f"{self._max_num_variables} variables. Use a classical sampler ('sa', 'tabu') or "
                "QuantumAnnealingSimulator(max_num_variables=...) if you have the memory."
            )
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if d == 0:
            return dimod.SampleSet.from_samples_bqm(([[]], []), bqm)
        num_reads = d * d if num_reads is None else int(num_reads)
        if num_reads < 1:
            raise ValueError(f"num_reads must be >= 1, got {num_reads}")

        energies, labels = bqm_energies(bqm)
        hamiltonian = AnnealingHamiltonian(energies, driver)
        result = evolve(hamiltonian, schedule, tau, tolerance=tolerance)
        probabilities = np.abs(result.state) ** 2
        probabilities /= probabilities.sum()  # remove the integrator's ~tolerance norm drift
        shots = np.random.default_rng(seed).choice(probabilities.size, size=num_reads, p=probabilities)
        states = index_to_states(shots, d)
        if bqm.vartype is dimod.SPIN:
            states = 2 * states.astype(np.int8) - 1
        info = {
            "success_probability": result.success_probability,
            "error_estimate": result.error_estimate,
            "num_steps": result.num_steps,
            "tau": float(tau),
            "schedule": result.schedule,
            "driver": driver,
        }
        return dimod.SampleSet.from_samples_bqm((states, labels), bqm, info=info)
