r"""Mutual information between feature maps over a set of inputs: the Kraskov–Stögbauer–Grassberger
estimator (KSG, algorithm 1, Kraskov et al. 2004) for every pair of maps, vectorised on torch.

For maps x and y observed on N inputs, with ε_n the max-norm distance from point n to its k-th nearest
neighbour in the joint (x, y) space, n_x(n) and n_y(n) the numbers of other points strictly closer than
ε_n in x alone and in y alone:

    I(x; y) = ψ(N) + ψ(k) − ⟨ψ(n_x + 1)⟩ − ⟨ψ(n_y + 1)⟩   (nats, clipped at 0).

Inputs are prepared as ``sklearn.feature_selection.mutual_info_regression`` prepares them: each map scaled
to unit standard deviation, then a 1e-10-relative Gaussian jitter (seeded) to break ties (a ReLU map that
is zero on several inputs has ties). A constant map has zero MI with everything. The estimate is unbiased
for independent variables only on average; on N inputs its spread is about 1/√N nats.

Distances are rounded to float32 after the float64 jitter (halving time and memory); against float64
distances that moves an estimate by about 1e-3 nats.

All pairs of C maps cost C² N² distance comparisons; they are done in blocks of maps sized so that one
block's tensors stay within ``memory_mb``, and only the upper triangle of a layer with itself is computed.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

JITTER = 1e-10


def prepare_for_ksg(x, seed: int = 0) -> Tuple[Tensor, Tensor]:
    """Unit-variance, jittered float64 copy of an (N, C) matrix, and the mask of constant columns."""
    x = torch.as_tensor(x).double()
    if x.ndim != 2:
        raise ValueError(f"expected an (N, C) matrix of pooled activations, got shape {tuple(x.shape)}")
    std = x.std(dim=0, unbiased=False)
    constant = std == 0
    scaled = x / torch.where(constant, torch.ones_like(std), std)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(scaled.shape, generator=generator, dtype=torch.float64)
    return scaled + JITTER * scaled.abs().mean(dim=0).clamp_min(1.0) * noise, constant


def _distances(columns: Tensor) -> Tuple[Tensor, Tensor]:
    """(B, N, N) float32 |x_m − x_n| per column with an infinite diagonal, and the same rows sorted."""
    d = (columns.T[:, :, None] - columns.T[:, None, :]).abs().float().contiguous()
    d.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    return d, d.sort(dim=2).values


def _ksg_block(dx: Tensor, sx: Tensor, dy: Tensor, sy: Tensor, k: int) -> Tensor:
    """KSG estimates (Bx, By) for every pair of a block of x maps and a block of y maps."""
    n = dx.shape[1]
    joint = torch.maximum(dx[:, None], dy[None])  # (Bx, By, N, N)
    eps = joint.topk(k, dim=3, largest=False).values[..., k - 1]  # (Bx, By, N)
    del joint
    nx = torch.searchsorted(sx, eps.permute(0, 2, 1).contiguous())  # (Bx, N, By): # points closer than ε in x
    ny = torch.searchsorted(sy, eps.permute(1, 2, 0).contiguous())  # (By, N, Bx)
    psi_x = torch.digamma(nx.double() + 1.0).mean(dim=1)  # (Bx, By)
    psi_y = torch.digamma(ny.double() + 1.0).mean(dim=1).T
    return (torch.digamma(torch.tensor([float(n), float(k)], dtype=torch.float64)).sum()
            - psi_x - psi_y).clamp_min(0.0)


def block_size(num_samples: int, memory_mb: float) -> int:
    """Maps per block side so one block's joint-distance tensors (≈ 3 × 4 bytes × B² N²) fit ``memory_mb``."""
    return max(1, int(math.sqrt(memory_mb * 2 ** 20 / (12.0 * num_samples ** 2))))


def ksg_matrix(x, y=None, k: int = 3, seed: int = 0, memory_mb: float = 256.0, progress: bool = False) -> Tensor:
    """KSG mutual information (nats) between every map of ``x`` and every map of ``y``.

    Args:
        x: (N, Cx) pooled activations.
        y: (N, Cy) activations of another layer over the same inputs, or None for ``x`` with itself.
        k: neighbours (3, as scikit-learn's default).
        seed: seeds the tie-breaking jitter.
        memory_mb: bound on one block's working tensors.
        progress: show a tqdm bar over the blocks.

    Returns:
        (Cx, Cy) float64 matrix; for ``y=None`` symmetric with NaN on the diagonal (a map with itself).
    """
    within = y is None
    x, x_constant = prepare_for_ksg(x, seed)
    y, y_constant = (x, x_constant) if within else prepare_for_ksg(y, seed + 1)
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"both layers must cover the same inputs: {n} rows vs {y.shape[0]}")
    if not isinstance(k, int) or not 1 <= k < n:
        raise ValueError(f"k must be an integer in [1, N-1] = [1, {n - 1}], got {k!r}")
    size = block_size(n, memory_mb)
    x_starts, y_starts = range(0, x.shape[1], size), range(0, y.shape[1], size)
    tasks = [(a, b) for a in x_starts for b in y_starts if not within or b >= a]
    if progress:
        from tqdm.auto import tqdm

        tasks = tqdm(tasks, desc=f"mutual information ({x.shape[1]}x{y.shape[1]} maps)", unit="block")
    result = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64)
    cached_a, row = None, None
    for a, b in tasks:
        if a != cached_a:
            cached_a, row = a, _distances(x[:, a:a + size])
        column = row if within and b == a else _distances(y[:, b:b + size])
        block = _ksg_block(*row, *column, k)
        result[a:a + size, b:b + size] = block
        if within:
            result[b:b + size, a:a + size] = block.T
    result[x_constant, :] = 0.0
    result[:, y_constant] = 0.0
    if within:
        result.fill_diagonal_(float("nan"))
    return result


def pearson_matrix(x, y=None) -> np.ndarray:
    """Pearson correlation between every map of ``x`` and of ``y`` (0 where a map is constant)."""
    x = torch.as_tensor(x).double()
    y = x if y is None else torch.as_tensor(y).double()
    x, y = x - x.mean(dim=0), y - y.mean(dim=0)
    nx, ny = x.norm(dim=0), y.norm(dim=0)
    corr = (x.T @ y) / torch.outer(nx, ny)
    corr[~torch.isfinite(corr)] = 0.0
    return corr.clamp(-1.0, 1.0).numpy()


def gaussian_mutual_information(correlation) -> np.ndarray:
    """−½ log(1 − r²): the MI of a bivariate Gaussian with correlation r (what r alone implies)."""
    r2 = np.minimum(np.asarray(correlation, dtype=np.float64) ** 2, 1.0 - 1e-15)
    return -0.5 * np.log1p(-r2)


def _group_permutation(groups, rng: np.random.Generator) -> np.ndarray:
    """Row order that moves whole groups onto each other (group g's rows take the values of group π(g))."""
    labels, inverse, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    if counts.min() != counts.max():
        raise ValueError(f"a group-preserving null needs groups of one size, got sizes {sorted(set(counts))}; "
                         "pass groups=None for the plain permutation null")
    members = [np.flatnonzero(inverse == g) for g in range(labels.size)]
    target = rng.permutation(labels.size)
    order = np.empty(inverse.size, dtype=np.int64)
    for g, rows in enumerate(members):
        order[rows] = members[target[g]]
    return order


def permutation_null(x, columns: int = 300, k: int = 3, seed: int = 0, memory_mb: float = 256.0,
                     groups=None) -> dict:
    """What KSG gives for *independent* maps with these marginals: each of ``columns`` maps (a seeded random
    choice) shuffled over the inputs on its own, which keeps every map's values (its zeros included) and
    destroys every dependence. On few inputs an estimate needs to clear this null to mean anything.

    Inputs that are not independent (several crops of one photo) make KSG see clusters, which raise every
    estimate; ``groups`` then moves whole groups instead of single inputs, keeping the clusters in the null.

    Args:
        x: (N, C) pooled activations.
        columns: maps used (all if C is smaller); the null has columns·(columns−1)/2 pairs.
        k, seed, memory_mb: as for :func:`ksg_matrix`.
        groups: (N,) group label per input (equal-sized groups), or None.

    Returns:
        ``{"num_pairs", "mean", "q99", "q999", "max", "grouped"}`` of the null's pair values (nats).
    """
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(x.shape[1], size=min(columns, x.shape[1]), replace=False)
    if groups is not None and len(groups) != x.shape[0]:
        raise ValueError(f"groups has {len(groups)} labels for {x.shape[0]} inputs; give one label per input")
    order = (lambda: _group_permutation(groups, rng)) if groups is not None else (lambda: rng.permutation(x.shape[0]))
    shuffled = np.stack([x[order(), column] for column in chosen], axis=1)
    values = ksg_matrix(shuffled, k=k, seed=seed, memory_mb=memory_mb).numpy()
    values = values[np.triu_indices(chosen.size, k=1)]
    return {"num_pairs": int(values.size), "mean": float(values.mean()), "q99": float(np.quantile(values, 0.99)),
            "q999": float(np.quantile(values, 0.999)), "max": float(values.max()), "grouped": groups is not None}


@dataclass
class MutualInformation:
    """All-pairs MI between the maps of one layer (``within``) or of two layers, with Pearson r beside it."""

    matrix: np.ndarray
    pearson: np.ndarray
    within: bool
    k: int
    num_samples: int
    seconds: float
    null: Optional[dict] = None

    def top_pairs(self, count: int = 10) -> List[dict]:
        """The ``count`` most "entangled" pairs (largest MI), each with its MI, r and r's Gaussian MI."""
        if self.within:
            rows, cols = np.triu_indices(self.matrix.shape[0], k=1)
        else:
            rows, cols = np.indices(self.matrix.shape).reshape(2, -1)
        values = self.matrix[rows, cols]
        order = np.argsort(-values, kind="stable")[:count]
        return [{"a": int(rows[i]), "b": int(cols[i]), "mi": float(values[i]),
                 "pearson": float(self.pearson[rows[i], cols[i]]),
                 "gaussian_mi": float(gaussian_mutual_information(self.pearson[rows[i], cols[i]]))} for i in order]

    def pair_values(self) -> np.ndarray:
        """MI of every distinct pair (upper triangle when ``within``), flattened."""
        if self.within:
            return self.matrix[np.triu_indices(self.matrix.shape[0], k=1)]
        return self.matrix.reshape(-1)

    def summary(self, count: int = 10) -> dict:
        values = self.pair_values()
        summary = {"num_pairs": int(values.size), "num_samples": self.num_samples, "k": self.k,
                   "seconds": self.seconds, "mean": float(values.mean()), "median": float(np.median(values)),
                   "max": float(values.max()), "top_pairs": self.top_pairs(count)}
        if self.null is not None:
            summary["null"] = dict(self.null, fraction_above_q999=float((values > self.null["q999"]).mean()))
        return summary


def mutual_information(x, y=None, k: int = 3, seed: int = 0, memory_mb: float = 256.0,
                       progress: bool = False, null_columns: int = 0, null_groups=None) -> MutualInformation:
    """KSG MI of all map pairs (see :func:`ksg_matrix`) with the Pearson correlations for comparison.

    Args:
        x, y, k, seed, memory_mb, progress: as for :func:`ksg_matrix`.
        null_columns: > 0 also estimates the :func:`permutation_null` of ``x`` on that many maps (its time is
            not in ``seconds``); the summary then says which fraction of the pairs clears its 99.9th percentile.
        null_groups: (N,) group labels of inputs that are not independent (see :func:`permutation_null`).

    Returns:
        A :class:`MutualInformation`.
    """
    start = time.perf_counter()
    matrix = ksg_matrix(x, y, k=k, seed=seed, memory_mb=memory_mb, progress=progress).numpy()
    seconds = time.perf_counter() - start
    null = permutation_null(x, null_columns, k, seed, memory_mb, null_groups) if null_columns > 0 else None
    return MutualInformation(matrix, pearson_matrix(x, y), y is None, k, int(np.shape(x)[0]), seconds, null)
