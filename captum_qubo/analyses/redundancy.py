"""Does the QUBO's redundancy term agree with mutual information about which maps are redundant?

The QUBO penalises selecting two maps together by J_pq = |cos| between the two flattened maps of *one*
image (:func:`captum_qubo.formulation.qubo.abs_cosine_similarity`). Mutual information (and Pearson r)
between two maps is a statement *across images* about their pooled values. This module averages the
QUBO's J over the images and compares it with an MI matrix pair by pair: the Spearman rank correlation
over all pairs, and the overlap of the two measures' most redundant pairs.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from scipy.stats import spearmanr


def mean_abs_cosine(maps, chunk: int = 4) -> np.ndarray:
    """The QUBO's J (|cos| between flattened maps, zero diagonal) averaged over the images.

    Args:
        maps: (N, C, H, W) or (N, C, H·W) activations of one layer.
        chunk: images per batched product (bounds memory at chunk × C² floats).

    Returns:
        (C, C) float64 matrix in [0, 1], zero diagonal; an all-zero map is similar to nothing.
    """
    maps = torch.as_tensor(maps).double()
    if maps.ndim < 3:
        raise ValueError(f"maps must be (N, C, H, W) spatial activations (pooled=False), got {tuple(maps.shape)}")
    flat = maps.flatten(2)
    norms = flat.norm(dim=2, keepdim=True)
    unit = torch.where(norms > 0, flat / norms.clamp_min(1e-300), torch.zeros_like(flat))
    total = torch.zeros(flat.shape[1], flat.shape[1], dtype=torch.float64)
    for part in unit.split(chunk):
        total += (part @ part.transpose(1, 2)).abs().clamp(max=1.0).sum(dim=0)
    total /= flat.shape[0]
    total.fill_diagonal_(0.0)
    return total.numpy()


def top_pair_set(matrix: np.ndarray, count: int) -> set:
    """The ``count`` largest distinct (p < q) pairs of a symmetric matrix, as a set of (p, q)."""
    rows, cols = np.triu_indices(matrix.shape[0], k=1)
    order = np.argsort(-matrix[rows, cols], kind="stable")[:count]
    return {(int(rows[i]), int(cols[i])) for i in order}


def compare_redundancy(qubo_j: np.ndarray, mi: np.ndarray, pearson: Optional[np.ndarray] = None,
                       top: Optional[int] = None) -> dict:
    """Pairwise agreement of the QUBO's mean |cos| with MI (and with |r| across images).

    Args:
        qubo_j: (C, C) from :func:`mean_abs_cosine`.
        mi: (C, C) within-layer MI (NaN diagonal allowed).
        pearson: (C, C) Pearson r across images, optional.
        top: size of the "most redundant pairs" sets compared (default: 10 % of the pairs, at most 100).

    Returns:
        JSON-ready dict: Spearman ρ(|cos|, MI), overlap of the top-``top`` pairs (and the overlap expected by
        chance), and the same against |r| when given.
    """
    if qubo_j.shape != mi.shape:
        raise ValueError(f"the |cos| matrix {qubo_j.shape} and the MI matrix {mi.shape} must be the same layer's")
    rows, cols = np.triu_indices(mi.shape[0], k=1)
    top = min(top if top is not None else max(1, min(100, rows.size // 10)), rows.size)
    result = {"num_pairs": int(rows.size), "top": top, "chance_overlap": top / rows.size,
              "spearman_cos_mi": float(spearmanr(qubo_j[rows, cols], mi[rows, cols]).statistic)}
    cleaned = np.nan_to_num(mi)
    result["top_overlap_cos_mi"] = len(top_pair_set(qubo_j, top) & top_pair_set(cleaned, top)) / top
    if pearson is not None:
        r = np.abs(pearson)
        result["spearman_cos_abs_r"] = float(spearmanr(qubo_j[rows, cols], r[rows, cols]).statistic)
        result["spearman_abs_r_mi"] = float(spearmanr(r[rows, cols], mi[rows, cols]).statistic)
        result["top_overlap_cos_abs_r"] = len(top_pair_set(qubo_j, top) & top_pair_set(r, top)) / top
    return result
