"""Pictures of the analyses, drawn headless on matplotlib's Agg canvas (no pyplot, no display).

Each function returns a :class:`matplotlib.figure.Figure`; :func:`save_figure` writes it atomically.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from captum_qubo.analyses.map_information import MutualInformation, gaussian_mutual_information
from captum_qubo.analyses.report import write_atomic
from captum_qubo.analyses.spectrum import LayerSpectrum


def save_figure(figure: Figure, path: Union[str, Path], dpi: int = 110) -> Path:
    """PNG of ``figure`` at ``path``, written to a temporary name and renamed."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return write_atomic(path, buffer.getvalue())


def spectrum_figure(spectra: Mapping[str, LayerSpectrum], title: str = "") -> Figure:
    """Explained-variance ratio per component (log scale) and the cumulative curve, one line per layer."""
    figure = Figure(figsize=(11, 4.2))
    ratio_axes, cumulative_axes = figure.subplots(1, 2)
    for name, spectrum in spectra.items():
        kept = spectrum.explained_variance_ratio > 1e-12  # the last of N centred components is 0 up to rounding
        index = np.arange(1, kept.sum() + 1)
        # labels lead with the width: matplotlib hides labels that start with "_" (as "_blocks.2" does)
        ratio_axes.plot(index, spectrum.explained_variance_ratio[kept], label=f"{spectrum.num_features} maps: {name}")
        cumulative_axes.plot(index, spectrum.cumulative[kept], label=f"eff. rank {spectrum.effective_rank:.1f}: {name}")
    ratio_axes.set(xscale="log", yscale="log", xlabel="principal component", ylabel="explained variance ratio")
    for level in (0.90, 0.95, 0.99):
        cumulative_axes.axhline(level, color="grey", lw=0.6, ls=":")
    cumulative_axes.set(xscale="log", xlabel="components", ylabel="cumulative explained variance", ylim=(0, 1.01))
    ratio_axes.legend(fontsize=7)
    cumulative_axes.legend(fontsize=7)
    figure.suptitle(title or "Spectra of the pooled activations")
    return figure


def _heatmap(axes, matrix: np.ndarray, names: Sequence[str], title: str, vmin=0.0, vmax=1.0) -> None:
    image = axes.imshow(matrix, vmin=vmin, vmax=vmax, cmap="viridis")
    axes.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    axes.set_yticks(range(len(names)), names, fontsize=7)
    if len(names) <= 12:
        for (row, col), value in np.ndenumerate(matrix):
            axes.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=6,
                      color="white" if value < 0.6 * vmax else "black")
    axes.set_title(title, fontsize=9)
    axes.figure.colorbar(image, ax=axes, shrink=0.8)


def similarity_figure(names: List[str], matrices: Mapping[str, np.ndarray]) -> Figure:
    """One layer × layer heat map per similarity measure (e.g. CKA and the Gram cosine)."""
    figure = Figure(figsize=(5.2 * len(matrices), 4.6))
    axes = np.atleast_1d(figure.subplots(1, len(matrices)))
    for ax, (title, matrix) in zip(axes, matrices.items()):
        _heatmap(ax, np.asarray(matrix), names, title)
    return figure


def mutual_information_figure(result: MutualInformation, title: str, top: int = 10,
                              labels: Optional[Sequence[str]] = None) -> Figure:
    """MI heat map with the ``top`` pairs circled, and MI against what Pearson r alone implies."""
    figure = Figure(figsize=(11, 4.6))
    heat_axes, scatter_axes = figure.subplots(1, 2)
    matrix = np.nan_to_num(result.matrix)
    image = heat_axes.imshow(matrix, cmap="magma", vmin=0.0, interpolation="nearest")
    figure.colorbar(image, ax=heat_axes, shrink=0.8, label="MI (nats)")
    pairs = result.top_pairs(top)
    heat_axes.scatter([p["b"] for p in pairs], [p["a"] for p in pairs], s=60, facecolors="none",
                      edgecolors="cyan", linewidths=1.2, label=f"top {len(pairs)} pairs")
    heat_axes.legend(fontsize=7, loc="upper right")
    heat_axes.set(xlabel=labels[1] if labels else "map", ylabel=labels[0] if labels else "map", title=title)
    values, r = result.pair_values(), (result.pearson[np.triu_indices(result.pearson.shape[0], 1)]
                                       if result.within else result.pearson.reshape(-1))
    shown = np.random.default_rng(0).permutation(values.size)[:20000]
    scatter_axes.scatter(gaussian_mutual_information(r[shown]), values[shown], s=2, alpha=0.3)
    limit = float(max(values.max(), 1e-3))
    scatter_axes.plot([0, limit], [0, limit], color="grey", lw=0.8, ls="--", label="MI = −½log(1−r²)")
    scatter_axes.set(xlabel="Gaussian MI from Pearson r, −½log(1−r²)", ylabel="KSG MI (nats)",
                     title=f"{min(values.size, 20000)} of {values.size} pairs")
    scatter_axes.legend(fontsize=7)
    return figure


def redundancy_figure(qubo_j: np.ndarray, mi: np.ndarray, title: str) -> Figure:
    """The QUBO's mean |cos| against MI, one point per pair of maps."""
    figure = Figure(figsize=(5.2, 4.4))
    axes = figure.subplots()
    rows, cols = np.triu_indices(mi.shape[0], k=1)
    shown = np.random.default_rng(0).permutation(rows.size)[:20000]
    axes.scatter(qubo_j[rows, cols][shown], mi[rows, cols][shown], s=2, alpha=0.3)
    axes.set(xlabel="QUBO redundancy J = |cos| (mean over images)", ylabel="KSG MI across images (nats)",
             title=title)
    return figure


def integrated_gradients_figure(images: np.ndarray, attributions: np.ndarray,
                                captions: Optional[Sequence[str]] = None) -> Figure:
    """Each image above its |IG| attribution (summed over colour channels) overlaid on it.

    Args:
        images: (N, H, W, 3) or (N, H, W) in [0, 1].
        attributions: (N, C, H, W) input attributions.
        captions: one title per image.
    """
    count = len(images)
    figure = Figure(figsize=(2.3 * count, 4.8))
    axes = np.asarray(figure.subplots(2, count)).reshape(2, count)
    heat = np.abs(np.asarray(attributions)).sum(axis=1)
    for column in range(count):
        image = np.asarray(images[column])
        cmap = "gray" if image.ndim == 2 else None
        axes[0, column].imshow(image, cmap=cmap)
        axes[1, column].imshow(image.mean(axis=-1) if image.ndim == 3 else image, cmap="gray")
        scale = np.quantile(heat[column], 0.99) or 1.0
        axes[1, column].imshow(np.clip(heat[column] / scale, 0, 1), cmap="inferno", alpha=0.6)
        if captions:
            axes[0, column].set_title(captions[column], fontsize=7)
        for ax in axes[:, column]:
            ax.axis("off")
    figure.suptitle("Integrated Gradients |attribution| (99th-percentile scaled)", fontsize=9)
    return figure
