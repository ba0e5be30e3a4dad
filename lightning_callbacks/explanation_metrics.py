"""The per-method metric objects a callback updates each explained epoch (all torchmetrics, so they sync).

One :class:`ExplanationMetrics` per explanation method (the QUBO selection, the Grad-CAM top-K
baseline): class disentanglement of the selected maps, Average Drop, Increase in Confidence and,
for the method that sets the selection size (the QUBO's), the mean number of selected maps, the mean
solve time and the number of explained samples. Under DDP every rank
updates with its share and ``compute()`` sums the states over ranks, so the values equal those of
one process explaining all samples.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor
from torch.nn import Module
from torchmetrics import MeanMetric, SumMetric

from captum_qubo.metrics import AverageDrop, ClassDisentanglement, IncreaseInConfidence

METRIC_NAMES = (
    "bc_mean_off_diagonal",
    "bc_max_off_diagonal",
    "average_drop",
    "increase_in_confidence",
    "mean_selected_maps",
    "mean_solve_seconds",
    "num_samples",
)


class ExplanationMetrics(Module):
    """Epoch accumulators for one explanation method.

    Args:
        num_classes: classes of the explained model (rows of the disentanglement matrix).
        num_channels: feature maps of the explained layer.
        selects: whether this method solves the QUBO that sets the selection size, and so also reports
            ``mean_selected_maps``, ``mean_solve_seconds`` and ``num_samples`` (a baseline cut to the same
            sizes would repeat two of them). Fixed at construction, not inferred from updates, so every DDP
            rank runs the same collective syncs even when its share of samples is empty.
    """

    def __init__(self, num_classes: int, num_channels: int, selects: bool) -> None:
        super().__init__()
        self.selects = selects
        self.disentanglement = ClassDisentanglement(num_classes, num_channels)
        self.average_drop = AverageDrop()
        self.increase_in_confidence = IncreaseInConfidence()
        accumulators = [self.average_drop, self.increase_in_confidence]
        if selects:
            self.selected_maps = MeanMetric()
            self.solve_seconds = MeanMetric()
            self.num_samples = SumMetric()
            accumulators += [self.selected_maps, self.solve_seconds, self.num_samples]
        # float64 sums, so sharded (DDP) and single-process values agree closely; the BC counts stay integer.
        for metric in accumulators:
            metric.set_dtype(torch.float64)

    def update(
        self,
        selected: Tensor,
        classes: Tensor,
        base_scores: Tensor,
        masked_scores: Tensor,
        solve_seconds: Optional[Tensor] = None,
    ) -> None:
        """Add one batch: (N, C) selected-map mask, (N,) classes, (N,) softmax scores on x and on x ⊙ map, and
        for the selecting method (N,) solve seconds."""
        self.disentanglement.update(selected, classes)
        self.average_drop.update(base_scores, masked_scores)
        self.increase_in_confidence.update(base_scores, masked_scores)
        if self.selects:
            self.selected_maps.update(selected.sum(dim=1).double())
            self.solve_seconds.update(solve_seconds)
            self.num_samples.update(torch.tensor(float(selected.shape[0])))

    def compute(self) -> Dict[str, object]:
        """Synced epoch values: scalar floats by :data:`METRIC_NAMES` (the selecting method's three only if
        ``selects``), and "matrix"."""
        disentanglement = self.disentanglement.compute()
        values: Dict[str, object] = {
            "bc_mean_off_diagonal": float(disentanglement["mean_off_diagonal"]),
            "bc_max_off_diagonal": float(disentanglement["max_off_diagonal"]),
            "average_drop": float(self.average_drop.compute()),
            "increase_in_confidence": float(self.increase_in_confidence.compute()),
        }
        if self.selects:
            values["mean_selected_maps"] = float(self.selected_maps.compute())
            values["mean_solve_seconds"] = float(self.solve_seconds.compute())
            values["num_samples"] = float(self.num_samples.compute())
        values["matrix"] = disentanglement["matrix"].cpu()
        return values

    def reset(self) -> None:
        for metric in self.children():
            metric.reset()
