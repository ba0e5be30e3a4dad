"""Evolution checks against independent references: dense matrices, Landau–Zener, the adiabatic theorem."""
from functools import reduce

import numpy as np
import pytest
from threadpoolctl import threadpool_limits
import scipy.linalg
from scipy.integrate import solve_ivp

from captum_qubo.annealing import (
    AnnealingHamiltonian,
    Schedule,
    evolve,
    landau_zener_success,
    lowest_levels,
    minimum_gap,
    reference_anneal,
)

PAULI_X = np.array([[0.0, 1.0], [1.0, 0.0]])


@pytest.fixture(autouse=True)
def single_blas_thread():
    """Dense references call BLAS on tiny matrices; threads only oversubscribe the CI cores."""
    with threadpool_limits(limits=1):
        yield


def dense_driver(d, coefficient):
    """coefficient Σ_p σx_p by Kronecker products; qubit 0 is the rightmost factor (little-endian)."""
    terms = [reduce(np.kron, [PAULI_X if q == p else np.eye(2) for q in reversed(range(d))]) for p in range(d)]
    return coefficient * sum(terms)


def random_energies(d, seed):
    """Diagonal of a random QUBO (Gaussian linear and pair terms) by little-endian index."""
    rng = np.random.default_rng(seed)
    linear, pairs = rng.normal(size=d), np.triu(rng.normal(size=(d, d)), 1)
    bits = (np.arange(1 << d)[:, None] >> np.arange(d)) & 1
    return bits @ linear + np.einsum("ip,pq,iq->i", bits, pairs, bits)


def dense_ground_state(matrix):
    return np.linalg.eigh(matrix)[1][:, 0].astype(complex)


@pytest.mark.parametrize("driver", ["standard", "paper"])
def test_evolution_matches_dense_expm_steps(driver):
    d, tau, steps = 6, 4.0, 1500
    energies = random_energies(d, seed=3)
    coefficient = -1.0 if driver == "standard" else 1.0 / d
    h_driver, h_problem = dense_driver(d, coefficient), np.diag(energies)
    psi = dense_ground_state(h_driver)  # ground state found by eigh, not by the library
    dt = tau / steps
    for k in range(steps):  # exponential midpoint rule on the full matrix, error O(dt²) ≈ 1e-6
        s = (k + 0.5) * dt / tau
        psi = scipy.linalg.expm(-1j * dt * ((1 - s) * h_driver + s * h_problem)) @ psi
    result = evolve(AnnealingHamiltonian(energies, driver), "linear", tau, tolerance=1e-7)
    overlap = abs(np.vdot(psi, result.state))  # the eigh ground state carries an arbitrary sign
    assert overlap == pytest.approx(1.0, abs=1e-8)
    assert result.converged and result.error_estimate <= 1e-7
    probabilities = np.abs(psi) ** 2
    np.testing.assert_allclose(np.abs(result.state) ** 2, probabilities, atol=1e-6)


def test_evolution_and_error_estimate_match_high_order_dense_ode():
    d, tau = 8, 6.0
    energies = random_energies(d, seed=5)
    h_driver, h_problem = dense_driver(d, -1.0), np.diag(energies)

    def rhs(t, psi):
        s = t / tau
        return -1j * (((1 - s) * h_driver + s * h_problem) @ psi)

    start = np.full(1 << d, 2 ** (-d / 2), dtype=complex)
    exact = solve_ivp(rhs, (0, tau), start, method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1]
    hamiltonian = AnnealingHamiltonian(energies)
    for tolerance in (1e-3, 1e-6):
        result = evolve(hamiltonian, "linear", tau, tolerance=tolerance)
        error = np.linalg.norm(result.state - exact)
        assert error <= 3 * tolerance, (tolerance, error, result.error_estimate)


def test_norm_is_conserved_and_success_is_summed_over_ground_manifold():
    d = 10
    energies = random_energies(d, seed=7)
    energies[np.argsort(energies)[1]] = energies.min()  # make the ground manifold two-fold
    hamiltonian = AnnealingHamiltonian(energies, "paper")
    result = evolve(hamiltonian, "dwave", 5.0, tolerance=1e-4)
    assert np.linalg.norm(result.state) == pytest.approx(1.0, abs=1e-12)
    assert result.ground_indices.size == 2
    assert result.success_probability == pytest.approx(np.sum(np.abs(result.state[result.ground_indices]) ** 2))


def test_success_probability_tends_to_one_on_a_gapped_instance():
    # The first random instance whose minimum gap exceeds 0.3: then τ ≫ 1/Δ² is adiabatic.
    hamiltonians = (AnnealingHamiltonian(random_energies(4, seed)) for seed in range(100))
    hamiltonian = next(h for h in hamiltonians if minimum_gap(h).delta_min > 0.3)
    failures = [1 - evolve(hamiltonian, "linear", tau, tolerance=1e-6).success_probability for tau in (1, 10, 100, 300)]
    assert failures[-1] < 1e-3
    assert failures[-1] < failures[-2] < failures[0]


def landau_zener_setup(sweep=60.0, bias=1.0):
    """d = 1, H = −σx + sweep (2s − 1) diag(0, bias): an avoided crossing with coupling 1 at s = ½.

    Diabatic levels 0 and sweep·bias·(2s − 1) separate at rate 2·sweep·bias/τ with coupling 1, so
    the Landau–Zener formula gives P_diabatic = exp(−2π·1²·τ / (2·sweep·bias)) = exp(−πτ/(sweep·bias)).
    """
    schedule = Schedule("lz", lambda s: np.ones_like(s), lambda s: sweep * (2 * s - 1))
    hamiltonian = AnnealingHamiltonian(np.array([0.0, bias]))
    start = lowest_levels(hamiltonian, *map(float, schedule(0.0)), 1, method="dense")[1][:, 0]
    return hamiltonian, schedule, start, sweep * bias


@pytest.mark.parametrize("tau_over_sweep, regime", [(0.0125, "diabatic"), (1.0, "adiabatic")])
def test_d1_linear_sweep_obeys_landau_zener(tau_over_sweep, regime):
    hamiltonian, schedule, start, rate = landau_zener_setup()
    tau = tau_over_sweep * rate
    result = evolve(hamiltonian, schedule, tau, tolerance=1e-5, initial_state=start)
    diabatic = np.exp(-np.pi * tau / rate)
    # Finite sweep (±60 × coupling) leaves O(1e-2) oscillations around the infinite-time formula.
    assert 1 - result.success_probability == pytest.approx(diabatic, abs=0.012)
    if regime == "adiabatic":
        assert 1 - result.success_probability < 0.06
    else:
        assert result.success_probability < 0.06


def test_landau_zener_estimate_from_gap_profile_recovers_the_sweep():
    hamiltonian, schedule, _, rate = landau_zener_setup()
    profile = minimum_gap(hamiltonian, schedule)
    assert profile.delta_min == pytest.approx(2.0, rel=1e-6)  # 2 × coupling
    assert profile.s_min == pytest.approx(0.5, abs=1e-3)
    assert profile.gap_speed == pytest.approx(2 * rate, rel=1e-3)
    tau = 30.0
    assert landau_zener_success(profile.delta_min, profile.gap_speed, tau) == pytest.approx(1 - np.exp(-np.pi * tau / rate))


def test_paper_driver_equals_standard_driver_with_same_field_strength():
    d, tau = 5, 8.0
    energies = random_energies(d, seed=13)
    scaled = Schedule("scaled", lambda s: (1 - s) / d, lambda s: s)  # |c| = 1/d like the paper's driver
    paper = evolve(AnnealingHamiltonian(energies, "paper"), "linear", tau, tolerance=1e-8)
    standard = evolve(AnnealingHamiltonian(energies, "standard"), scaled, tau, tolerance=1e-8)
    # Z^⊗d maps one onto the other and commutes with H_P: same populations, same F.
    np.testing.assert_allclose(np.abs(paper.state) ** 2, np.abs(standard.state) ** 2, atol=1e-7)


def test_reference_method_agrees_with_controlled_evolution():
    energies = random_energies(4, seed=17)
    reference = reference_anneal(energies, "linear", tau=3.0, driver="paper")
    ours = evolve(AnnealingHamiltonian(energies, "paper"), "linear", 3.0, tolerance=1e-8)
    profile = minimum_gap(AnnealingHamiltonian(energies, "paper"))
    # Piecewise-constant H with dt = 0.01 is first order: agreement to ~1e-3 in F, ~1e-3 in Δ_min.
    assert reference.success_probability == pytest.approx(ours.success_probability, abs=2e-3)
    assert reference.delta_min == pytest.approx(profile.delta_min, abs=2e-3)
    assert reference.delta_min >= profile.delta_min - 1e-9  # a grid minimum can only overestimate
