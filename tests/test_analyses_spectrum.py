"""Spectra against scikit-learn's PCA, and the von Neumann entropy against matrices with known spectra."""
import numpy as np
import pytest
import torch
from scipy.stats import ortho_group
from sklearn.decomposition import PCA

from captum_qubo.analyses import activation_spectrum, collect_activations, density_matrix, image_spectra
from captum_qubo.analyses import von_neumann_entropy


def correlated(rows, columns, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, columns)) @ rng.normal(size=(columns, columns)) + rng.normal(size=columns)


@pytest.mark.parametrize("rows, columns", [(60, 12), (10, 25)])
def test_explained_variance_ratios_equal_sklearn_pca(rows, columns):
    x = correlated(rows, columns)
    spectrum = activation_spectrum(x)
    pca = PCA().fit(x)
    count = pca.explained_variance_ratio_.size
    np.testing.assert_allclose(spectrum.explained_variance_ratio[:count], pca.explained_variance_ratio_, atol=1e-12)
    np.testing.assert_allclose(spectrum.singular_values[:count], pca.singular_values_, rtol=1e-10, atol=1e-10)
    for threshold, needed in spectrum.components.items():
        assert needed == int(np.argmax(np.cumsum(pca.explained_variance_ratio_) >= threshold - 1e-12)) + 1


def test_spectrum_of_real_digits_activations_equals_pca(digits_model, digits_data):
    _, _, x_test, _ = digits_data
    pooled = digits_model.features(x_test[:200]).mean(dim=(2, 3)).detach().numpy()  # features.3 by composition
    spectrum = activation_spectrum(collect_activations(digits_model, ["features.3"], x_test[:200])["features.3"])
    np.testing.assert_allclose(spectrum.explained_variance_ratio, PCA().fit(pooled).explained_variance_ratio_,
                               atol=1e-6)


def test_entropy_of_identity_is_log_c_and_of_rank_one_is_zero():
    for size in (1, 4, 17):
        assert von_neumann_entropy(np.eye(size) / size) == pytest.approx(np.log(size), abs=1e-12)
    v = np.random.default_rng(1).normal(size=9)
    assert von_neumann_entropy(np.outer(v, v) / v.dot(v)) == pytest.approx(0.0, abs=1e-10)


def test_entropy_of_a_rotated_known_spectrum():
    p = np.array([0.5, 0.25, 0.125, 0.125, 0.0])
    q = ortho_group.rvs(5, random_state=3)
    assert von_neumann_entropy(q @ np.diag(p) @ q.T) == pytest.approx(-(p[:4] * np.log(p[:4])).sum(), abs=1e-10)


def test_density_matrix_is_trace_normalised_covariance_and_its_entropy_is_the_spectrum_entropy():
    x = correlated(40, 8, seed=2)
    rho = density_matrix(x).numpy()
    covariance = np.cov(x, rowvar=False)
    np.testing.assert_allclose(rho, covariance / np.trace(covariance), atol=1e-12)
    spectrum = activation_spectrum(x)
    assert von_neumann_entropy(rho) == pytest.approx(spectrum.entropy, abs=1e-10)
    assert spectrum.effective_rank == pytest.approx(np.exp(spectrum.entropy))


def test_isotropic_activations_have_full_effective_rank_and_one_direction_has_one():
    centred = np.random.default_rng(4).normal(size=(50, 6))
    centred -= centred.mean(axis=0)
    q, _ = np.linalg.qr(centred)  # orthonormal, centred columns: covariance ∝ identity
    assert activation_spectrum(q * 7.0).effective_rank == pytest.approx(6.0, rel=1e-9)
    line = np.outer(np.linspace(-1, 1, 30), np.arange(1.0, 5.0))
    spectrum = activation_spectrum(line)
    assert spectrum.effective_rank == pytest.approx(1.0, abs=1e-9)
    assert spectrum.components == {0.9: 1, 0.95: 1, 0.99: 1}


def test_image_spectra_equal_a_per_image_svd(digits_model, digits_data):
    _, _, x_test, _ = digits_data
    maps = collect_activations(digits_model, ["reduce"], x_test[:5], pooled=False)["reduce"]
    result = image_spectra(maps)
    for n in range(5):
        s = np.linalg.svd(maps[n].reshape(maps.shape[1], -1).double().numpy(), compute_uv=False)
        ratios = s ** 2 / (s ** 2).sum()
        np.testing.assert_allclose(result.energy_ratios[n], ratios, atol=1e-10)
        positive = ratios[ratios > 0]
        assert result.effective_rank[n] == pytest.approx(np.exp(-(positive * np.log(positive)).sum()))


def test_clear_errors():
    with pytest.raises(ValueError, match="at least 2 inputs"):
        activation_spectrum(np.ones((1, 3)))
    with pytest.raises(ValueError, match="zero variance"):
        activation_spectrum(np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"\(N, C\) matrix"):
        activation_spectrum(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="unit trace"):
        von_neumann_entropy(np.eye(3))
