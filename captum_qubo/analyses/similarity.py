r"""How alike two layers' representations of the same N inputs are, for layers of any widths.

Linear CKA (Kornblith et al., 2019) compares the centred Gram matrices K = X̄X̄ᵀ and L = ȲȲᵀ (N × N, X̄ the
column-centred (N, C) activations): CKA = ⟨K, L⟩_F / (‖K‖_F ‖L‖_F) = ‖ȲᵀX̄‖²_F / (‖X̄ᵀX̄‖_F ‖ȲᵀȲ‖_F).
It is 1 for identical representations and invariant to orthogonal transforms and isotropic scaling of
either layer, not to arbitrary invertible linear maps.

QIXAI compares layers by the cosine similarity of their representations. That is defined directly only for
equal widths (the cosine between the flattened (N, C) matrices); for different widths the comparable
quantity is the cosine between the uncentred N × N Gram matrices XXᵀ and YYᵀ. Neither is centred: for
non-negative (post-ReLU) activations every entry of XXᵀ is ≥ 0, so the cosine is ≥ 0 and is dominated
by the mean activation; CKA removes that.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Tuple

import numpy as np
import torch
from torch import Tensor

MEASURES = ("cka", "gram_cosine")


def _pair(x, y) -> Tuple[Tensor, Tensor]:
    x, y = torch.as_tensor(x).double(), torch.as_tensor(y).double()
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"representations must be (N, C) matrices (pooled activations), got shapes "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"both representations must cover the same inputs: {x.shape[0]} rows vs {y.shape[0]}")
    return x, y


def _cosine(a: Tensor, b: Tensor, what: str) -> float:
    norms = a.norm() * b.norm()
    if norms == 0:
        raise ValueError(f"{what} is all zero for one of the layers, so the similarity is undefined")
    return float((a * b).sum() / norms)


def gram(x: Tensor, centred: bool) -> Tensor:
    """The N × N Gram matrix of an (N, C) representation, of the column-centred one if ``centred``."""
    if centred:
        x = x - x.mean(dim=0, keepdim=True)
    return x @ x.T


def linear_cka(x, y) -> float:
    """Linear centred kernel alignment between (N, Cx) and (N, Cy) representations of the same inputs.

    Args:
        x, y: activation matrices (tensors or arrays), one row per input.

    Returns:
        CKA in [0, 1].
    """
    x, y = _pair(x, y)
    return _cosine(gram(x, True), gram(y, True), "the centred Gram matrix (the layer is constant)")


def gram_cosine(x, y) -> float:
    """Cosine between the uncentred N × N Gram matrices XXᵀ and YYᵀ (any widths)."""
    x, y = _pair(x, y)
    return _cosine(gram(x, False), gram(y, False), "the Gram matrix")


def representation_cosine(x, y) -> float:
    """QIXAI's cosine similarity of two representations: of the flattened matrices when the widths agree,
    else of their Gram matrices (:func:`gram_cosine`)."""
    x, y = _pair(x, y)
    if x.shape[1] == y.shape[1]:
        return _cosine(x, y, "the representation")
    return gram_cosine(x, y)


def similarity_matrix(activations: Mapping[str, Tensor], measure: str = "cka") -> Tuple[List[str], np.ndarray]:
    """Layer × layer similarity over the same inputs.

    Gram matrices are formed once per layer (N × N each), so wide layers cost no more than narrow ones.

    Args:
        activations: ``{layer: (N, C) activations}`` (pooled), all over the same N inputs.
        measure: ``"cka"`` (linear CKA) or ``"gram_cosine"`` (QIXAI's cosine, defined for all widths).

    Returns:
        (layer names, (L, L) symmetric matrix with ones on the diagonal).
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    names = list(activations)
    if not names:
        raise ValueError("no layers given; pass {layer name: (N, C) activations}")
    grams: Dict[str, Tensor] = {}
    for name in names:
        x, _ = _pair(activations[name], activations[names[0]])
        g = gram(x, measure == "cka")
        norm = g.norm()
        if norm == 0:
            raise ValueError(f"layer {name!r} is constant over these inputs, so its similarity is undefined")
        grams[name] = (g / norm).flatten()
    stacked = torch.stack([grams[name] for name in names])
    matrix = (stacked @ stacked.T).numpy()
    np.fill_diagonal(matrix, 1.0)
    return names, matrix


def most_similar_pairs(names: List[str], matrix: np.ndarray, top: int = 3) -> List[dict]:
    """The ``top`` most similar distinct layer pairs of a similarity matrix, most similar first."""
    rows, cols = np.triu_indices(len(names), k=1)
    order = np.argsort(-matrix[rows, cols], kind="stable")[:top]
    return [{"a": names[rows[i]], "b": names[cols[i]], "similarity": float(matrix[rows[i], cols[i]])} for i in order]
