r"""Spectra of layer activations: PCA by SVD, and the density-matrix (von Neumann) reading of it.

For a layer's (N, C) matrix of pooled activations X (N inputs, C maps), centred per map, the singular values
s_i give the variance of each principal component, s_i² / (N − 1). The explained-variance ratios
λ_i = s_i² / Σ s_j² are also the eigenvalues of the density matrix ρ = Σ / tr Σ (Σ the covariance): ρ is
symmetric, positive semi-definite and of unit trace, so S(ρ) = −Σ λ_i log λ_i is its von Neumann entropy
(in nats) and exp(S) the effective rank of Roy & Vetterli (2007): 1 when one direction carries all the
variance, C when every direction carries the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Sequence

import numpy as np
import torch
from torch import Tensor

THRESHOLDS = (0.90, 0.95, 0.99)


def _as_matrix(activations, name: str = "activations") -> Tensor:
    matrix = torch.as_tensor(activations).double()
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be an (N, C) matrix (pool the maps first: pooled=True), "
                         f"got shape {tuple(matrix.shape)}")
    if matrix.shape[0] < 2:
        raise ValueError(f"{name} has {matrix.shape[0]} row(s); a spectrum needs at least 2 inputs")
    return matrix


def entropy_of_spectrum(probabilities: np.ndarray) -> float:
    """−Σ p log p (nats) over the positive entries of a probability vector."""
    p = np.asarray(probabilities, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def components_needed(cumulative: np.ndarray, threshold: float) -> int:
    """The fewest leading components whose cumulative ratio reaches ``threshold``."""
    return int(min(np.searchsorted(cumulative, threshold - 1e-12) + 1, cumulative.size))


@dataclass
class LayerSpectrum:
    """PCA spectrum of one layer.

    Attributes:
        singular_values: (min(N, C),) singular values of the centred activation matrix, descending.
        explained_variance_ratio: λ_i, the eigenvalues of ρ, descending, summing to 1.
        cumulative: running sums of ``explained_variance_ratio``.
        components: ``{threshold: components needed}`` for 0.90, 0.95, 0.99 (or the thresholds asked for).
        entropy: von Neumann entropy S(ρ) in nats.
        effective_rank: exp(S).
        num_samples, num_features: N and C.
    """

    singular_values: np.ndarray
    explained_variance_ratio: np.ndarray
    cumulative: np.ndarray
    components: Dict[float, int]
    entropy: float
    effective_rank: float
    num_samples: int
    num_features: int
    dead_features: int = field(default=0)

    def to_dict(self, max_ratios: int = 50) -> dict:
        """JSON-ready summary; the ratio lists are cut to the first ``max_ratios`` components."""
        return {
            "num_samples": self.num_samples,
            "num_features": self.num_features,
            "dead_features": self.dead_features,
            "components": {f"{t:.0%}": n for t, n in self.components.items()},
            "entropy_nats": self.entropy,
            "effective_rank": self.effective_rank,
            "top5_variance": float(self.cumulative[min(4, self.cumulative.size - 1)]),
            "explained_variance_ratio": self.explained_variance_ratio[:max_ratios].tolist(),
        }


def activation_spectrum(activations, thresholds: Sequence[float] = THRESHOLDS) -> LayerSpectrum:
    """PCA spectrum and von Neumann entropy of an (N, C) activation matrix (computed in float64).

    Args:
        activations: (N, C) tensor or array, one row per input, one column per map.
        thresholds: variance fractions to report the number of components for.

    Returns:
        A :class:`LayerSpectrum`.
    """
    matrix = _as_matrix(activations)
    centred = matrix - matrix.mean(dim=0, keepdim=True)
    singular = torch.linalg.svdvals(centred).numpy()
    power = singular ** 2
    if power.sum() <= 0:
        raise ValueError("every map is constant over these inputs (zero variance), so there is no spectrum; "
                         "use more varied inputs or another layer")
    ratios = power / power.sum()
    cumulative = np.cumsum(ratios)
    entropy = entropy_of_spectrum(ratios)
    dead = int((centred.abs().amax(dim=0) == 0).sum())
    return LayerSpectrum(singular, ratios, cumulative, {t: components_needed(cumulative, t) for t in thresholds},
                         entropy, float(np.exp(entropy)), matrix.shape[0], matrix.shape[1], dead)


def density_matrix(activations) -> Tensor:
    """ρ = Σ / tr Σ, the trace-normalised covariance of an (N, C) matrix: (C, C), float64."""
    matrix = _as_matrix(activations)
    centred = matrix - matrix.mean(dim=0, keepdim=True)
    covariance = centred.T @ centred
    trace = covariance.trace()
    if trace <= 0:
        raise ValueError("the covariance has zero trace (every map constant), so ρ is undefined")
    return covariance / trace


def von_neumann_entropy(rho) -> float:
    """S(ρ) = −tr ρ log ρ = −Σ λ log λ over the eigenvalues of a density matrix (nats).

    Args:
        rho: (C, C) symmetric positive semi-definite matrix of unit trace.
    """
    rho = torch.as_tensor(rho).double()
    if rho.ndim != 2 or rho.shape[0] != rho.shape[1]:
        raise ValueError(f"a density matrix is square, got shape {tuple(rho.shape)}")
    if not torch.allclose(rho, rho.T, atol=1e-10) or abs(float(rho.trace()) - 1.0) > 1e-8:
        raise ValueError("a density matrix must be symmetric with unit trace; normalise it with density_matrix()")
    eigenvalues = torch.linalg.eigvalsh(rho).clamp_min(0.0).numpy()
    return entropy_of_spectrum(eigenvalues / eigenvalues.sum())


@dataclass
class ImageSpectra:
    """Spectra of each input's own (C, H·W) map matrix (uncentred: the maps as the layer emits them).

    Attributes:
        energy_ratios: (N, min(C, H·W)) s_i² / Σ s² per input, descending.
        effective_rank: (N,) exp of the entropy of each row of ``energy_ratios``.
        components: ``{threshold: (N,) components needed}``.
    """

    energy_ratios: np.ndarray
    effective_rank: np.ndarray
    components: Dict[float, np.ndarray]

    def to_dict(self) -> dict:
        return {
            "num_images": int(self.effective_rank.size),
            "effective_rank_mean": float(self.effective_rank.mean()),
            "effective_rank_min": float(self.effective_rank.min()),
            "effective_rank_max": float(self.effective_rank.max()),
            "components_mean": {f"{t:.0%}": float(n.mean()) for t, n in self.components.items()},
            "top1_energy_mean": float(self.energy_ratios[:, 0].mean()),
        }


def image_spectra(maps, thresholds: Sequence[float] = THRESHOLDS) -> ImageSpectra:
    """Singular-value spectrum of every input's (C, H·W) feature-map matrix, batched.

    Args:
        maps: (N, C, H, W) activations (``collect_activations(..., pooled=False)``).
        thresholds: energy fractions to report the number of components for.
    """
    maps = torch.as_tensor(maps).double()
    if maps.ndim != 4:
        raise ValueError(f"maps must be (N, C, H, W), got shape {tuple(maps.shape)}")
    flat = maps.flatten(2)
    # s_i² are the eigenvalues of the smaller Gram matrix (C × C or H·W × H·W): far cheaper than an SVD of
    # each (C, H·W) matrix when one side is small (1280 × 49 at EfficientNet's head).
    gram = flat @ flat.transpose(1, 2) if flat.shape[1] <= flat.shape[2] else flat.transpose(1, 2) @ flat
    # numpy's batched eigvalsh: torch's took 4-12 s on EfficientNet's block-10 Gram matrices (64 × 112²), numpy 0.2 s
    power = torch.from_numpy(np.linalg.eigvalsh(gram.numpy())[:, ::-1].copy()).clamp_min(0.0)
    total = power.sum(dim=1, keepdim=True)
    if bool((total == 0).any()):
        raise ValueError("an input has all-zero maps in this layer, so its spectrum is undefined")
    ratios = (power / total).numpy()
    cumulative = np.cumsum(ratios, axis=1)
    entropies = np.array([entropy_of_spectrum(row) for row in ratios])
    components = {t: np.array([components_needed(row, t) for row in cumulative]) for t in thresholds}
    return ImageSpectra(ratios, np.exp(entropies), components)
