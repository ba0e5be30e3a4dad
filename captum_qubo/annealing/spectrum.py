"""Lowest levels of H(s), the spectral gap with degeneracy handling, and an adaptive Δ_min.

Gap convention. Let g be the degeneracy of H_P's ground energy (the *final ground manifold*).
The lowest g levels of H(s) connect to that manifold at s = 1, and population moving among them
does not hurt the success probability (summed over the manifold). So the gap we report is to
the first level *outside* it::

    Δ(s) = E_g(s) − E_0(s)          (E_1 − E_0 when the ground state of H_P is unique)

so a degenerate H_P never reads as a zero gap. Δ_min = min_s Δ(s) is located adaptively: Δ on a
coarse grid of s, then bounded scalar minimisation (Brent) on the bracket around each of the
lowest coarse local minima. A narrow avoided crossing falling entirely between two coarse
points can be missed; raise ``coarse_points`` to guard against it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.sparse.linalg import LinearOperator, eigsh

from captum_qubo.annealing.hamiltonian import AnnealingHamiltonian
from captum_qubo.annealing.schedules import Schedule, get_schedule

# Below this dimension the dense eigensolver is faster than Lanczos and always exact.
DENSE_DIMENSION_LIMIT = 256


def lowest_levels(
    hamiltonian: AnnealingHamiltonian,
    a: float,
    b: float,
    num_levels: int,
    method: str = "auto",
    start_vector: Optional[np.ndarray] = None,
) -> tuple:
    """The num_levels lowest eigenvalues (ascending) and eigenvectors of a H_D + b H_P.

    Args:
        hamiltonian: the matrix-free Hamiltonian.
        a, b: schedule values A(s), B(s).
        num_levels: how many levels to return.
        method: ``"lanczos"`` (ARPACK eigsh on a real LinearOperator), ``"dense"`` (numpy eigh
            on the matrix assembled column by column from the matrix-free product; small d
            only) or ``"auto"`` (dense below 256 states).
        start_vector: Lanczos start vector (e.g. the previous ground state) to speed it up.

    Returns:
        (levels (num_levels,), vectors (2^d, num_levels)).
    """
    n = hamiltonian.dimension
    if method not in ("auto", "dense", "lanczos"):
        raise ValueError(f"method must be 'auto', 'dense' or 'lanczos', got {method!r}")
    if method == "dense" or (method == "auto" and n <= DENSE_DIMENSION_LIMIT) or num_levels >= n - 1:
        levels, vectors = np.linalg.eigh(hamiltonian.apply(a, b, np.eye(n)))
        return levels[:num_levels], vectors[:, :num_levels]
    operator = LinearOperator((n, n), matvec=lambda v: hamiltonian.apply(a, b, v.reshape(-1)), dtype=np.float64)
    levels, vectors = eigsh(operator, k=num_levels, which="SA", v0=start_vector, tol=1e-9)
    order = np.argsort(levels)
    return levels[order], vectors[:, order]


@dataclass
class GapProfile:
    """The spectrum along the anneal and its minimum gap.

    Attributes:
        s: (n,) sorted points where levels were computed (coarse grid plus refinement).
        levels: (n, g+1) lowest levels E_0..E_g at each s.
        gaps: (n,) Δ(s) = E_g − E_0.
        delta_min: the minimum gap found.
        s_min: where it is.
        ground_degeneracy: g, the degeneracy of H_P's ground energy.
        gap_speed: v = |d(E_a − E_b)/ds| of the two crossing diabatic levels, from the curvature
            of Δ² at s_min (Δ² ≈ Δ_min² + v²(s − s_min)²); NaN when s_min is at an end point.
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
    xatol: float = 1e-3,
    method: str = "auto",
) -> GapProfile:
    """Δ(s) on a coarse grid, then Brent refinement around the lowest coarse minima.

    Args:
        hamiltonian: the matrix-free Hamiltonian.
        schedule: schedule name or :class:`Schedule`.
        coarse_points: grid points in s ∈ [0, 1] (≥ 3).
        refine_minima: how many of the lowest coarse local minima to refine (only those within
            1.5× of the lowest coarse value).
        xatol: absolute tolerance on s_min; Δ is quadratic at an interior minimum, so its error
            is ~v²·xatol²/(2Δ_min), far smaller.
        method: eigensolver, see :func:`lowest_levels`.

    Returns:
        A :class:`GapProfile`.
    """
    if coarse_points < 3:
        raise ValueError(f"coarse_points must be >= 3, got {coarse_points}")
    schedule = get_schedule(schedule)
    degeneracy = hamiltonian.ground_manifold().size
    if degeneracy >= hamiltonian.dimension:
        raise ValueError("H_P is constant: every state is a ground state and no gap exists")
    num_levels = degeneracy + 1
    computed = {}
    last_vector = [None]

    def gap_at(s: float) -> float:
        s = float(np.clip(s, 0.0, 1.0))
        if s not in computed:
            a, b = schedule(s)
            levels, vectors = lowest_levels(hamiltonian, float(a), float(b), num_levels, method, last_vector[0])
            last_vector[0] = vectors[:, 0]
            computed[s] = levels
        levels = computed[s]
        return float(levels[degeneracy] - levels[0])

    grid = np.linspace(0.0, 1.0, coarse_points)
    coarse = np.array([gap_at(s) for s in grid])
    padded = np.concatenate([[np.inf], coarse, [np.inf]])
    local_minima = np.flatnonzero((padded[1:-1] <= padded[:-2]) & (padded[1:-1] <= padded[2:]))
    candidates = local_minima[np.argsort(coarse[local_minima])][:refine_minima]
    for i in candidates[coarse[candidates] <= 1.5 * coarse.min()]:
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, coarse_points - 1)]
        minimize_scalar(gap_at, bounds=(lo, hi), method="bounded", options={"xatol": xatol})

    s_points = np.array(sorted(computed))
    levels = np.stack([computed[s] for s in s_points])
    gaps = levels[:, degeneracy] - levels[:, 0]
    best = int(np.argmin(gaps))
    s_min, delta_min = float(s_points[best]), float(gaps[best])
    gap_speed = _crossing_speed(gap_at, s_min, delta_min, step=0.25 / (coarse_points - 1))
    return GapProfile(
        s=s_points,
        levels=levels,
        gaps=gaps,
        delta_min=delta_min,
        s_min=s_min,
        ground_degeneracy=int(degeneracy),
        gap_speed=gap_speed,
        num_eigensolves=len(computed) + 2 * np.isfinite(gap_speed),
    )


def _crossing_speed(gap_at, s_min: float, delta_min: float, step: float) -> float:
    """v from Δ(s)² ≈ Δ_min² + v² (s − s_min)² by a central second difference."""
    if s_min - step < 0.0 or s_min + step > 1.0:
        return float("nan")
    curvature = (gap_at(s_min + step) ** 2 + gap_at(s_min - step) ** 2 - 2.0 * delta_min**2) / (2.0 * step**2)
    return float(np.sqrt(curvature)) if curvature > 0 else float("nan")
