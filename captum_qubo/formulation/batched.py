"""The QUBOs of a whole batch at once, on the device the activations are on (METHOD.md §1).

:func:`build_batched_qubos` makes h and J of every sample with one batched matmul instead of a per-sample numpy
loop. Samples keep different numbers of variables d_i (the maps with positive importance); they are padded to
D = max d_i with a mask. Variable p of sample i is channel ``kept[i, p]``, ascending as in
:func:`~captum_qubo.formulation.qubo.build_feature_map_qubo`, so :meth:`BatchedFeatureMapQubo.problem` gives the
same :class:`~captum_qubo.formulation.qubo.FeatureMapQubo` (for dimod samplers, QPUs and ``last_selections``),
built only when asked for.

The solver-facing energy is the unconstrained one, ``linear·n + ½ nᵀ quadratic n`` with linear and quadratic
from :func:`~captum_qubo.formulation.qubo.pair_terms` (−βh and (1−β)J under the default ``"half"`` convention); for ``k_hot`` it equals the penalised QUBO's energy on every K-hot state (the penalty
λ(Σn − K)² vanishes there), so a search that keeps the cardinality by construction needs no penalty.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from captum_qubo.formulation.qubo import (
    FORMULATIONS,
    FeatureMapQubo,
    assemble_feature_map_qubo,
    check_pair_convention,
    coupling_scale,
    linear_terms,
    pair_terms,
)
from captum_qubo.tensor_checks import all_finite


class SampleQuboError(ValueError):
    """One sample's QUBO cannot be built; ``sample`` is its index in the batch, ``reason`` what is wrong."""

    def __init__(self, sample: int, reason: str) -> None:
        super().__init__(f"sample {sample}: {reason}")
        self.sample, self.reason = sample, reason


@dataclass(frozen=True)
class BatchedFeatureMapQubo:
    """The QUBOs of B samples, padded to D variables.

    Attributes:
        kept: (B, D) long, the layer channel of each variable (0 where padded).
        mask: (B, D) bool, True for real variables.
        h: (B, D) normalised importance α_p / max α (0 where padded).
        J: (B, D, D) |cosine| between the kept maps, zero diagonal and zero where padded.
        beta: β.
        formulation: ``"unconstrained"`` or ``"k_hot"``.
        k: the cardinality for ``k_hot``, else None.
        pair_convention: how J enters the energy (:data:`~captum_qubo.formulation.qubo.PAIR_CONVENTIONS`).
    """

    kept: Tensor
    mask: Tensor
    h: Tensor
    J: Tensor
    beta: float
    formulation: str
    k: Optional[int]
    pair_convention: str = "half"

    @property
    def num_problems(self) -> int:
        return int(self.mask.shape[0])

    @property
    def num_variables(self) -> Tensor:
        """(B,) d_i, the real variables of each sample."""
        return self.mask.sum(dim=1)

    # Computed once per batch (a (B, D, D) tensor is read by the solve and the energies alike); a frozen dataclass
    # still has an instance __dict__ for cached_property to fill.
    @cached_property
    def linear(self) -> Tensor:
        """(B, D) the linear term of the unconstrained energy (−βh under ``"half"``; 0 where padded)."""
        return linear_terms(self.h, self.beta, self.pair_convention) * self.mask

    @property
    def quadratic_scale(self) -> float:
        """c with ``quadratic == c · J``: solvers take J and c, so the batch needs no second (B, D, D) tensor."""
        return coupling_scale(self.beta, self.pair_convention)

    @cached_property
    def quadratic(self) -> Tensor:
        """(B, D, D) each pair p<q contributes ``quadratic[p, q]`` once ((1−β)J under ``"half"``); built only when
        asked for (the explainer's solve and energies read J and :attr:`quadratic_scale`)."""
        return pair_terms(self.h, self.J, self.beta, self.pair_convention)[1]

    def problem(self, index: int) -> FeatureMapQubo:
        """Sample ``index``'s QUBO as a per-sample :class:`FeatureMapQubo` (penalty included for k_hot)."""
        d = int(self.mask[index].sum())
        kept = self.kept[index, :d].cpu().numpy()
        h = self.h[index, :d].double().cpu().numpy()
        J = self.J[index, :d, :d].double().cpu().numpy()
        return assemble_feature_map_qubo(kept, h, J, self.beta, self.formulation, self.k, self.pair_convention)

    def energies(self, states: Tensor) -> Tensor:
        """(B,) unconstrained energies of (B, D) 0/1 states (padding must be 0); equals the k_hot
        QUBO's energy on K-hot states."""
        n = states.to(self.h.dtype)
        return (self.linear * n).sum(dim=1) + 0.5 * self.quadratic_scale * torch.einsum("bp,bpq,bq->b", n, self.J, n)


def build_batched_qubos(
    importance: Tensor,
    feature_maps: Tensor,
    beta: float = 0.7,
    formulation: str = "unconstrained",
    k: Optional[int] = None,
    max_variables: Optional[int] = None,
    dtype: torch.dtype = torch.float64,
    pair_convention: str = "half",
    coupling_buffer: Optional[Tensor] = None,
) -> BatchedFeatureMapQubo:
    """Build every sample's QUBO of METHOD.md §1 in a few batched tensor operations.

    Args:
        importance: (B, C) per-map importance α.
        feature_maps: (B, C, H, W) the layer's activations.
        beta: β ∈ [0, 1].
        formulation: ``"unconstrained"`` or ``"k_hot"``.
        k: the cardinality for ``k_hot`` (1 ≤ k ≤ d_i for every sample with d_i > 0).
        max_variables: keep only the ``max_variables`` largest positive α per sample (None: all).
        dtype: the precision of h and J (float64 by default, like the per-sample builder).
        pair_convention: how J enters the energy (:data:`~captum_qubo.formulation.qubo.PAIR_CONVENTIONS`).
        coupling_buffer: optional contiguous tensor to hold J (used when it has at least B·D² elements of
            ``dtype`` on the maps' device; otherwise J is allocated). J is then a view of it, so it is overwritten
            when the buffer is used again. Reusing one saves the page faults of a fresh ~100 MB tensor per batch of
            64 head QUBOs, which on a CPU cost about as much as the matmul that fills it.

    Returns:
        A :class:`BatchedFeatureMapQubo` on the device of ``feature_maps``.

    Raises:
        ValueError: shapes disagree, non-finite values, β outside [0, 1], or k does not fit a sample.
    """
    if feature_maps.dim() != 4 or importance.shape != feature_maps.shape[:2]:
        raise ValueError(
            f"feature_maps must be (B, C, H, W) and importance (B, C); got {tuple(feature_maps.shape)} and "
            f"{tuple(importance.shape)}"
        )
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}, got {formulation!r}")
    check_pair_convention(pair_convention)
    alpha = importance.detach().to(dtype)
    maps = feature_maps.detach()  # converted to ``dtype`` once only the kept maps are gathered
    # One read of the maps says both whether they are finite (NaN and ±inf reach the extremes) and whether any is
    # negative (only then can a cosine be negative and need its |·|).
    lowest, highest = torch.aminmax(maps) if maps.numel() else (maps.new_zeros(()), maps.new_zeros(()))
    if not (all_finite(alpha) and bool(torch.isfinite(lowest) & torch.isfinite(highest))):
        raise ValueError("importance and feature maps must be finite (found NaN or inf); check the inputs")

    positive = alpha > 0
    if max_variables is not None:
        # The max_variables largest positive α; a stable sort keeps the lower channel first on ties.
        order = torch.sort(torch.where(positive, alpha, -torch.inf), dim=1, descending=True, stable=True).indices
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(alpha.shape[1], device=alpha.device).expand_as(order))
        positive &= rank < max_variables
    sizes = positive.sum(dim=1)
    width = int(sizes.max()) if sizes.numel() else 0
    if formulation == "k_hot":
        if k is None:
            raise ValueError("formulation='k_hot' needs k (the number of maps to select)")
        too_small = ((sizes > 0) & (sizes < k)).nonzero().flatten()
        if too_small.numel():
            i = int(too_small[0])
            raise SampleQuboError(
                i, f"k={k} but only {int(sizes[i])} maps have positive importance; choose "
                f"1 <= k <= {int(sizes[i])} or use formulation='unconstrained'"
            )
    elif k is not None:
        raise ValueError("k is only used by formulation='k_hot'; drop k or switch formulation")

    # Channels with positive α first, in ascending channel order: a stable sort of the "not kept" flag.
    kept = torch.sort((~positive).to(torch.int8), dim=1, stable=True).indices[:, :width]
    mask = torch.arange(width, device=alpha.device)[None, :] < sizes[:, None]
    kept = torch.where(mask, kept, torch.zeros_like(kept))

    kept_alpha = torch.where(mask, alpha.gather(1, kept), torch.zeros((), dtype=dtype, device=alpha.device))
    scale = kept_alpha.amax(dim=1, keepdim=True) if width else torch.ones((len(alpha), 1), dtype=dtype, device=alpha.device)
    h = kept_alpha / torch.where(scale > 0, scale, torch.ones_like(scale))

    # Reading the kept maps: as rows of one (B·C, HW) matrix where the maps are contiguous (index_select, ~3x faster
    # than a gather along dim 1 with an expanded index), else (e.g. channels-last) by advanced indexing (~1.4x).
    flat = maps.flatten(2)
    if flat.is_contiguous():
        rows = (kept + flat.shape[1] * torch.arange(len(flat), device=kept.device)[:, None]).flatten()
        kept_maps = flat.view(flat.shape[0] * flat.shape[1], flat.shape[2]).index_select(0, rows).view(
            len(flat), width, flat.shape[2])
    else:
        kept_maps = flat[torch.arange(len(flat), device=kept.device)[:, None], kept]
    kept_maps = kept_maps.to(dtype)
    narrowing = not maps.is_floating_point() or torch.finfo(dtype).max < torch.finfo(maps.dtype).max
    if narrowing and not all_finite(kept_maps):
        raise ValueError(f"feature maps overflow {dtype}; build the QUBOs in a wider dtype (e.g. torch.float64)")
    norms = kept_maps.norm(dim=2, keepdim=True)
    # Dividing by +inf zeroes padded rows and all-zero maps (similar to nothing) in the same pass.
    unit = kept_maps / torch.where((norms > 0) & mask[:, :, None], norms, torch.inf)
    shape = (len(unit), width, width)
    entries = shape[0] * width * width
    if (coupling_buffer is not None and coupling_buffer.dtype == dtype and coupling_buffer.device == unit.device
            and coupling_buffer.is_contiguous() and coupling_buffer.numel() >= entries):
        J = torch.bmm(unit, unit.transpose(1, 2), out=coupling_buffer.view(-1)[:entries].view(shape))
    else:
        J = torch.bmm(unit, unit.transpose(1, 2))
    if bool(lowest < 0):
        J.abs_()  # post-ReLU maps are non-negative: their cosines are sums of non-negative products, already >= 0
    J.clamp_(0.0, 1.0)
    J.diagonal(dim1=1, dim2=2).zero_()
    return BatchedFeatureMapQubo(
        kept=kept, mask=mask, h=h, J=J, beta=float(beta), formulation=formulation,
        k=k if formulation == "k_hot" else None, pair_convention=pair_convention,
    )


def states_to_channels(qubos: BatchedFeatureMapQubo, states: Tensor) -> list:
    """Per sample, the ascending layer channels that a (B, D) state keeps, as int64 numpy arrays."""
    keep = (states.bool() & qubos.mask).cpu().numpy()
    kept = qubos.kept.cpu().numpy()  # int64, each sample's real variables in ascending channel order
    return [kept[i][keep[i]] for i in range(qubos.num_problems)]
