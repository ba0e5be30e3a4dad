"""Block Davidson against numpy eigh on matrices with known spectra (dense, small)."""
import numpy as np
import pytest
from scipy.sparse.linalg import LinearOperator, eigsh
from threadpoolctl import threadpool_limits

from captum_qubo.annealing.davidson import davidson_lowest, diagonal_preconditioner


@pytest.fixture(autouse=True)
def single_blas_thread():
    with threadpool_limits(limits=1):
        yield


def symmetric_with_spectrum(eigenvalues, seed):
    """Q diag(λ) Qᵀ for a random orthogonal Q: the spectrum is known exactly, not computed."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(eigenvalues.size, eigenvalues.size)))
    return (q * eigenvalues) @ q.T


def solve(matrix, num_levels, **kwargs):
    return davidson_lowest(
        lambda block: matrix @ block, diagonal_preconditioner(np.diag(matrix).copy()), num_levels, matrix.shape[0], **kwargs
    )


@pytest.mark.parametrize("num_levels", [1, 2, 3])
def test_lowest_levels_of_a_matrix_with_known_spectrum(num_levels):
    eigenvalues = np.concatenate([[-3.0, -2.5, -2.4], np.linspace(-2.0, 5.0, 297)])
    matrix = symmetric_with_spectrum(eigenvalues, seed=num_levels)
    levels, vectors, products = solve(matrix, num_levels, tol=1e-10)
    np.testing.assert_allclose(levels, eigenvalues[:num_levels], atol=1e-9)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(num_levels), atol=1e-10)
    np.testing.assert_allclose(matrix @ vectors, vectors * levels, atol=1e-9)
    assert 0 < products


def test_diagonally_dominant_matrix_converges_in_few_products():
    # The regime late in the anneal: a spread diagonal and a weak coupling.
    rng = np.random.default_rng(0)
    n = 400
    coupling = rng.normal(size=(n, n)) * 1e-3
    matrix = np.diag(np.sort(rng.uniform(0, 10, n))) + coupling + coupling.T
    exact = np.linalg.eigvalsh(matrix)[:2]
    start = np.zeros((n, 4))
    start[np.argsort(np.diag(matrix))[:4], np.arange(4)] = 1.0  # Davidson's classic start
    levels, _, products = solve(matrix, 2, tol=1e-10, start=start)
    np.testing.assert_allclose(levels, exact, atol=1e-10)
    lanczos_products = []
    operator = LinearOperator((n, n), matvec=lambda v: lanczos_products.append(1) or matrix @ v, dtype=float)
    np.testing.assert_allclose(np.sort(eigsh(operator, k=2, which="SA", tol=1e-12, return_eigenvectors=False)), exact)
    assert 4 * products < len(lanczos_products)  # the point of preconditioning


def test_degenerate_ground_space_and_gap_rtol():
    eigenvalues = np.concatenate([[-1.0, -1.0, -0.5, -0.5 + 1e-7], np.linspace(0.0, 3.0, 196)])
    matrix = symmetric_with_spectrum(eigenvalues, seed=5)
    levels, _, _ = solve(matrix, 3, tol=1e-10)
    np.testing.assert_allclose(levels, eigenvalues[:3], atol=1e-9)
    # A loose gap_rtol still gets the spread to that relative accuracy.
    levels, _, _ = solve(matrix, 3, tol=1e-12, gap_rtol=1e-4)
    assert levels[2] - levels[0] == pytest.approx(0.5, rel=3e-4)


def test_warm_start_and_seed_reproducibility():
    eigenvalues = np.linspace(-1.0, 1.0, 200) ** 3
    matrix = symmetric_with_spectrum(eigenvalues, seed=2)
    cold = solve(matrix, 2, tol=1e-10, seed=7)
    again = solve(matrix, 2, tol=1e-10, seed=7)
    np.testing.assert_array_equal(cold[0], again[0])
    warm = solve(matrix, 2, tol=1e-10, start=cold[1])
    np.testing.assert_allclose(warm[0], eigenvalues[:2], atol=1e-9)
    assert warm[2] < cold[2]


def test_non_convergence_says_what_to_change():
    matrix = symmetric_with_spectrum(np.linspace(0.0, 1.0, 300), seed=3)
    with pytest.raises(RuntimeError, match="max_iterations"):
        solve(matrix, 2, tol=1e-14, max_iterations=2)
