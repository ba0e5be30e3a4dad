"""The spectral gap along the anneal, with degeneracy handling, and an adaptive Δ_min.

Gap convention. Let g be the degeneracy of H_P's ground energy (the *final ground manifold*).
The lowest g levels of H(s) connect to that manifold at s = 1, and population moving among them
does not hurt the success probability (summed over the manifold). So the gap we report is to
the first level *outside* it::

    Δ(s) = E_g(s) − E_0(s)          (E_1 − E_0 when the ground state of H_P is unique)

so a degenerate H_P never reads as a zero gap.

Locating Δ_min. Δ on a coarse grid of s (to a loose relative accuracy: it only has to bracket
the minima), then a root of g(s) = Δ(s)·Δ'(s) = ½ d(Δ²)/ds in the bracket around each of the
lowest coarse minima. The slopes cost one product per level with each solve (Hellmann–Feynman,
dE_i/ds = A'(s)⟨H_D⟩_i + B'(s)⟨H_P⟩_i). Near an avoided crossing Δ² ≈ Δ_min² + v²(s − s*)², so g
is nearly linear, g ≈ v²(s − s*), and Brent's root finder needs few solves; its slope at the
root is the crossing speed v² used by the Landau–Zener estimate. A narrow avoided crossing
falling entirely between two coarse points can be missed; raise ``coarse_points`` against it.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional, Union

import numpy as np
from scipy.optimize import brentq

from captum_qubo.annealing.hamiltonian import AnnealingHamiltonian
from captum_qubo.annealing.levels import lowest_levels
from captum_qubo.annealing.schedules import Schedule, get_schedule

# The reported Δ_min is resolved to this relative accuracy (Davidson's gap_rtol); the root
# search's points to REFINE_RTOL, enough for Δ'(s) to locate s* to xatol.
GAP_RTOL = 1e-7
REFINE_RTOL = 1e-6


@dataclass
class GapProfile:
    """The spectrum along the anneal and its minimum gap.

    Attributes:
        s: (n,) sorted points where levels were computed (coarse grid plus refinement).
        levels: (n, g+1) lowest levels E_0..E_g at each s (coarse points other than the
            minimum to ``coarse_rtol`` of their gap, see :func:`minimum_gap`).
        gaps: (n,) Δ(s) = E_g − E_0.
        delta_min: the minimum gap found.
        s_min: where it is.
        ground_degeneracy: g, the degeneracy of H_P's ground energy.
        gap_speed: v = |d(E_a − E_b)/ds| of the two crossing diabatic levels, from the slope of
            ΔΔ' at s_min (Δ² ≈ Δ_min² + v²(s − s_min)²); NaN when s_min is at an end point.
        num_eigensolves: eigensolver calls spent.
    """

    s: np.ndarray
    levels: np.ndarray
    gaps: np.ndarray
    delta_min: float
    s_min: float
    ground_degeneracy: int
    gap_speed: float
    num_eigensolves: int


def minimum_gap(
    hamiltonian: AnnealingHamiltonian,
    schedule: Union[str, Schedule] = "linear",
    coarse_points: int = 17,
    refine_minima: int = 2,
    xatol: float = 1e-4,
    method: str = "auto",
    coarse_rtol: float = 1e-2,
    workers: int = 2,
) -> GapProfile:
    """Δ(s) on a coarse grid, then the root of ΔΔ' around the lowest coarse minima.

    Args:
        hamiltonian: the matrix-free Hamiltonian.
        schedule: schedule name or :class:`Schedule`.
        coarse_points: grid points in s ∈ [0, 1] (≥ 3).
        refine_minima: how many of the lowest coarse local minima to refine (only those within
            1.5× of the lowest coarse value).
        xatol: absolute tolerance on s_min; Δ is quadratic at an interior minimum, so its error
            is ~v²·xatol²/(2Δ_min), far smaller.
        method: eigensolver, see :func:`lowest_levels`.
        coarse_rtol: relative accuracy of Δ at the coarse points (Davidson only), enough to
            bracket the minima. Coarse gaps far above Δ_min early in the anneal, where neither
            basis makes H nearly diagonal, are the expensive solves.
        workers: threads over the coarse grid, 1 or 2: with 2, one walks up from s = 0 and one
            down from s = 1 (each warm-starting from its previous point) until they meet. numpy
            releases the GIL in the products, so two workers use two cores; keep BLAS at one
            thread each.

    Returns:
        A :class:`GapProfile`.
    """
    if coarse_points < 3:
        raise ValueError(f"coarse_points must be >= 3, got {coarse_points}")
    if workers not in (1, 2):
        raise ValueError(f"workers must be 1 or 2, got {workers}")
    schedule = get_schedule(schedule)
    degeneracy = hamiltonian.ground_manifold().size
    if degeneracy >= hamiltonian.dimension:
        raise ValueError("H_P is constant: every state is a ground state and no gap exists")
    num_levels = degeneracy + 1
    computed = {}  # s -> (levels, ΔΔ', relative accuracy they were resolved to)
    coarse_vectors = {}  # coarse s -> eigenvectors, to warm-start the refinement beside it
    refine_warm = [None]

    def solve(s: float, rtol: float, warm: Optional[list] = None) -> tuple:
        s = float(np.clip(s, 0.0, 1.0))
        warm = refine_warm if warm is None else warm
        if s not in computed or computed[s][2] > rtol:
            a, b = map(float, schedule(s))
            levels, vectors = lowest_levels(hamiltonian, a, b, num_levels, method, warm[0], gap_rtol=rtol)
            warm[0] = vectors
            slopes = _level_slopes(hamiltonian, schedule, s, vectors[:, [0, degeneracy]])
            gap = levels[degeneracy] - levels[0]
            computed[s] = (levels, gap * (slopes[1] - slopes[0]), rtol)
        return computed[s]

    def coarse_solve(s: float, warm: list) -> None:
        solve(s, max(coarse_rtol, GAP_RTOL), warm)
        coarse_vectors[float(s)] = warm[0]

    grid = np.linspace(0.0, 1.0, coarse_points)
    _sweep_from_both_ends(grid, coarse_solve, workers)
    coarse = np.array([_gap(computed[float(s)][0], degeneracy) for s in grid])
    padded = np.concatenate([[np.inf], coarse, [np.inf]])
    local_minima = np.flatnonzero((padded[1:-1] <= padded[:-2]) & (padded[1:-1] <= padded[2:]))
    candidates = local_minima[np.argsort(coarse[local_minima])][:refine_minima]
    candidates = candidates[coarse[candidates] <= 1.5 * coarse.min()]
    starts = {i: coarse_vectors[float(grid[i])] for i in candidates}
    coarse_vectors.clear()
    for i in candidates:
        refine_warm[0] = starts.pop(i)
        _refine(grid, i, lambda s, rtol=REFINE_RTOL: solve(s, rtol)[1], xatol)

    while True:  # the reported minimum must be a fully resolved point
        s_points = np.array(sorted(computed))
        gaps = np.array([_gap(computed[s][0], degeneracy) for s in s_points])
        best = int(np.argmin(gaps))
        if computed[s_points[best]][2] <= GAP_RTOL:
            break
        solve(s_points[best], GAP_RTOL)
    s_min, delta_min = float(s_points[best]), float(gaps[best])
    return GapProfile(
        s=s_points,
        levels=np.stack([computed[s][0] for s in s_points]),
        gaps=gaps,
        delta_min=delta_min,
        s_min=s_min,
        ground_degeneracy=int(degeneracy),
        gap_speed=_crossing_speed(
            s_points, np.array([computed[s][1] for s in s_points]), best, window=0.25 / (coarse_points - 1)
        ),
        num_eigensolves=len(computed),
    )


def _gap(levels: np.ndarray, degeneracy: int) -> float:
    return float(levels[degeneracy] - levels[0])


def _level_slopes(hamiltonian: AnnealingHamiltonian, schedule: Schedule, s: float, vectors: np.ndarray) -> np.ndarray:
    """dE_i/ds = A'(s)⟨H_D⟩_i + B'(s)⟨H_P⟩_i for normalised eigenvectors (Hellmann–Feynman)."""
    slope_a, slope_b = schedule.derivative(s)
    driver = hamiltonian.driver_coefficient * np.einsum("ij,ij->j", vectors, hamiltonian.apply_transverse_sum(vectors))
    problem = np.einsum("i,ij->j", hamiltonian.problem_energies, vectors * vectors)
    return slope_a * driver + slope_b * problem


def _refine(grid: np.ndarray, i: int, gap_times_slope: Callable, xatol: float) -> None:
    """Solve ΔΔ' = 0 in the coarse interval beside grid[i] where it changes sign (if any)."""
    at_minimum = gap_times_slope(grid[i])
    if at_minimum < 0.0 and i + 1 < grid.size:  # still falling: the minimum is to the right
        lo, hi = grid[i], grid[i + 1]
    elif at_minimum > 0.0 and i > 0:
        lo, hi = grid[i - 1], grid[i]
    else:  # the minimum is the end point itself (or exactly at grid[i])
        return
    if np.sign(gap_times_slope(lo)) == np.sign(gap_times_slope(hi)):
        return  # coarse accuracy misled the direction; grid[i] stands
    brentq(gap_times_slope, lo, hi, xtol=xatol)


def _crossing_speed(s_points: np.ndarray, gap_times_slope: np.ndarray, best: int, window: float) -> float:
    """v from the slope of ΔΔ' ≈ v²(s − s*), fitted over the points within ``window`` of s_min."""
    if best == 0 or best == s_points.size - 1:
        return float("nan")
    near = np.flatnonzero(np.abs(s_points - s_points[best]) <= window)
    if near.size < 2:
        near = np.array([best - 1, best, best + 1])
    curvature = np.polyfit(s_points[near], gap_times_slope[near], 1)[0]
    return float(np.sqrt(curvature)) if curvature > 0 else float("nan")


def _sweep_from_both_ends(grid: np.ndarray, evaluate: Callable, workers: int) -> None:
    """evaluate(s, warm) at every grid point; with two workers, from both ends toward the middle."""
    remaining = list(grid)
    lock = threading.Lock()

    def walk(from_top: bool) -> None:
        warm = [None]
        while True:
            with lock:
                if not remaining:
                    return
                s = remaining.pop() if from_top else remaining.pop(0)
            evaluate(s, warm)

    if workers == 1:
        walk(from_top=False)
        return
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(walk, False), pool.submit(walk, True)]:
            future.result()
