"""The per-prediction QUBO over "keep feature map p?" (METHOD.md §1).

Energy over n ∈ {0,1}^d, minimised::

    E(n) = (1 − β) · ½ Σ_{p,q} J_pq n_p n_q − β Σ_p h_p n_p          (unconstrained)
    E(n) + λ (Σ_p n_p − K)²                                           (k_hot)

The pair term follows one of the authors' three conventions (METHOD.md §8), ``pair_convention``:

- ``"half"`` (default, ours and the paper's formula): (1 − β) · ½ Σ_{p≠q} J_pq n_p n_q — each unordered pair once;
- ``"full_zero_diagonal"``: (1 − β) Σ_{p,q} J_pq n_p n_q with J_pp = 0 — each pair twice;
- ``"full_unit_diagonal"``: (1 − β) Σ_{p,q} J_pq n_p n_q with J_pp = 1 (a unit-diagonal cosine matrix) — each
  pair twice and (1 − β) per selected map (n_p² = n_p), i.e. a linear term −β h_p + (1 − β).

:func:`pair_terms` turns (h, J, β, convention) into the solver-facing ``linear`` and pair-once ``quadratic``.

Variables are the d maps with positive importance α (the pre-filter); variable ``p`` is
feature map ``kept[p]`` of the layer. Bit ``p`` of an integer state index is variable ``p``
(little-endian), the convention shared with :mod:`captum_qubo.solvers.exact` and the annealing simulator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import dimod
import numpy as np

FORMULATIONS = ("unconstrained", "k_hot")
PAIR_CONVENTIONS = ("half", "full_zero_diagonal", "full_unit_diagonal")


def check_pair_convention(pair_convention: str) -> None:
    """Raise a ValueError naming the choices unless ``pair_convention`` is one of :data:`PAIR_CONVENTIONS`."""
    if pair_convention not in PAIR_CONVENTIONS:
        raise ValueError(f"pair_convention must be one of {PAIR_CONVENTIONS}, got {pair_convention!r}")


def pair_terms(h, J, beta: float, pair_convention: str = "half"):
    """The energy's ``linear`` and pair-once ``quadratic`` under a pair convention (numpy arrays or tensors).

    E(n) = linear·n + Σ_{p<q} quadratic_pq n_p n_q, with linear = −βh (+ (1 − β) for ``"full_unit_diagonal"``)
    and quadratic = (1 − β) J (× 2 for both ``"full_*"`` conventions, which count each pair twice).

    Args:
        h: (..., d) normalised importance.
        J: (..., d, d) redundancy with zero diagonal.
        beta: β.
        pair_convention: one of :data:`PAIR_CONVENTIONS`.

    Returns:
        (linear, quadratic), same types as (h, J).
    """
    return linear_terms(h, beta, pair_convention), coupling_scale(beta, pair_convention) * J


def linear_terms(h, beta: float, pair_convention: str = "half"):
    """The energy's ``linear`` alone (−βh, + (1 − β) for ``"full_unit_diagonal"``), as in :func:`pair_terms`."""
    check_pair_convention(pair_convention)
    linear = -beta * h
    return linear + (1.0 - beta) if pair_convention == "full_unit_diagonal" else linear


def coupling_scale(beta: float, pair_convention: str = "half") -> float:
    """The factor c with ``quadratic = c · J`` under a pair convention: (1 − β), doubled by both ``"full_*"``."""
    check_pair_convention(pair_convention)
    return (1.0 if pair_convention == "half" else 2.0) * (1.0 - beta)


@dataclass(frozen=True)
class FeatureMapQubo:
    """A QUBO over the positively-important feature maps of one prediction.

    Attributes:
        linear: (d,) coefficient of n_p in the energy (penalty included for k_hot).
        quadratic: (d, d) symmetric, zero diagonal; each pair p<q contributes
            ``quadratic[p, q] * n_p * n_q`` once.
        offset: constant energy term (λK² for k_hot, else 0).
        kept: (d,) indices of the layer's channels that the variables stand for.
        h: (d,) normalised importance α_p / max α.
        J: (d, d) |cosine similarity| between the kept maps, zero diagonal.
        beta: reward/redundancy trade-off β.
        formulation: ``"unconstrained"`` or ``"k_hot"``.
        k: the exact cardinality for k_hot, else None.
        penalty: λ for k_hot (from :func:`k_hot_penalty`), else 0.
        pair_convention: how J enters the energy (:data:`PAIR_CONVENTIONS`).
    """

    linear: np.ndarray
    quadratic: np.ndarray
    offset: float
    kept: np.ndarray
    h: np.ndarray
    J: np.ndarray
    beta: float
    formulation: str
    k: Optional[int]
    penalty: float
    pair_convention: str = "half"

    @property
    def num_variables(self) -> int:
        return int(self.linear.shape[0])

    def energies(self, states: np.ndarray) -> np.ndarray:
        """Energies of many bitstrings at once.

        Args:
            states: (m, d) or (d,) array of 0/1.

        Returns:
            (m,) float64 energies (a scalar array for a single state).
        """
        n = np.asarray(states, dtype=np.float64)
        if n.shape[-1] != self.num_variables:
            raise ValueError(
                f"states have {n.shape[-1]} variables but the QUBO has {self.num_variables}"
            )
        # ½ nᵀQn counts each pair once because Q is symmetric with zero diagonal.
        return n @ self.linear + 0.5 * np.einsum("...p,...p->...", n @ self.quadratic, n) + self.offset

    def to_bqm(self) -> dimod.BinaryQuadraticModel:
        """The same energy as a ``dimod.BinaryQuadraticModel`` with variables 0..d-1."""
        rows, cols = np.triu_indices(self.num_variables, k=1)
        values = self.quadratic[rows, cols]
        nonzero = values != 0
        return dimod.BinaryQuadraticModel.from_numpy_vectors(
            self.linear, (rows[nonzero], cols[nonzero], values[nonzero]), self.offset, dimod.BINARY
        )

    def selected_channels(self, state: np.ndarray) -> np.ndarray:
        """Layer channel indices of the maps a bitstring keeps."""
        return self.kept[np.asarray(state, dtype=bool)]


def abs_cosine_similarity(feature_maps: np.ndarray) -> np.ndarray:
    """|cos| between flattened maps, zero diagonal; an all-zero map is similar to nothing.

    Args:
        feature_maps: (d, H, W) or (d, HW).

    Returns:
        (d, d) float64 matrix in [0, 1].
    """
    flat = np.asarray(feature_maps, dtype=np.float64).reshape(len(feature_maps), -1)
    norms = np.linalg.norm(flat, axis=1)
    unit = np.divide(flat, norms[:, None], out=np.zeros_like(flat), where=norms[:, None] > 0)
    similarity = np.clip(np.abs(unit @ unit.T), 0.0, 1.0)
    np.fill_diagonal(similarity, 0.0)
    return similarity


def k_hot_penalty(
    h: np.ndarray, J: np.ndarray, beta: float, margin: float = 0.1, pair_convention: str = "half"
) -> float:
    """λ large enough that every minimiser of E + λ(Σn − K)² is K-hot.

    With E(n) = l·n + Σ_{p<q} Q_pq n_p n_q (l, Q from :func:`pair_terms`, Q ≥ 0), flipping bit p on changes E by
    l_p + Σ_{q∈n} Q_pq ∈ [l_p, l_p + Σ_q Q_pq] (flipping it off, by the negative), so
    |ΔE| ≤ Δ := max_p max(|l_p|, |l_p + Σ_q Q_pq|). Under ``"half"`` (l = −βh ≤ 0, Q = (1−β)J) this is
    max_p max(β h_p, (1−β) Σ_q J_pq − β h_p); the ``"full_*"`` conventions double Q and the unit diagonal adds
    (1 − β) to l. A state with |n| = K ± t (t ≥ 1) reaches a K-hot state in t flips, so its energy exceeds that
    K-hot state's by at least λt² − tΔ > 0 whenever λ > Δ. We return Δ + margin·max(Δ, 1): the slack is at least
    ``margin`` in absolute terms (h ≤ 1 sets the scale), so K-hot states beat the rest by a margin no float
    tolerance mistakes for a tie, even when Δ = 0 (β = 0 and J = 0).

    Args:
        h: (d,) linear rewards (≥ 0).
        J: (d, d) non-negative redundancies, zero diagonal.
        beta: β in [0, 1].
        margin: relative slack above the bound (must be > 0 so the inequality is strict).
        pair_convention: one of :data:`PAIR_CONVENTIONS`.

    Returns:
        λ as a float.
    """
    if margin <= 0:
        raise ValueError("margin must be > 0: λ must strictly exceed the flip bound")
    linear, quadratic = pair_terms(
        np.asarray(h, dtype=np.float64), np.asarray(J, dtype=np.float64), beta, pair_convention
    )
    flip = np.maximum(np.abs(linear), np.abs(linear + quadratic.sum(axis=1)))
    flip_bound = float(np.max(flip, initial=0.0))
    return flip_bound + margin * max(flip_bound, 1.0)


def build_feature_map_qubo(
    importance: np.ndarray,
    feature_maps: np.ndarray,
    beta: float = 0.7,
    formulation: str = "unconstrained",
    k: Optional[int] = None,
    pair_convention: str = "half",
) -> FeatureMapQubo:
    """Build the QUBO of METHOD.md §1 for one prediction.

    Args:
        importance: (C,) per-map importance α (Grad-CAM weights).
        feature_maps: (C, H, W) the layer's activations for the sample.
        beta: β ∈ [0, 1]; 0.7 in all of the authors' experiments.
        formulation: ``"unconstrained"`` (selection size emerges) or ``"k_hot"`` (exactly k maps).
        k: the cardinality for ``k_hot``; must satisfy 1 ≤ k ≤ d (d = maps with α > 0).
        pair_convention: how the redundancy enters the energy (:data:`PAIR_CONVENTIONS`).

    Returns:
        A :class:`FeatureMapQubo`. It has d = 0 variables when no map has positive importance.
    """
    alpha = np.asarray(importance, dtype=np.float64).reshape(-1)
    maps = np.asarray(feature_maps, dtype=np.float64)
    if maps.ndim != 3 or maps.shape[0] != alpha.shape[0]:
        raise ValueError(
            f"feature_maps must be (C, H, W) with C = len(importance) = {alpha.shape[0]}, got {maps.shape}"
        )
    if not np.all(np.isfinite(alpha)) or not np.all(np.isfinite(maps)):
        raise ValueError("importance and feature maps must be finite (found NaN or inf); check the inputs")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}, got {formulation!r}")
    check_pair_convention(pair_convention)

    kept = np.flatnonzero(alpha > 0)
    h = alpha[kept] / alpha[kept].max() if kept.size else np.zeros(0)
    J = abs_cosine_similarity(maps[kept]) if kept.size else np.zeros((0, 0))
    return assemble_feature_map_qubo(kept, h, J, beta, formulation, k, pair_convention)


def assemble_feature_map_qubo(
    kept: np.ndarray,
    h: np.ndarray,
    J: np.ndarray,
    beta: float,
    formulation: str,
    k: Optional[int],
    pair_convention: str = "half",
) -> FeatureMapQubo:
    """The QUBO from its parts: kept channels, normalised importance h and redundancy J.

    Shared by :func:`build_feature_map_qubo` and the batched builder, so both give the same problem.
    """
    d = kept.size
    linear, quadratic = pair_terms(h, J, beta, pair_convention)
    offset, penalty = 0.0, 0.0

    if formulation == "k_hot":
        if k is None:
            raise ValueError("formulation='k_hot' needs k (the number of maps to select)")
        if d and not 1 <= k <= d:
            raise ValueError(
                f"k={k} but only {d} maps have positive importance; choose 1 <= k <= {d} "
                "or use formulation='unconstrained'"
            )
        penalty = k_hot_penalty(h, J, beta, pair_convention=pair_convention)
        # λ(Σn − K)² = λ Σ_p n_p (1 − 2K) + λ Σ_{p≠q} n_p n_q + λK²   (n_p² = n_p)
        linear = linear + penalty * (1.0 - 2.0 * k)
        quadratic = quadratic + 2.0 * penalty * (1.0 - np.eye(d))
        offset = penalty * k * k
    elif k is not None:
        raise ValueError("k is only used by formulation='k_hot'; drop k or switch formulation")

    return FeatureMapQubo(
        linear=linear,
        quadratic=quadratic,
        offset=float(offset),
        kept=kept,
        h=h,
        J=J,
        beta=float(beta),
        formulation=formulation,
        k=k if formulation == "k_hot" else None,
        penalty=float(penalty),
        pair_convention=pair_convention,
    )
