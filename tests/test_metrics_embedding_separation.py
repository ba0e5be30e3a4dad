import pytest
import torch
from sklearn.metrics import davies_bouldin_score, silhouette_score
from torchmetrics.clustering import DaviesBouldinScore

from captum_qubo.metrics import CosineSilhouetteScore, DaviesBouldinIndex, cosine_silhouette_score, davies_bouldin_index


def clustered_maps(seed=0):
    """(31, 1, 4, 5) 'explanation maps' in 4 classes around random centres, with a singleton
    class and an all-zero map, the two edge cases of the silhouette."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(4, 20, generator=generator, dtype=torch.float64)
    labels = torch.cat([torch.randint(0, 3, (30,), generator=generator), torch.tensor([7])])
    maps = centres[labels.clamp(max=3)] + 0.3 * torch.randn(31, 20, generator=generator, dtype=torch.float64)
    maps[4] = 0.0
    return maps.view(31, 1, 4, 5), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cosine_silhouette_matches_sklearn(seed):
    maps, labels = clustered_maps(seed)
    expected = silhouette_score(maps.flatten(1).numpy(), labels.numpy(), metric="cosine")
    assert cosine_silhouette_score(maps, labels).item() == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_davies_bouldin_matches_sklearn_and_torchmetrics_value(seed):
    maps, labels = clustered_maps(seed)
    expected = davies_bouldin_score(maps.flatten(1).numpy(), labels.numpy())
    ours = davies_bouldin_index(maps, labels).item()
    # sklearn's Euclidean distances use the |x|² + |y|² − 2x·y expansion, good to ~1e-8
    assert ours == pytest.approx(expected, rel=1e-7)
    assert ours == pytest.approx(DaviesBouldinScore()(maps.flatten(1).float(), labels).item(), rel=1e-4)


def test_hand_computed_two_cluster_cases():
    # Two tight pairs along orthogonal axes: cosine distance 0 inside, 1 across -> silhouette 1.
    data = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    assert cosine_silhouette_score(data, labels).item() == pytest.approx(1.0)
    # Centroids (1.5, 0) and (0, 2), spreads 0.5 and 1, centroid distance 2.5 -> DB = 1.5 / 2.5.
    assert davies_bouldin_index(data, labels).item() == pytest.approx(1.5 / 2.5)


def test_directions_are_declared_correctly():
    assert CosineSilhouetteScore.higher_is_better is True
    assert DaviesBouldinIndex.higher_is_better is False
    assert DaviesBouldinScore.higher_is_better is True  # the upstream bug this class works around


def test_metric_accumulates_and_merges_like_one_pass():
    maps, labels = clustered_maps(3)
    for metric_class, function in ((CosineSilhouetteScore, cosine_silhouette_score),
                                   (DaviesBouldinIndex, davies_bouldin_index)):
        first, second = metric_class(), metric_class()
        first.update(maps[:10], labels[:10])
        first.update(maps[10:17], labels[10:17])
        second.update(maps[17:], labels[17:])
        first.merge_state(second)
        assert first.compute().item() == pytest.approx(function(maps, labels).item(), abs=1e-12)


@pytest.mark.parametrize(
    "maps, labels, message",
    [
        (torch.rand(5, 3), torch.zeros(5, dtype=torch.long), "2 <= number of classes"),
        (torch.rand(3, 3), torch.tensor([0, 1, 2]), "2 <= number of classes"),
        (torch.rand(4, 3), torch.tensor([0, 1, 0]), r"labels \(N,\)"),
        (torch.rand(4), torch.tensor([0, 1, 0, 1]), r"\(N, \.\.\.\)"),
        (torch.rand(4, 3), torch.tensor([0.0, 1.0, 0.0, 1.0]), "integer"),
        (torch.full((4, 3), float("nan")), torch.tensor([0, 1, 0, 1]), "NaN"),
    ],
)
def test_bad_inputs_raise_clear_errors(maps, labels, message):
    for function in (cosine_silhouette_score, davies_bouldin_index):
        with pytest.raises(ValueError, match=message):
            function(maps, labels)


def test_metric_rejects_changing_resolution():
    metric = CosineSilhouetteScore()
    metric.update(torch.rand(2, 1, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="one resolution"):
        metric.update(torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))
