"""The QUBO's |cos| redundancy averaged over images, and its comparison with MI."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from captum_qubo.analyses import collect_activations, compare_redundancy, mean_abs_cosine
from captum_qubo.formulation.qubo import abs_cosine_similarity


def test_mean_abs_cosine_is_the_qubos_j_averaged_over_images(digits_model, digits_data):
    _, _, x_test, _ = digits_data
    maps = collect_activations(digits_model, ["reduce"], x_test[:20], pooled=False)["reduce"].numpy()
    maps[3, 5] = 0.0  # an all-zero map is similar to nothing, in both
    expected = np.mean([abs_cosine_similarity(image) for image in maps], axis=0)
    np.testing.assert_allclose(mean_abs_cosine(maps, chunk=3), expected, atol=1e-6)


def test_comparison_counts_pairs_and_ranks():
    rng = np.random.default_rng(0)
    a = rng.random((12, 12))
    a = (a + a.T) / 2
    noisy = a + 0.01 * rng.random((12, 12))
    noisy = (noisy + noisy.T) / 2
    result = compare_redundancy(a, noisy, pearson=a, top=10)
    rows, cols = np.triu_indices(12, 1)
    assert result["num_pairs"] == 66 and result["chance_overlap"] == pytest.approx(10 / 66)
    assert result["spearman_cos_mi"] == pytest.approx(spearmanr(a[rows, cols], noisy[rows, cols]).statistic)
    assert result["top_overlap_cos_abs_r"] == 1.0 and result["top_overlap_cos_mi"] >= 0.8
    with pytest.raises(ValueError, match="same layer"):
        compare_redundancy(a, a[:5, :5])
