"""Grid pointing game (Böhle et al., "Convolutional Dynamic Alignment Networks", 2021).

Images of different (confidently) predicted classes are tiled into a rows × cols grid; explaining
the class of one cell, a good explanation puts its positive attribution inside that cell.
:func:`build_grid_composites` makes the grids from any images and model; :class:`GridPointingGame`
scores attributions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Tuple

import torch
from torch import Tensor
from torchmetrics import Metric


@dataclass(frozen=True)
class GridComposites:
    """Grid images and what sits in each cell.

    Attributes:
        images: (Q, C, rows·h, cols·w) composites.
        cell_classes: (Q, rows·cols) predicted class of the image in each cell, cells row-major
            (cell 0 top-left, cell 1 to its right, ...).
        source_indices: (Q, rows·cols) index of each cell's image in the images given to the builder.
        grid: (rows, cols).
    """

    images: Tensor
    cell_classes: Tensor
    source_indices: Tensor
    grid: Tuple[int, int]

    def expand_per_cell(self) -> Tuple[Tensor, Tensor, Tensor]:
        """One evaluation per (composite, cell): ``(inputs, targets, target_cells)``.

        Returns:
            inputs (Q·G, C, H, W) each composite repeated G = rows·cols times, targets (Q·G,) the
            class to explain, target_cells (Q·G,) the cell holding it; pass ``inputs``/``targets``
            to the explainer and the attributions with ``target_cells`` to :class:`GridPointingGame`.
        """
        num_cells = self.cell_classes.shape[1]
        inputs = self.images.repeat_interleave(num_cells, dim=0)
        target_cells = torch.arange(num_cells, device=self.images.device).repeat(self.images.shape[0])
        return inputs, self.cell_classes.reshape(-1), target_cells


def build_grid_composites(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    num_composites: int,
    grid: Tuple[int, int] = (2, 2),
    min_confidence: float = 0.5,
    seed: int = 0,
    internal_batch_size: int = 64,
) -> GridComposites:
    """Tile images of distinct predicted classes into grids.

    Each composite takes rows·cols distinct classes, drawn uniformly (seeded) among the classes
    predicted with softmax confidence ≥ ``min_confidence``, and for each class one of its
    confidently predicted images. The model never sees the composites here.

    Args:
        model: maps (B, C, h, w) to (B, num_classes) logits; mode left alone, no gradients taken.
        images: (M, C, h, w) candidate images, preprocessed for the model.
        num_composites: Q, number of grids to build.
        grid: (rows, cols); Böhle et al. use (2, 2).
        min_confidence: softmax probability an image's predicted class needs to be used.
        seed: seed of the draws; same seed, same composites.
        internal_batch_size: most images per model call.

    Returns:
        :class:`GridComposites`.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (M, C, h, w), got shape {tuple(images.shape)}")
    rows, cols = grid
    num_cells = rows * cols
    if internal_batch_size < 1:
        raise ValueError(f"internal_batch_size must be >= 1, got {internal_batch_size}")
    if rows < 1 or cols < 1 or num_cells < 2 or num_composites < 1:
        raise ValueError(f"need a grid of >= 2 cells and num_composites >= 1, got grid={grid}, {num_composites}")
    with torch.no_grad():
        logits = torch.cat(
            [model(images[start : start + internal_batch_size]) for start in range(0, len(images), internal_batch_size)]
        )
    confidence, predicted = torch.softmax(logits, dim=1).max(dim=1)
    confident = torch.nonzero(confidence >= min_confidence).squeeze(1)
    # Confident images sorted by class: class c's images sit at by_class[first_slot[c] : + class_count[c]].
    by_class = confident[torch.argsort(predicted[confident], stable=True)]
    classes, class_count = torch.unique(predicted[by_class], return_counts=True)
    if classes.numel() < num_cells:
        raise ValueError(
            f"only {classes.numel()} distinct classes are predicted with confidence >= {min_confidence}, "
            f"but a {rows}x{cols} grid needs {num_cells}; lower min_confidence or pass more varied images"
        )
    first_slot = torch.cumsum(class_count, 0) - class_count

    generator = torch.Generator().manual_seed(seed)
    class_draws = torch.rand(num_composites, classes.numel(), generator=generator).to(classes.device)
    chosen = torch.argsort(class_draws, dim=1)[:, :num_cells]
    image_draws = torch.rand(num_composites, num_cells, generator=generator).to(classes.device)
    offset = (image_draws * class_count[chosen]).long()
    source = by_class[first_slot[chosen] + offset.clamp(max=class_count[chosen] - 1)]

    _, channels, height, width = images.shape
    tiles = images[source].view(num_composites, rows, cols, channels, height, width)
    composites = tiles.permute(0, 3, 1, 4, 2, 5).reshape(num_composites, channels, rows * height, cols * width)
    return GridComposites(composites, classes[chosen], source, (rows, cols))


def cell_attribution_shares(attributions: Tensor, grid: Tuple[int, int]) -> Tensor:
    """(N, rows·cols) share of each sample's positive attribution in each cell (zeros if none).

    Args:
        attributions: (N, 1, H, W) or (N, H, W), H and W divisible by rows and cols.
        grid: (rows, cols).
    """
    if attributions.ndim == 4 and attributions.shape[1] == 1:
        attributions = attributions.squeeze(1)
    if attributions.ndim != 3:
        raise ValueError(
            f"attributions must be (N, 1, H, W) or (N, H, W), got {tuple(attributions.shape)}; "
            "sum multi-channel attributions over dim 1 first"
        )
    num_samples, height, width = attributions.shape
    rows, cols = grid
    if height % rows or width % cols:
        raise ValueError(
            f"attributions of size {height}x{width} do not split into a {rows}x{cols} grid; upsample them "
            "to the composite's size, e.g. captum.attr.LayerAttribution.interpolate(attr, (H, W), 'bilinear')"
        )
    if not torch.isfinite(attributions).all():
        raise ValueError("attributions contain NaN or inf")
    positive = attributions.clamp(min=0).double()
    cells = positive.reshape(num_samples, rows, height // rows, cols, width // cols).sum(dim=(2, 4)).flatten(1)
    totals = cells.sum(dim=1, keepdim=True)
    return torch.where(totals > 0, cells / totals.clamp_min(1e-300), torch.zeros_like(cells))


class GridPointingGame(Metric):
    """Mean share of positive attribution inside the target's cell. Higher is better; range [0, 1].

    A uniform map scores 1 / (rows·cols) (0.25 on 2×2); a map with no positive attribution scores 0.

    ``update(attributions (N, 1, H, W) or (N, H, W), target_cells (N,))`` with cells numbered
    row-major from 0 (top-left); ``compute()`` returns a scalar, NaN before any update.

    Args:
        grid: (rows, cols) of the composites.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    share_sum: Tensor
    total: Tensor

    def __init__(self, grid: Tuple[int, int] = (2, 2), **kwargs) -> None:
        super().__init__(**kwargs)
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"grid must be (rows, cols) with both >= 1, got {grid}")
        self.grid = (int(grid[0]), int(grid[1]))
        self.add_state("share_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, attributions: Tensor, target_cells: Tensor) -> None:
        shares = cell_attribution_shares(torch.as_tensor(attributions), self.grid)
        target_cells = torch.as_tensor(target_cells, device=shares.device)
        num_cells = shares.shape[1]
        if target_cells.shape != (shares.shape[0],) or target_cells.is_floating_point():
            raise ValueError(
                f"target_cells must be ({shares.shape[0]},) integer cell indices, got shape "
                f"{tuple(target_cells.shape)} dtype {target_cells.dtype}"
            )
        if (target_cells < 0).any() or (target_cells >= num_cells).any():
            raise ValueError(f"target_cells must lie in [0, {num_cells}) (row-major cells of the grid)")
        self.share_sum += shares.gather(1, target_cells.long()[:, None]).sum().to(self.share_sum)
        self.total += shares.shape[0]

    def compute(self) -> Tensor:
        return self.share_sum / self.total

    def plot(self, val=None, ax=None):
        """Plot one or more computed values (torchmetrics convention); returns ``(fig, ax)``."""
        return self._plot(val, ax)
