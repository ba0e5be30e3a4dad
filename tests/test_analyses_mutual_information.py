"""The batched KSG estimator against the analytic Gaussian MI, scikit-learn, and a plain per-pair loop."""
import numpy as np
import pytest
from scipy.special import digamma
from sklearn.feature_selection import mutual_info_regression

from captum_qubo.analyses import collect_activations, ksg_matrix, mutual_information
from captum_qubo.analyses.map_information import block_size, prepare_for_ksg

GAUSSIAN_TOLERANCE = 0.04  # nats, at N = 2000 (KSG's spread there is ~0.015; its bias grows with |ρ|)
SKLEARN_TOLERANCE = {"reduce": 0.01, "features.3": 0.03}  # features.3 has ReLU zeros: ties broken by other jitter


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_correlated_gaussians_give_minus_half_log_one_minus_rho_squared(rho):
    z = np.random.default_rng(int(rho * 10)).multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=2000)
    assert ksg_matrix(z)[0, 1].item() == pytest.approx(-0.5 * np.log(1 - rho ** 2), abs=GAUSSIAN_TOLERANCE)


def test_independent_variables_have_mi_near_zero_and_a_nonlinear_dependence_is_found():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 6))
    x[:, 5] = x[:, 0] ** 2  # uncorrelated with x0 (r ≈ 0) but a function of it
    result = mutual_information(x)
    values = result.matrix[np.triu_indices(6, 1)]
    independent = np.delete(values, 4)  # pair (0, 5) is the 5th of the upper triangle
    # KSG's spread on 1000 independent points is ~0.02 nats with a long upper tail (scikit-learn gives the
    # same 0.063 for the largest pair of this draw), so: every pair below 0.08, their mean below 0.015.
    assert independent.max() < 0.08 and independent.mean() < 0.015
    top = result.top_pairs(1)[0]
    assert (top["a"], top["b"]) == (0, 5) and top["mi"] > 1.0 and abs(top["pearson"]) < 0.1


@pytest.fixture(scope="module")
def digits_activations(digits_model, digits_data):
    _, _, x_test, _ = digits_data
    return {name: value.double().numpy()
            for name, value in collect_activations(digits_model, ["features.3", "reduce"], x_test).items()}


@pytest.mark.parametrize("layer", ["reduce", "features.3"])
def test_agrees_with_sklearn_mutual_info_regression_on_real_activations(digits_activations, layer):
    x = digits_activations[layer]
    matrix = ksg_matrix(x).numpy()
    for column in range(0, x.shape[1], 5):
        expected = mutual_info_regression(x, x[:, column], n_neighbors=3, random_state=0)
        ours = matrix[:, column]
        others = np.arange(x.shape[1]) != column
        np.testing.assert_allclose(ours[others], expected[others], atol=SKLEARN_TOLERANCE[layer])


def loop_ksg(a, b, k=3):
    """KSG algorithm 1 for one pair, one point at a time (no vectorisation, no blocks), on distances rounded to
    float32 as the estimator documents (float64 distances move a count now and then: ~1e-3 nats)."""
    n = a.size
    total = 0.0
    for i in range(n):
        dx, dy = np.abs(a - a[i]).astype(np.float32), np.abs(b - b[i]).astype(np.float32)
        dx[i] = dy[i] = np.inf
        eps = np.sort(np.maximum(dx, dy))[k - 1]
        total += digamma((dx < eps).sum() + 1) + digamma((dy < eps).sum() + 1)
    return max(0.0, digamma(n) + digamma(k) - total / n)


def test_blocks_equal_a_pairwise_loop_within_and_between_layers(digits_activations):
    x = digits_activations["reduce"][:80, :7]
    y = digits_activations["features.3"][:80, :5]
    assert block_size(80, 0.5) == 2  # blocks of 2 maps: uneven blocks, off-diagonal blocks mirrored
    within = ksg_matrix(x, memory_mb=0.5).numpy()
    between = ksg_matrix(x, y, memory_mb=0.5).numpy()
    px, py = prepare_for_ksg(x, seed=0)[0].numpy(), prepare_for_ksg(y, seed=1)[0].numpy()
    for i in range(7):
        assert np.isnan(within[i, i])
        for j in range(7):
            if i != j:
                assert within[i, j] == pytest.approx(loop_ksg(px[:, i], px[:, j]), abs=1e-9)
        for j in range(5):
            assert between[i, j] == pytest.approx(loop_ksg(px[:, i], py[:, j]), abs=1e-9)
    np.testing.assert_array_equal(within, within.T)  # symmetric, NaN diagonal included
    np.testing.assert_allclose(ksg_matrix(x).numpy(), within, atol=1e-12)  # one block == many blocks


def test_the_permutation_null_separates_planted_dependence_from_noise():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 30))
    x[:, 29] = x[:, 3] + 0.3 * rng.normal(size=64)  # one dependent pair among 435
    summary = mutual_information(x, null_columns=30).summary()
    null = summary["null"]
    assert null["num_pairs"] == 435 and 0 < null["mean"] < null["q99"] <= null["q999"] <= null["max"] < 0.6
    assert summary["top_pairs"][0]["a"] == 3 and summary["top_pairs"][0]["b"] == 29
    assert summary["top_pairs"][0]["mi"] > null["max"]
    assert 1 / 435 <= null["fraction_above_q999"] < 0.02  # the planted pair, and about the null's 0.1 % besides


def test_a_group_preserving_null_absorbs_the_clusters_of_dependent_inputs():
    # 16 "photos" x 4 near-identical "crops", 24 independent maps: every map pair is independent, but each input's
    # 3 nearest neighbours are its own crops in every map, which raises KSG for all pairs
    rng = np.random.default_rng(3)
    x = np.repeat(rng.normal(size=(16, 24)), 4, axis=0) + 0.01 * rng.normal(size=(64, 24))
    photos = np.repeat(np.arange(16), 4)
    plain = mutual_information(x, null_columns=24).summary()["null"]
    grouped = mutual_information(x, null_columns=24, null_groups=photos).summary()["null"]
    assert grouped["grouped"] and not plain["grouped"]
    assert plain["fraction_above_q999"] > 0.3  # the plain null calls most independent pairs dependent
    assert grouped["fraction_above_q999"] < 0.02
    with pytest.raises(ValueError, match="one size"):
        mutual_information(x, null_columns=5, null_groups=np.r_[photos[:-1], 99])


def test_constant_maps_carry_no_information_and_errors_are_clear():
    x = np.random.default_rng(1).normal(size=(50, 4))
    x[:, 2] = 0.0
    matrix = ksg_matrix(x).numpy()
    assert np.all(matrix[2, [0, 1, 3]] == 0.0)
    with pytest.raises(ValueError, match="k must be"):
        ksg_matrix(x, k=50)
    with pytest.raises(ValueError, match="same inputs"):
        ksg_matrix(x, x[:10])
    with pytest.raises(ValueError, match=r"\(N, C\) matrix"):
        ksg_matrix(np.ones((3, 2, 2)))


def test_block_size_bounds_the_working_memory():
    for samples, budget in ((64, 256.0), (540, 256.0), (128, 64.0)):
        side = block_size(samples, budget)
        assert 12.0 * side ** 2 * samples ** 2 <= budget * 2 ** 20 < 12.0 * (side + 1) ** 2 * samples ** 2
