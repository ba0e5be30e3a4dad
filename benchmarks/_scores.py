"""Metric values of one method's explanations, computed with captum_qubo.metrics and kept JSON-ready.

Per-image values are kept next to the means so that subsets (e.g. the images Score-CAM could afford) can be
compared on equal footing; the means themselves always come from the torchmetrics metric objects.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import Tensor, nn

from captum_qubo.metrics import (
    AverageDrop,
    GridPointingGame,
    IncreaseInConfidence,
    cell_attribution_shares,
    deletion_insertion_curve,
    masked_confidences,
)


def disentanglement_summary(computed: dict) -> dict:
    """JSON form of a ``ClassDisentanglement.compute()`` result."""
    return {
        "mean_off_diagonal": float(computed["mean_off_diagonal"]),
        "max_off_diagonal": float(computed["max_off_diagonal"]),
        "matrix": computed["matrix"].tolist(),
    }


def faithfulness_scores(model: nn.Module, inputs: Tensor, saliency: Tensor, targets: Tensor) -> Dict[str, object]:
    """Average Drop % and Increase in Confidence % (plus the per-image softmax scores they come from)."""
    base, masked = masked_confidences(model, inputs, saliency, targets)
    return {
        "average_drop": average_drop(base, masked),
        "increase_in_confidence": increase_in_confidence(base, masked),
        "base_scores": base.tolist(),
        "masked_scores": masked.tolist(),
    }


def average_drop(base: Sequence[float], masked: Sequence[float]) -> float:
    metric = AverageDrop()
    metric.update(torch.as_tensor(base), torch.as_tensor(masked))
    return float(metric.compute())


def increase_in_confidence(base: Sequence[float], masked: Sequence[float]) -> float:
    metric = IncreaseInConfidence()
    metric.update(torch.as_tensor(base), torch.as_tensor(masked))
    return float(metric.compute())


def perturbation_aucs(
    model: nn.Module,
    inputs: Tensor,
    saliency: Tensor,
    targets: Tensor,
    steps: int,
    internal_batch_size: int = 64,
) -> Dict[str, list]:
    """Per-image deletion AUC (zeros baseline) and insertion AUC (blur baseline), RISE's defaults.

    Same curve and trapezoid area as ``DeletionAUC`` / ``InsertionAUC`` (whose means the tests compare against),
    kept per image.
    """
    aucs = {}
    for mode, baseline in (("deletion", "zeros"), ("insertion", "blur")):
        fractions, probabilities = deletion_insertion_curve(
            model, inputs, saliency, targets, mode, steps, baseline, internal_batch_size=internal_batch_size
        )
        aucs[f"{mode}_auc_per_image"] = torch.trapezoid(probabilities.double(), fractions, dim=1).tolist()
    return aucs


def pointing_scores(saliency: Tensor, target_cells: Tensor, grid=(2, 2)) -> Dict[str, object]:
    """Grid pointing game: the mean share in the target cell (``GridPointingGame``) and the per-evaluation shares."""
    metric = GridPointingGame(grid)
    metric.update(saliency, target_cells)
    shares = cell_attribution_shares(saliency, grid).gather(1, target_cells[:, None].long()).squeeze(1)
    return {"pointing_game": float(metric.compute()), "pointing_shares": shares.tolist()}


def mean(values: Sequence[float]) -> float:
    return float(torch.as_tensor(values, dtype=torch.float64).mean()) if len(values) else float("nan")
