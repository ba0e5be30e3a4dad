"""The lowest levels of a H_D + b H_P: dense, ARPACK Lanczos, or preconditioned Davidson.

Davidson is the default above 64 states (dense eigh, faster below). Its preconditioner is the
diagonal of H in whichever basis H is closer to diagonal — the Hadamard basis (where the driver is diagonal)
early in the anneal, the computational basis late — so both ends of the anneal converge in a
few products; see :mod:`captum_qubo.annealing.davidson`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

from captum_qubo.annealing.davidson import davidson_lowest, diagonal_preconditioner
from captum_qubo.annealing.hamiltonian import AnnealingHamiltonian

# Below this dimension the dense eigensolver is faster than iterative ones and always exact.
DENSE_DIMENSION_LIMIT = 64
# Davidson stops at residual norms of this times max(1, a bound on ‖H‖).
RESIDUAL_TOLERANCE = 1e-9
# Vectors carried beyond the wanted levels by Davidson.
DAVIDSON_GUARD = 2


def lowest_levels(
    hamiltonian: AnnealingHamiltonian,
    a: float,
    b: float,
    num_levels: int,
    method: str = "auto",
    start_vectors: Optional[np.ndarray] = None,
    gap_rtol: float = 0.0,
) -> tuple:
    """The num_levels lowest eigenvalues (ascending) and eigenvectors of a H_D + b H_P.

    Args:
        hamiltonian: the matrix-free Hamiltonian.
        a, b: schedule values A(s), B(s).
        num_levels: how many levels to return.
        method: ``"davidson"`` (:func:`davidson_lowest`, preconditioned in whichever basis
            H is closer to diagonal, see :func:`davidson_preconditioner`), ``"lanczos"``
            (ARPACK eigsh on a LinearOperator), ``"dense"`` (numpy eigh on the matrix
            assembled from the matrix-free product; small d only) or ``"auto"`` (dense below
            64 states, Davidson above).
        start_vectors: (2^d,) or (2^d, m) initial guesses, e.g. the levels' vectors at a
            nearby s (Lanczos uses the first column).
        gap_rtol: Davidson only: also accept residuals up to gap_rtol × (E_last − E_0); the
            spread E_last − E_0 is then exact to that relative accuracy while a last level
            inside a near-degenerate cluster is not resolved further.

    Returns:
        (levels (num_levels,), vectors (2^d, num_levels)). Davidson stops at residual norms
        ‖Hx − Ex‖ ≤ RESIDUAL_TOLERANCE · max(1, bound on ‖H‖), so each level is within that
        of an exact eigenvalue (and within its square over the level spacing).
    """
    n = hamiltonian.dimension
    if method not in ("auto", "dense", "lanczos", "davidson"):
        raise ValueError(f"method must be 'auto', 'dense', 'lanczos' or 'davidson', got {method!r}")
    if method == "dense" or (method == "auto" and n <= DENSE_DIMENSION_LIMIT) or num_levels >= n - 1:
        levels, vectors = np.linalg.eigh(hamiltonian.apply(a, b, np.eye(n)))
        return levels[:num_levels], vectors[:, :num_levels]
    if start_vectors is not None:
        start_vectors = np.asarray(start_vectors, dtype=np.float64).reshape(n, -1)
    if method == "lanczos":
        operator = LinearOperator((n, n), matvec=lambda v: hamiltonian.apply(a, b, v.reshape(-1)), dtype=np.float64)
        start = None if start_vectors is None else start_vectors[:, 0]
        levels, vectors = eigsh(operator, k=num_levels, which="SA", v0=start, tol=1e-9)
        order = np.argsort(levels)
        return levels[order], vectors[:, order]
    norm_bound = abs(a * hamiltonian.driver_coefficient) * hamiltonian.num_qubits + abs(b) * np.abs(
        hamiltonian.problem_energies
    ).max()
    preconditioner, cold_start = davidson_preconditioner(hamiltonian, a, b)
    levels, vectors, _ = davidson_lowest(
        lambda block: hamiltonian.apply(a, b, block),
        preconditioner,
        num_levels,
        n,
        start=cold_start(num_levels + DAVIDSON_GUARD) if start_vectors is None else start_vectors,
        guard=DAVIDSON_GUARD,
        tol=RESIDUAL_TOLERANCE * max(1.0, norm_bound),
        gap_rtol=gap_rtol,
    )
    return levels, vectors


def davidson_preconditioner(hamiltonian: AnnealingHamiltonian, a: float, b: float) -> tuple:
    """Diagonal preconditioner and cold-start vectors for a H_D + b H_P, in the basis where it is closer to diagonal.

    In the computational basis the diagonal is b·E and the rest is a H_D (norm |a c| d); in
    the Hadamard basis (where H_D is diagonal) it is a c (d − 2|y|) + b·mean(E) and the rest is
    b (E − mean E). The basis whose remainder has the smaller norm wins: the Hadamard one early
    in the anneal, the computational one late. The start vectors are that basis's states with
    the lowest diagonal entries (Davidson's classic start; exact at s = 0 and s = 1).

    Returns:
        (preconditioner for :func:`davidson_lowest`, function k ↦ (2^d, k) start vectors).
    """
    energies = hamiltonian.problem_energies
    mean_energy = float(energies.mean())
    driver_remainder = abs(a * hamiltonian.driver_coefficient) * hamiltonian.num_qubits
    problem_remainder = abs(b) * float(np.abs(energies - mean_energy).max())
    if driver_remainder <= problem_remainder:
        diagonal = b * energies
        to_basis = from_basis = lambda vectors: vectors  # noqa: E731
        preconditioner = diagonal_preconditioner(diagonal)
    else:
        diagonal = a * hamiltonian.driver_basis_diagonal() + b * mean_energy
        to_basis = from_basis = hamiltonian.hadamard_transform
        in_driver_basis = diagonal_preconditioner(diagonal)
        preconditioner = lambda vectors, theta: from_basis(in_driver_basis(to_basis(vectors), theta))  # noqa: E731

    def start_vectors(count: int) -> np.ndarray:
        lowest = np.argsort(diagonal, kind="stable")[:count]
        units = np.zeros((diagonal.size, lowest.size), order="F")
        units[lowest, np.arange(lowest.size)] = 1.0
        return from_basis(units)

    return preconditioner, start_vectors
