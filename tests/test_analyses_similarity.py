"""Linear CKA and QIXAI's cosine against direct formulas, and CKA's invariances."""
import numpy as np
import pytest
from scipy.stats import ortho_group

from captum_qubo.analyses import collect_activations, gram_cosine, linear_cka, representation_cosine
from captum_qubo.analyses import similarity_matrix


def data(rows=80, columns=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, columns)) @ rng.normal(size=(columns, columns))


def hsic_cka(x, y):
    """CKA through HSIC with the explicit centring matrix H (Kornblith et al., eq. 3 with linear kernels)."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def test_cka_of_a_representation_with_itself_is_one():
    x = data()
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_equals_the_hsic_and_the_feature_space_formulas():
    x, y = data(30, 5, seed=1), data(30, 8, seed=2)
    xc, yc = x - x.mean(0), y - y.mean(0)
    feature_space = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(x, y) == pytest.approx(hsic_cka(x, y), abs=1e-12)
    assert linear_cka(x, y) == pytest.approx(feature_space, abs=1e-12)


def test_cka_is_invariant_to_orthogonal_maps_and_isotropic_scaling_not_to_invertible_maps():
    x = data(seed=3)
    y = x[:, :6] @ np.random.default_rng(4).normal(size=(6, 7)) + data(80, 7, seed=5)  # related to x
    reference = linear_cka(x, y)
    assert 0.2 < reference < 0.95
    q = ortho_group.rvs(10, random_state=5)
    assert linear_cka(x @ q, y) == pytest.approx(reference, abs=1e-12)
    assert linear_cka(3.7 * x, 0.2 * y) == pytest.approx(reference, abs=1e-12)
    stretch = np.diag(np.geomspace(1.0, 50.0, 10)) @ ortho_group.rvs(10, random_state=6)  # invertible
    assert abs(linear_cka(x @ stretch, y) - reference) > 0.05
    assert abs(linear_cka(x @ stretch, x) - 1.0) > 0.05


def test_gram_cosine_and_flattened_cosine_equal_their_formulas():
    x, y, z = np.abs(data(20, 6, 7)), np.abs(data(20, 6, 8)), np.abs(data(20, 9, 9))
    k, l = x @ x.T, z @ z.T
    assert gram_cosine(x, z) == pytest.approx((k * l).sum() / np.sqrt((k * k).sum() * (l * l).sum()), abs=1e-12)
    assert representation_cosine(x, z) == pytest.approx(gram_cosine(x, z))
    assert representation_cosine(x, y) == pytest.approx((x * y).sum() / np.linalg.norm(x) / np.linalg.norm(y))
    assert gram_cosine(x, z) > 0.5  # non-negative activations: never orthogonal, unlike their centred CKA


def test_similarity_matrix_equals_pairwise_values_on_real_layers(digits_model, digits_data):
    _, _, x_test, _ = digits_data
    activations = collect_activations(digits_model, ["features.1", "features.3", "reduce"], x_test[:150])
    for measure, pairwise in (("cka", linear_cka), ("gram_cosine", gram_cosine)):
        names, matrix = similarity_matrix(activations, measure)
        assert names == ["features.1", "features.3", "reduce"]
        np.testing.assert_allclose(matrix, matrix.T, atol=1e-12)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                assert matrix[i, j] == pytest.approx(pairwise(activations[a], activations[b]), abs=1e-10)
        assert np.all(matrix >= -1e-12) and np.all(matrix <= 1 + 1e-12)


def test_clear_errors():
    with pytest.raises(ValueError, match="same inputs"):
        linear_cka(np.ones((4, 2)), np.ones((5, 2)))
    with pytest.raises(ValueError, match="constant"):
        linear_cka(np.ones((4, 2)), data(4, 2))
    with pytest.raises(ValueError, match="measure"):
        similarity_matrix({"a": data()}, "cosine")
