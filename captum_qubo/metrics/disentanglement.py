"""Class disentanglement of feature-map selections (METHOD.md §4, the paper's metric).

For each class c, p_c(k) is how often map k is selected over the class's images, normalised to
sum 1. The class × class matrix holds the Bhattacharyya coefficient
BC(c, c') = Σ_k sqrt(p_c(k) p_c'(k)): 1 on the diagonal, 0 when two classes rely on disjoint maps.
The state is a (num_classes, num_channels) count matrix summed across processes.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric


def top_k_mask(channel_weights: Tensor, k: Union[int, Sequence[int], Tensor]) -> Tensor:
    """Boolean mask of each sample's ``k`` largest channel weights (a baseline's "selection").

    Ties go to the lower channel index, so the mask is deterministic.

    Args:
        channel_weights: (N, C) per-map weights of any method (``last_channel_weights``).
        k: maps to keep: one int for all samples or (N,) per sample (e.g. the QUBO's selection
            sizes), each in [0, C].

    Returns:
        (N, C) bool tensor with exactly ``k[i]`` True entries in row i.
    """
    if channel_weights.ndim != 2:
        raise ValueError(f"channel_weights must be (N, C), got shape {tuple(channel_weights.shape)}")
    num_samples, num_channels = channel_weights.shape
    k = torch.as_tensor(k, device=channel_weights.device)
    if k.is_floating_point():
        raise ValueError(f"k must be integer map counts, got dtype {k.dtype}")
    k = k.long().expand(num_samples) if k.ndim == 0 else k.long()
    if k.shape != (num_samples,):
        raise ValueError(f"k must be an int or have shape ({num_samples},), got {tuple(k.shape)}")
    if (k < 0).any() or (k > num_channels).any():
        raise ValueError(f"every k must lie in [0, {num_channels}] (the number of channels)")
    order = torch.argsort(channel_weights, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(num_channels, device=order.device).expand_as(order))
    return rank < k[:, None]


def channel_sets_to_mask(channel_sets: Sequence[Sequence[int]], num_channels: int) -> Tensor:
    """(N, C) bool mask from per-sample lists of selected channel indices (e.g. ``FeatureMapSelection.channels``)."""
    mask = torch.zeros(len(channel_sets), num_channels, dtype=torch.bool)
    rows = np.repeat(np.arange(len(channel_sets)), [len(channels) for channels in channel_sets])
    cols = np.concatenate([np.zeros(0)] + [np.asarray(channels).reshape(-1) for channels in channel_sets])
    cols = cols.astype(np.int64)
    if cols.size and (cols.min() < 0 or cols.max() >= num_channels):
        raise ValueError(f"channel indices must lie in [0, {num_channels})")
    mask[torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)] = True
    return mask


class ClassDisentanglement(Metric):
    """Bhattacharyya class × class overlap of the feature maps selected per class.

    ``update(selected, classes)``: ``selected`` (N, num_channels) bool mask of the maps chosen for
    each image, ``classes`` (N,) long class of each image (true or predicted, your choice).

    ``compute()`` returns a dict:

    - ``"matrix"``: (num_classes, num_classes) float64 BC matrix, symmetric, entries in [0, 1],
      diagonal 1. A class with no selected map at all (no images, or only empty selections) has
      no frequency vector: its row and column are NaN.
    - ``"mean_off_diagonal"``, ``"max_off_diagonal"``: mean and max of BC(c, c') over pairs
      c ≠ c' of classes that have selections (NaN if fewer than two). Lower is better; range
      [0, 1]; 0 means every class relies on maps no other class uses.

    Args:
        num_classes: number of classes K.
        num_channels: number of feature maps C in the explained layer.
        class_names: optional K names used by :meth:`plot`.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    selection_counts: Tensor

    def __init__(
        self,
        num_classes: int,
        num_channels: int,
        class_names: Optional[Sequence[str]] = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 1 or num_channels < 1:
            raise ValueError(f"num_classes and num_channels must be >= 1, got {num_classes}, {num_channels}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names but num_classes={num_classes}")
        self.num_classes = num_classes
        self.num_channels = num_channels
        self.class_names = list(class_names) if class_names is not None else None
        self.add_state(
            "selection_counts", default=torch.zeros(num_classes, num_channels, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, selected: Tensor, classes: Tensor) -> None:
        selected = torch.as_tensor(selected, device=self.device)
        classes = torch.as_tensor(classes, device=self.device)
        if selected.dtype != torch.bool:
            raise ValueError(
                f"selected must be a bool mask, got dtype {selected.dtype}; use top_k_mask(weights, k) "
                "for channel weights or channel_sets_to_mask(...) for index lists"
            )
        if selected.ndim != 2 or selected.shape[1] != self.num_channels:
            raise ValueError(f"selected must be (N, {self.num_channels}), got shape {tuple(selected.shape)}")
        if classes.ndim != 1 or classes.shape[0] != selected.shape[0] or classes.is_floating_point():
            raise ValueError(
                f"classes must be (N,) = ({selected.shape[0]},) integer class indices, got "
                f"shape {tuple(classes.shape)} dtype {classes.dtype}"
            )
        if classes.numel() and (classes.min() < 0 or classes.max() >= self.num_classes):
            raise ValueError(f"class indices must lie in [0, {self.num_classes})")
        self.selection_counts.index_add_(0, classes.long(), selected.long())

    def compute(self) -> dict:
        counts = self.selection_counts.double()
        totals = counts.sum(dim=1, keepdim=True)
        frequencies = counts / totals  # NaN rows for classes without selections
        root = frequencies.sqrt()
        matrix = (root @ root.T).clamp(max=1.0)
        has_selections = totals.squeeze(1) > 0
        off_diagonal = has_selections[:, None] & has_selections[None, :]
        off_diagonal.fill_diagonal_(False)
        pairs = matrix[off_diagonal]
        nan = torch.tensor(float("nan"), dtype=matrix.dtype, device=matrix.device)
        return {
            "matrix": matrix,
            "mean_off_diagonal": pairs.mean() if pairs.numel() else nan,
            "max_off_diagonal": pairs.max() if pairs.numel() else nan,
        }

    def plot(self, val: Optional[Union[dict, Tensor]] = None, ax=None, class_names: Optional[Sequence[str]] = None):
        """Draw the BC matrix as an annotated heat map.

        Args:
            val: a ``compute()`` result or its matrix; computed now when None.
            ax: matplotlib axes to draw on; a new figure when None.
            class_names: tick labels; defaults to the names given at construction, else indices.

        Returns:
            ``(fig, ax)``.
        """
        import matplotlib.pyplot as plt

        val = self.compute() if val is None else val
        matrix = (val["matrix"] if isinstance(val, dict) else val).detach().cpu().double().numpy()
        names = class_names or self.class_names or [str(c) for c in range(matrix.shape[0])]
        if ax is None:
            size = max(4.0, 1.0 + 0.6 * matrix.shape[0])
            fig, ax = plt.subplots(figsize=(size + 1.5, size))
        else:
            fig = ax.get_figure()
        image = ax.imshow(np.ma.masked_invalid(matrix), vmin=0.0, vmax=1.0, cmap="viridis")
        fig.colorbar(image, ax=ax, label="Bhattacharyya coefficient")
        rows, cols = np.indices(matrix.shape)
        for row, col, value in zip(rows.ravel(), cols.ravel(), matrix.ravel()):
            missing = np.isnan(value)
            ax.text(col, row, "–" if missing else f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="gray" if missing else "black" if value > 0.6 else "white")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_title("Overlap of selected maps between classes\n(lower off-diagonal = more disentangled)", fontsize=10)
        return fig, ax
