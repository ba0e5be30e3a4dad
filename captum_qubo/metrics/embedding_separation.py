"""How well explanations separate by class, treating each flattened explanation map as an embedding.

Two cluster-validity indices, with the classes as the clusters:

- :class:`CosineSilhouetteScore`: mean silhouette with cosine distance (torchmetrics has none).
  Vectorised through per-cluster sums of unit vectors, O(N·K·D) instead of O(N²·D).
- :class:`DaviesBouldinIndex`: Davies–Bouldin with Euclidean distance. torchmetrics'
  ``DaviesBouldinScore`` computes the same number but declares ``higher_is_better=True``, which is
  wrong (lower is better), and builds float32 centroids in a Python loop; this one is vectorised,
  keeps the input precision and states the right direction.

Both need every sample at compute time, so their states are "cat" lists (gathered across processes).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def _cluster_index(embeddings: Tensor, labels: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Flatten to (N, D) float64, map labels to 0..K-1; returns (data, cluster of each row, cluster sizes)."""
    if embeddings.ndim < 2 or labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"embeddings must be (N, ...) and labels (N,), got {tuple(embeddings.shape)} and {tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    data = embeddings.flatten(1).double()
    if not torch.isfinite(data).all():
        raise ValueError("embeddings contain NaN or inf")
    _, cluster, sizes = torch.unique(labels, return_inverse=True, return_counts=True)
    if not 2 <= sizes.numel() <= data.shape[0] - 1:
        raise ValueError(
            f"need 2 <= number of classes <= N - 1 to score separation, got {sizes.numel()} classes "
            f"for N = {data.shape[0]} samples; add samples from more classes"
        )
    return data, cluster, sizes


def cosine_silhouette_score(embeddings: Tensor, labels: Tensor) -> Tensor:
    """Mean silhouette coefficient with cosine distance 1 − cos(x, y).

    s(i) = (b − a) / max(a, b) with a the mean distance to the other members of i's class and b the
    smallest mean distance to another class; s(i) = 0 for a class of one. An all-zero vector is at
    distance 1 from every other vector and 0 from itself (as in scikit-learn).

    Args:
        embeddings: (N, ...) samples, flattened to (N, D).
        labels: (N,) integer class of each sample.

    Returns:
        Scalar float64 in [−1, 1]; higher is better.
    """
    data, cluster, sizes = _cluster_index(embeddings, labels)
    norms = data.norm(dim=1, keepdim=True)
    unit = torch.where(norms > 0, data / norms.clamp_min(torch.finfo(data.dtype).tiny), torch.zeros_like(data))
    cluster_sums = torch.zeros(sizes.numel(), data.shape[1], dtype=data.dtype, device=data.device)
    cluster_sums.index_add_(0, cluster, unit)
    sizes = sizes.to(data)
    # Σ_{j in cluster k} (1 − u_i·u_j) = n_k − u_i·S_k; that sum includes j = i, whose term
    # 1 − |u_i|² is 0 for a unit vector but 1 for a zero vector, so it is taken out of the own cluster.
    distance_sums = sizes[None, :] - unit @ cluster_sums.T
    own = torch.nn.functional.one_hot(cluster, sizes.numel()).bool()
    own_size = sizes[cluster]
    self_distance = 1.0 - (unit * unit).sum(dim=1)
    intra = (distance_sums[own] - self_distance) / (own_size - 1).clamp_min(1)
    inter = (distance_sums / sizes[None, :]).masked_fill(own, float("inf")).min(dim=1).values
    denominator = torch.maximum(intra, inter)
    silhouette = torch.where(denominator > 0, (inter - intra) / denominator.clamp_min(1e-300), torch.zeros_like(intra))
    return torch.where(own_size > 1, silhouette, torch.zeros_like(silhouette)).mean()


def davies_bouldin_index(embeddings: Tensor, labels: Tensor) -> Tensor:
    """Davies–Bouldin index with Euclidean distance.

    DB = mean_k max_{k'≠k} (S_k + S_k') / ‖c_k − c_k'‖ with c_k the class centroid and S_k the mean
    distance of the class's samples to it. Returns 0 when all S_k or all centroid distances are ~0
    (scikit-learn's convention); coinciding centroids otherwise contribute no term.

    Args:
        embeddings: (N, ...) samples, flattened to (N, D).
        labels: (N,) integer class of each sample.

    Returns:
        Scalar float64 in [0, ∞); lower is better.
    """
    data, cluster, sizes = _cluster_index(embeddings, labels)
    num_clusters = sizes.numel()
    sizes = sizes.to(data)
    centroids = torch.zeros(num_clusters, data.shape[1], dtype=data.dtype, device=data.device)
    centroids.index_add_(0, cluster, data)
    centroids /= sizes[:, None]
    spread = torch.zeros(num_clusters, dtype=data.dtype, device=data.device)
    spread.index_add_(0, cluster, (data - centroids[cluster]).norm(dim=1))
    spread /= sizes
    centroid_distances = torch.cdist(centroids, centroids)
    if torch.allclose(spread, torch.zeros_like(spread)) or torch.allclose(
        centroid_distances, torch.zeros_like(centroid_distances)
    ):
        return torch.zeros((), dtype=data.dtype, device=data.device)
    ratios = (spread[:, None] + spread[None, :]) / centroid_distances.masked_fill(centroid_distances == 0, float("inf"))
    return ratios.max(dim=1).values.mean()


class _LabelledEmbeddings(Metric):
    """Collects (explanation, class) pairs; subclasses score their separation."""

    is_differentiable = False
    full_state_update = False

    embeddings: list
    labels: list

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, explanations: Tensor, labels: Tensor) -> None:
        """Add (N, ...) explanations (e.g. (N, 1, H, W) maps) and their (N,) integer classes."""
        explanations = torch.as_tensor(explanations)
        labels = torch.as_tensor(labels, device=explanations.device)
        if explanations.ndim < 2 or labels.ndim != 1 or labels.shape[0] != explanations.shape[0]:
            raise ValueError(
                f"explanations must be (N, ...) and labels (N,), got {tuple(explanations.shape)} and "
                f"{tuple(labels.shape)}"
            )
        if labels.is_floating_point():
            raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
        flat = explanations.flatten(1)
        if self.embeddings and flat.shape[1] != self.embeddings[0].shape[1]:
            raise ValueError(
                f"explanations have {flat.shape[1]} values each but earlier ones had "
                f"{self.embeddings[0].shape[1]}; use one resolution per metric"
            )
        self.embeddings.append(flat)
        self.labels.append(labels)

    def _data(self) -> Tuple[Tensor, Tensor]:
        return dim_zero_cat(self.embeddings), dim_zero_cat(self.labels)

    def plot(self, val=None, ax=None):
        """Plot one or more computed values (torchmetrics convention); returns ``(fig, ax)``."""
        return self._plot(val, ax)


class CosineSilhouetteScore(_LabelledEmbeddings):
    """Silhouette of explanations grouped by class, cosine distance. Higher is better; range [−1, 1].

    ``update(explanations (N, ...), labels (N,))``; ``compute()`` is
    :func:`cosine_silhouette_score` over everything seen (needs 2 ≤ classes ≤ N − 1).
    """

    higher_is_better = True
    plot_lower_bound = -1.0
    plot_upper_bound = 1.0

    def compute(self) -> Tensor:
        return cosine_silhouette_score(*self._data())


class DaviesBouldinIndex(_LabelledEmbeddings):
    """Davies–Bouldin index of explanations grouped by class. Lower is better; range [0, ∞).

    ``update(explanations (N, ...), labels (N,))``; ``compute()`` is
    :func:`davies_bouldin_index` over everything seen (needs 2 ≤ classes ≤ N − 1).
    """

    higher_is_better = False
    plot_lower_bound = 0.0

    def compute(self) -> Tensor:
        return davies_bouldin_index(*self._data())
