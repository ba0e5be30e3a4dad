"""Time evolution |ψ(τ)⟩ under H(t/τ) with a 4th-order splitting integrator and error control.

Integrator. Over a step [t, t+h] the Strang map with the schedule at the midpoint,
S2(t, h) = e^{−i(h/2) B H_P} e^{−ih A H_D} e^{−i(h/2) B H_P} (A, B at s = (t + h/2)/τ), is
symmetric and 2nd order; Suzuki's 5-stage composition S2(p h) S2(p h) S2((1−4p) h) S2(p h) S2(p h),
p = 1/(4 − 4^{1/3}), makes it 4th order. Both factors are exact and cheap: e^{−iθH_P} is a
diagonal phase, e^{−iθH_D} a product of single-qubit rotations (applied blockwise). Unlike a
Krylov or Runge–Kutta method, the step is not limited by ‖H_P‖, which grows like d². Adjacent
diagonal phases are merged, so a step costs 5 driver rotations and 5 phases.

Error control (step doubling). The whole anneal is run with n and with 2n steps; with global
error ∝ n^−4 the error of the 2n-step state is estimated (Richardson) as ‖ψ_2n − ψ_n‖ / 15. If
it exceeds ``tolerance``, n is raised to what this error model predicts (×1.2 safety, at least
doubled) and the pair is run again; a doubling reuses the previous fine run. The estimate is returned with the state; the tests check it
against a dense-matrix reference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from captum_qubo.annealing.hamiltonian import AnnealingHamiltonian
from captum_qubo.annealing.schedules import Schedule, get_schedule

ORDER = 4
_SUZUKI_P = 1.0 / (4.0 - 4.0 ** (1.0 / 3.0))
STAGE_FRACTIONS = np.array([_SUZUKI_P, _SUZUKI_P, 1.0 - 4.0 * _SUZUKI_P, _SUZUKI_P, _SUZUKI_P])


@dataclass
class EvolutionResult:
    """Outcome of one anneal.

    Attributes:
        state: (2^d,) complex final state ψ(τ).
        tau: annealing time.
        schedule: schedule name.
        num_steps: 4th-order steps used for ``state``.
        error_estimate: Richardson estimate of ‖ψ(τ) − ψ_exact(τ)‖₂.
        tolerance: requested bound on error_estimate.
        converged: error_estimate ≤ tolerance.
        ground_indices: state indices of H_P's ground manifold.
        success_probability: F = Σ_{x in ground manifold} |ψ_x(τ)|².
        total_steps: steps spent over all trial runs (the cost of the error control).
    """

    state: np.ndarray
    tau: float
    schedule: str
    num_steps: int
    error_estimate: float
    tolerance: float
    converged: bool
    ground_indices: np.ndarray
    success_probability: float
    total_steps: int


def success_probability(state: np.ndarray, ground_indices: np.ndarray) -> float:
    """Σ over the ground manifold of |ψ_x|²."""
    return float(np.sum(np.abs(state[np.asarray(ground_indices)]) ** 2))


def propagate(
    hamiltonian: AnnealingHamiltonian,
    schedule: Union[str, Schedule],
    tau: float,
    num_steps: int,
    state: Optional[np.ndarray] = None,
) -> np.ndarray:
    """ψ(τ) with a fixed number of 4th-order splitting steps (no error control).

    Args:
        hamiltonian: the matrix-free Hamiltonian.
        schedule: schedule name or :class:`Schedule`.
        tau: annealing time (s = t/τ).
        num_steps: equal steps of size τ / num_steps.
        state: initial state; the ground state of H_D by default.

    Returns:
        (2^d,) complex128 final state.
    """
    schedule = get_schedule(schedule)
    if tau <= 0 or num_steps < 1:
        raise ValueError(f"need tau > 0 and num_steps >= 1, got tau={tau}, num_steps={num_steps}")
    psi = hamiltonian.initial_state() if state is None else np.array(state, dtype=np.complex128)
    step = tau / num_steps
    # Start time and length of every Strang stage, in order; stage lengths may be negative.
    lengths = np.tile(STAGE_FRACTIONS * step, num_steps)
    starts = np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    a_mid, b_mid = schedule((starts + 0.5 * lengths) / tau)
    pending_phase = 0.0
    for length, a, b in zip(lengths, a_mid, b_mid):
        pending_phase += 0.5 * b * length
        psi = hamiltonian.problem_propagator(pending_phase, psi)
        psi = hamiltonian.driver_propagator(a * length, psi)
        pending_phase = 0.5 * b * length
    return hamiltonian.problem_propagator(pending_phase, psi)


def evolve(
    hamiltonian: AnnealingHamiltonian,
    schedule: Union[str, Schedule] = "linear",
    tau: float = 10.0,
    tolerance: float = 1e-5,
    initial_steps: Optional[int] = None,
    max_steps: int = 100_000,
    initial_state: Optional[np.ndarray] = None,
) -> EvolutionResult:
    """Anneal (from the ground state of H_D by default) with the final-state error controlled to ``tolerance``.

    Args:
        hamiltonian: the matrix-free Hamiltonian.
        schedule: schedule name or :class:`Schedule`.
        tau: annealing time.
        tolerance: target for the estimated 2-norm error of ψ(τ).
        initial_steps: steps of the first (coarsest) run; default max(4, ⌈τ/4⌉).
        max_steps: give up refining beyond this (the result then has converged=False).
        initial_state: start here instead of the ground state of H_D.

    Returns:
        An :class:`EvolutionResult`.
    """
    if tolerance <= 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    schedule = get_schedule(schedule)
    steps = initial_steps or max(4, math.ceil(tau / 4.0))
    coarse = propagate(hamiltonian, schedule, tau, steps, initial_state)
    total = steps
    while True:
        fine = propagate(hamiltonian, schedule, tau, 2 * steps, initial_state)
        total += 2 * steps
        # Richardson with step ratio 2: error(fine) ≈ ‖fine − coarse‖ / (2⁴ − 1).
        error = float(np.linalg.norm(fine - coarse)) / (2.0**ORDER - 1.0)
        if error <= tolerance or 2 * steps >= max_steps:
            break
        # The n^-4 model's prediction (×1.2 safety) for the fine run, but at least a doubling.
        needed = 2 * steps * (error / tolerance) ** (1.0 / ORDER) * 1.2
        next_steps = min(max_steps // 2, max(2 * steps, math.ceil(needed / 2)))
        if next_steps == 2 * steps:
            coarse = fine
        else:
            coarse = propagate(hamiltonian, schedule, tau, next_steps, initial_state)
            total += next_steps
        steps = next_steps
    ground = hamiltonian.ground_manifold()
    return EvolutionResult(
        state=fine,
        tau=float(tau),
        schedule=schedule.name,
        num_steps=2 * steps,
        error_estimate=error,
        tolerance=float(tolerance),
        converged=error <= tolerance,
        ground_indices=ground,
        success_probability=success_probability(fine, ground),
        total_steps=total,
    )
