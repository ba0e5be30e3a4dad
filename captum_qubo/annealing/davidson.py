"""Lowest eigenpairs of a symmetric matrix from its product and a preconditioner: block Davidson.

Why not ARPACK. Near the end of the anneal H(s) = A H_D + B H_P is dominated by its diagonal
B H_P and the gaps we need are tiny next to the spectral width (‖H_P‖ grows like d²); Lanczos then
needs hundreds of products per level. Davidson's correction M⁻¹r with M = D − θ, D the diagonal,
is nearly a shift-invert step there, so a few products per level suffice. Early in the anneal
the driver dominates and is diagonal in the Hadamard basis, so the same correction taken in
that basis works (see :func:`captum_qubo.annealing.levels.davidson_preconditioner`). We use
Olsen's form of the correction, which removes its component along the Ritz vector (otherwise a
near-exact preconditioner just returns that vector and the iteration stalls), and thick
restarts that keep the current Ritz vectors.

Convergence is declared on the residuals of the wanted pairs only: ‖H x_i − θ_i x_i‖ ≤ tol for
i < num_levels. For a symmetric matrix each θ_i is then within tol of an eigenvalue, and within
tol²/δ_i where δ_i separates it from the rest of the spectrum. Extra ``guard`` vectors stay in
the basis so that the last wanted level does not settle on the wrong side of a near-degenerate
cluster.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

# Correction columns whose norm falls below this share after orthogonalisation add nothing new.
_DROP_RATIO = 1e-8


def _column_norms(block: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->j", block, block))


def _orthonormal_extension(basis: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Orthonormal columns spanning candidates' part orthogonal to ``basis``; dependent ones dropped.

    Block classical Gram–Schmidt against the basis, repeated once when a pass removed most of
    a column (Kahan's "twice is enough" test: its norm fell below 1/√2 of what it was), then
    Gram–Schmidt among the few candidates themselves (one per unconverged level). Each pass
    reads the whole basis, which is what a Davidson iteration mostly costs.
    """
    candidates = np.array(candidates, dtype=np.float64, order="F", copy=True)
    norms_before = _column_norms(candidates)
    norms = norms_before
    for _ in range(2):
        if not basis.shape[1]:
            break
        previous = norms
        candidates -= basis @ (basis.T @ candidates)
        norms = _column_norms(candidates)
        if np.all(norms >= previous / np.sqrt(2.0)):
            break
    accepted = []
    for column, norm_before in zip(candidates.T, norms_before):
        for other in accepted:
            column = column - (other @ column) * other
        norm = np.sqrt(column @ column)
        if norm > _DROP_RATIO * norm_before and norm > 0.0:
            accepted.append(column / norm)
    if not accepted:
        return np.empty((basis.shape[0], 0))
    return np.stack(accepted, axis=1)


def davidson_lowest(
    matmat: Callable[[np.ndarray], np.ndarray],
    preconditioner: Callable[[np.ndarray, np.ndarray], np.ndarray],
    num_levels: int,
    dimension: int,
    start: Optional[np.ndarray] = None,
    tol: float = 1e-8,
    gap_rtol: float = 0.0,
    guard: int = 2,
    max_basis: Optional[int] = None,
    max_iterations: int = 1000,
    seed: int = 0,
) -> tuple:
    """The ``num_levels`` lowest eigenpairs of the symmetric matrix H.

    Args:
        matmat: H · X for an (n, m) block X.
        preconditioner: (V, θ) ↦ columns M_j⁻¹ v_j with M_j ≈ H − θ_j, e.g.
            :func:`diagonal_preconditioner`.
        num_levels: wanted pairs.
        dimension: n, the size of H.
        start: (n, m) initial guesses (e.g. the eigenvectors at a nearby s); topped up with
            seeded random columns to num_levels + guard.
        tol: bound on each wanted residual norm ‖H x − θ x‖₂ (absolute).
        gap_rtol: also accept residuals up to gap_rtol × (θ_last − θ_0), the spread of the wanted
            levels: each θ_i is within its residual of an eigenvalue, so the spread is then known
            to that relative accuracy even where the last level sits in a near-degenerate cluster
            (which converges slowly and matters little).
        guard: extra vectors carried beyond the wanted ones.
        max_basis: basis size that triggers a thick restart (default 6 × block).
        max_iterations: give up (RuntimeError) after this many expansions.
        seed: seed of the random start columns (same seed, same result).

    Returns:
        (levels (num_levels,) ascending, vectors (n, num_levels), products): products counts the
        columns multiplied by H.
    """
    n = dimension
    block = min(num_levels + guard, n)
    max_basis = min(max(max_basis or 6 * block, 2 * block), n)
    rng = np.random.default_rng(seed)
    guesses = np.empty((n, 0)) if start is None else np.asarray(start, dtype=np.float64).reshape(n, -1)[:, :block]
    if guesses.shape[1] < block:
        guesses = np.hstack([guesses, rng.standard_normal((n, block - guesses.shape[1]))])
    # Preallocated basis V, products HV and projection VᵀHV; columns [0, size) are in use.
    # Column-major, so that a column and a leading block of columns are contiguous.
    basis = np.empty((n, max_basis + block), order="F")
    products_block = np.empty_like(basis, order="F")
    projected = np.empty((max_basis + block, max_basis + block))
    size, products = 0, 0
    new = _orthonormal_extension(basis[:, :0], guesses)
    for _ in range(max_iterations):
        added = new.shape[1]
        basis[:, size : size + added] = new
        products_block[:, size : size + added] = matmat(new)
        products += added
        size += added
        projected[:size, size - added : size] = basis[:, :size].T @ products_block[:, size - added : size]
        projected[size - added : size, :size] = projected[:size, size - added : size].T
        theta, coefficients = np.linalg.eigh(projected[:size, :size])
        # Only the wanted pairs are formed each iteration; the guard vectors live on in the basis.
        wanted = coefficients[:, :num_levels]
        ritz = basis[:, :size] @ wanted
        residuals = products_block[:, :size] @ wanted - ritz * theta[:num_levels]
        norms = _column_norms(residuals)
        if np.all(norms <= max(tol, gap_rtol * (theta[num_levels - 1] - theta[0]))):
            return theta[:num_levels], ritz, products
        active = np.flatnonzero(norms > tol)
        corrections = _olsen_corrections(preconditioner, theta[active], ritz[:, active], residuals[:, active])
        if size + active.size > max_basis:  # thick restart on the lowest ``block`` Ritz vectors
            kept = min(block, size)
            basis[:, :kept] = basis[:, :size] @ coefficients[:, :kept]
            products_block[:, :kept] = products_block[:, :size] @ coefficients[:, :kept]
            projected[:kept, :kept] = np.diag(theta[:kept])
            size = kept
        new = _orthonormal_extension(basis[:, :size], corrections)
        if new.shape[1] == 0:  # the corrections lie in the basis: add a fresh direction instead
            new = _orthonormal_extension(basis[:, :size], rng.standard_normal((n, 1)))
    raise RuntimeError(
        f"Davidson did not reach residual {tol:g} for {num_levels} levels in {max_iterations} iterations "
        f"(residuals {norms[:num_levels]}); loosen tol or raise max_iterations"
    )


def diagonal_preconditioner(diagonal: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Davidson's M_j = D − θ_j for a diagonal D, kept invertible where an entry equals θ_j."""
    floor = 1e-12 * max(1.0, float(np.abs(diagonal).max()))

    def apply(vectors: np.ndarray, theta: np.ndarray) -> np.ndarray:
        shifted = diagonal[:, None] - theta[None, :]
        shifted[shifted == 0.0] = floor  # a huge entry only points the correction at that state
        return vectors / shifted

    return apply


def _olsen_corrections(preconditioner, theta, ritz, residuals):
    """t = M⁻¹r − ε M⁻¹x with ε chosen so that xᵀ t = 0 (per column)."""
    inverse_r, inverse_x = preconditioner(residuals, theta), preconditioner(ritz, theta)
    epsilon = np.einsum("ij,ij->j", ritz, inverse_r) / np.einsum("ij,ij->j", ritz, inverse_x)
    return inverse_r - epsilon * inverse_x
