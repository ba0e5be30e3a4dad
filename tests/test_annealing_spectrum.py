"""Matrix-free H(s), its levels and the adaptive minimum gap against dense numpy on real digits QUBOs."""
from functools import reduce

import numpy as np
import pytest
from threadpoolctl import threadpool_limits
import torch

from captum_qubo.annealing import AnnealingHamiltonian, get_schedule, lowest_levels, minimum_gap
from captum_qubo.formulation.qubo import build_feature_map_qubo

PAULI_X = np.array([[0.0, 1.0], [1.0, 0.0]])


@pytest.fixture(autouse=True)
def single_blas_thread():
    """Dense references call BLAS on tiny matrices; threads only oversubscribe the CI cores."""
    with threadpool_limits(limits=1):
        yield


def dense_hamiltonian(energies, coefficient, a, b):
    """a·coefficient·Σσx + b·diag(energies) by Kronecker products (qubit 0 rightmost)."""
    d = int(np.log2(energies.size))
    driver = sum(
        reduce(np.kron, [PAULI_X if q == p else np.eye(2) for q in reversed(range(d))]) for p in range(d)
    )
    return a * coefficient * driver + b * np.diag(energies)


def brute_force_energies(qubo):
    """QUBO energy of every bitstring from FeatureMapQubo.energies (index bit p = variable p)."""
    d = qubo.num_variables
    bits = (np.arange(1 << d)[:, None] >> np.arange(d)) & 1
    return qubo.energies(bits)


@pytest.fixture(scope="module")
def digits_qubos():
    """Real QUBOs: α and maps of model.reduce of the digits CNN on correctly classified test images."""
    zoo = pytest.importorskip("captum_qubo.zoo")
    from captum._utils.gradient import compute_layer_gradients_and_eval

    model = zoo.train_digits_cnn(num_filters=16)
    _, _, x_test, y_test = zoo.load_digits_split()
    with torch.no_grad():
        correct = model(x_test[:40]).argmax(1) == y_test[:40]
    images, labels = x_test[:40][correct][:6], y_test[:40][correct][:6]
    grads, maps = compute_layer_gradients_and_eval(model, model.reduce, images, target_ind=labels)
    alpha = grads[0].mean(dim=(2, 3)).detach().numpy()
    qubos = [build_feature_map_qubo(a, m) for a, m in zip(alpha, maps[0].detach().numpy())]
    return [q for q in qubos if 2 <= q.num_variables <= 10]


def random_qubo(d, seed):
    rng = np.random.default_rng(seed)
    return build_feature_map_qubo(rng.random(d) + 0.05, rng.normal(size=(d, 4, 4)))


@pytest.mark.parametrize("driver", ["standard", "paper"])
@pytest.mark.parametrize("d", [1, 3, 6])
def test_matrix_free_product_equals_dense_kronecker_matrix(driver, d):
    energies = brute_force_energies(random_qubo(d, seed=d))
    hamiltonian = AnnealingHamiltonian.from_qubo(random_qubo(d, seed=d), driver)
    np.testing.assert_allclose(hamiltonian.problem_energies, energies, atol=1e-12)
    coefficient = -1.0 if driver == "standard" else 1.0 / d
    dense = dense_hamiltonian(energies, coefficient, 0.3, 0.8)
    vectors = np.random.default_rng(0).normal(size=(1 << d, 3))
    np.testing.assert_allclose(hamiltonian.apply(0.3, 0.8, vectors), dense @ vectors, atol=1e-12)
    initial = hamiltonian.initial_state()
    assert initial @ dense_hamiltonian(energies, coefficient, 1.0, 0.0) @ initial == pytest.approx(
        np.linalg.eigvalsh(dense_hamiltonian(energies, coefficient, 1.0, 0.0))[0]
    )


@pytest.mark.parametrize("iterative", ["lanczos", "davidson"])
def test_iterative_levels_equal_dense_eigh_on_digits_qubos(digits_qubos, iterative):
    assert digits_qubos, "the digits model gave no QUBO with 2..10 variables"
    schedule = get_schedule("linear")
    for qubo in digits_qubos:
        energies = brute_force_energies(qubo)
        hamiltonian = AnnealingHamiltonian(energies, "paper")
        # Early points take Davidson's Hadamard-basis preconditioner, late ones the computational one.
        for s in (0.0, 0.1, 0.37, 0.81, 0.97, 1.0):
            a, b = map(float, schedule(s))
            dense = dense_hamiltonian(energies, 1.0 / qubo.num_variables, a, b)
            dense_levels = np.linalg.eigvalsh(dense)[:3]
            method = iterative if energies.size > 8 else "dense"
            levels, vectors = lowest_levels(hamiltonian, a, b, 3, method=method)
            np.testing.assert_allclose(levels, dense_levels, atol=1e-8)
            np.testing.assert_allclose(dense @ vectors, vectors * levels, atol=1e-7)


def test_hadamard_transform_diagonalises_the_driver():
    from scipy.linalg import hadamard

    d = 7
    hamiltonian = AnnealingHamiltonian(np.random.default_rng(0).normal(size=1 << d), "paper")
    identity = np.eye(1 << d)
    transform = hamiltonian.hadamard_transform(identity)
    np.testing.assert_allclose(transform, hadamard(1 << d) / np.sqrt(1 << d), atol=1e-14)
    driver = dense_hamiltonian(np.zeros(1 << d), 1.0 / d, 1.0, 0.0)
    np.testing.assert_allclose(transform @ driver @ transform, np.diag(hamiltonian.driver_basis_diagonal()), atol=1e-13)


def dense_gap_curve(energies, coefficient, s_grid, schedule="linear"):
    """E_g − E_0 on a fine grid by dense eigh, g = degeneracy of min(energies)."""
    degeneracy = int(np.sum(energies <= energies.min() + 1e-9))
    a_values, b_values = get_schedule(schedule)(s_grid)
    gaps = []
    for a, b in zip(a_values, b_values):
        levels = np.linalg.eigvalsh(dense_hamiltonian(energies, coefficient, a, b))
        gaps.append(levels[degeneracy] - levels[0])
    return np.array(gaps)


@pytest.mark.parametrize("method", ["lanczos", "davidson"])
def test_adaptive_minimum_gap_equals_dense_fine_grid_on_digits_qubos(digits_qubos, method):
    fine = np.linspace(0.0, 1.0, 1001)
    small = [qubo for qubo in digits_qubos if qubo.num_variables <= 8]  # 1001 dense eighs each
    assert small, "no digits QUBO with at most 8 variables"
    for qubo in small[:3]:
        energies = brute_force_energies(qubo)
        d = qubo.num_variables
        profile = minimum_gap(AnnealingHamiltonian(energies, "paper"), "linear", method=method if d > 3 else "dense")
        dense = dense_gap_curve(energies, 1.0 / d, fine)
        # Brent (xatol 1e-3 in s) on a quadratic minimum: Δ_min within 1e-4 relative of the dense curve's.
        assert profile.delta_min == pytest.approx(dense.min(), rel=1e-4)
        assert profile.num_eigensolves < 80  # adaptive, not one solve per time step


@pytest.mark.parametrize("schedule", ["linear", "quadratic", "dwave"])
def test_minimum_gap_matches_dense_on_random_qubos(schedule):
    fine = np.linspace(0.0, 1.0, 401)
    for seed in range(2):
        qubo = random_qubo(6, seed)
        energies = brute_force_energies(qubo)
        profile = minimum_gap(AnnealingHamiltonian(energies), schedule, method="davidson")
        dense = dense_gap_curve(energies, -1.0, fine, schedule)
        assert profile.delta_min == pytest.approx(dense.min(), abs=2e-4)


@pytest.mark.parametrize("method", ["lanczos", "davidson"])
def test_degenerate_ground_manifold_is_not_a_zero_gap(method):
    # Two identical maps with equal importance: swapping them is a symmetry, and with a small β
    # their redundancy outweighs the reward of keeping both, so the ground state is two-fold.
    maps = np.random.default_rng(1).normal(size=(4, 5, 5))
    maps[1] = maps[0]
    qubo = build_feature_map_qubo(np.array([1.0, 1.0, 0.6, 0.3]), maps, beta=0.2)
    energies = brute_force_energies(qubo)
    order = np.sort(energies)
    assert order[1] - order[0] < 1e-12 < order[2] - order[0]  # doubly degenerate
    hamiltonian = AnnealingHamiltonian(energies)
    assert hamiltonian.ground_manifold().size == 2
    profile = minimum_gap(hamiltonian, "linear", method=method)
    assert profile.ground_degeneracy == 2
    assert profile.levels.shape[1] == 3
    # At s = 1 the gap is the classical one to the third-lowest energy, not the zero E_1 − E_0.
    assert profile.gaps[-1] == pytest.approx(order[2] - order[0], abs=1e-9)
    dense = dense_gap_curve(energies, -1.0, np.linspace(0, 1, 801))
    assert profile.delta_min == pytest.approx(dense.min(), abs=2e-4)
    assert profile.delta_min > 1e-3


def test_constant_problem_has_no_gap_and_says_so():
    with pytest.raises(ValueError, match="constant"):
        minimum_gap(AnnealingHamiltonian(np.zeros(8)))
    with pytest.raises(ValueError, match="2\\^d"):
        AnnealingHamiltonian(np.zeros(6))
    with pytest.raises(ValueError, match="driver"):
        AnnealingHamiltonian(np.zeros(4), driver="minus")
    with pytest.raises(ValueError, match="schedule"):
        get_schedule("cubic")


def test_hellmann_feynman_slope_and_crossing_speed_match_dense_finite_differences(digits_qubos):
    qubo = max(digits_qubos, key=lambda q: q.num_variables)
    energies = brute_force_energies(qubo)
    d = qubo.num_variables
    profile = minimum_gap(AnnealingHamiltonian(energies, "paper"), "linear", method="davidson")
    assert 0.0 < profile.s_min < 1.0, "this check needs an interior minimum"
    # Independent: Δ from dense eigh around s_min; the minimum of a fitted parabola in Δ² gives
    # s*, Δ_min and v² = ½ d²(Δ²)/ds².
    offsets = np.linspace(-0.004, 0.004, 9)
    dense_gaps = dense_gap_curve(energies, 1.0 / d, profile.s_min + offsets)
    curvature, slope, constant = np.polyfit(offsets, dense_gaps**2, 2)
    s_star = profile.s_min - slope / (2 * curvature)
    assert profile.s_min == pytest.approx(s_star, abs=2e-4)
    assert profile.delta_min == pytest.approx(np.sqrt(constant - slope**2 / (4 * curvature)), rel=1e-4)
    assert profile.gap_speed == pytest.approx(np.sqrt(curvature), rel=0.05)


def test_one_and_two_workers_agree(digits_qubos):
    energies = brute_force_energies(max(digits_qubos, key=lambda q: q.num_variables))
    one, two = (minimum_gap(AnnealingHamiltonian(energies, "paper"), workers=w, method="davidson") for w in (1, 2))
    assert one.delta_min == pytest.approx(two.delta_min, rel=1e-7)
    assert one.s_min == pytest.approx(two.s_min, abs=1e-6)
    with pytest.raises(ValueError, match="workers"):
        minimum_gap(AnnealingHamiltonian(energies, "paper"), workers=3)
