"""The dataset-level report, computed from the shards alone (no model needed, any number of ranks wrote them).

Per method (the QUBO selection and each CAM baseline's top-K on the same samples): the class × class
Bhattacharyya matrix of selected maps (:class:`~captum_qubo.metrics.ClassDisentanglement`) with its mean and max
off-diagonal overlap, how often each map is selected per class, the mean selection size, and Average Drop /
Increase in Confidence (:class:`~captum_qubo.metrics.AverageDrop`, :class:`~captum_qubo.metrics.IncreaseInConfidence`)
from the scores stored per sample. Classes are the explained targets, restricted to those present. Writes
``report.json``, ``report.md`` and ``report.png`` into the output folder.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from captum_qubo.integrations.dataset.shards import SHARD_FOLDER, read_records

LABELS = {"qubo": "QUBO", "grad_cam": "Grad-CAM top-K", "grad_cam_plus_plus": "Grad-CAM++ top-K",
          "score_cam": "Score-CAM top-K"}


def dataset_report(out: Path, class_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Compute the report of an output folder's trusted shards.

    Args:
        out: the output folder of :func:`~.engine.explain_dataset`.
        class_names: names in logit order (None: class indices).

    Returns:
        ``{"num_samples", "num_skipped", "classes", "methods": {method: {...}}}``; per method ``bhattacharyya``
        (matrix as nested lists), ``mean_off_diagonal``, ``max_off_diagonal``, ``selection_frequency`` (class ×
        map shares), ``mean_selection_size`` (overall and ``per_class``), ``average_drop``,
        ``increase_in_confidence``; for the QUBO also ``mean_num_variables`` and ``mean_solve_seconds``.
    """
    from captum_qubo.metrics import AverageDrop, ClassDisentanglement, IncreaseInConfidence, channel_sets_to_mask

    rows = read_records(Path(out) / SHARD_FOLDER).to_pylist()
    explained = sorted((r for r in rows if r.get("error") is None), key=lambda r: r["sample_id"])
    if not explained:
        raise ValueError(f"{out} has no explained samples to report on; run explain_dataset first")
    methods = [m for m in LABELS if f"{m}_channels" in explained[0]]
    present = sorted({r["target"] for r in explained})
    position = {c: i for i, c in enumerate(present)}
    classes = torch.tensor([position[r["target"]] for r in explained])
    num_channels = int(explained[0]["num_channels"])
    names = [str(class_names[c]) if class_names is not None else str(c) for c in present]
    report: Dict[str, Any] = {"num_samples": len(rows), "num_explained": len(explained),
                              "num_skipped": len(rows) - len(explained), "classes": names,
                              "num_channels": num_channels, "methods": {}}
    base = torch.tensor([r["base_score"] for r in explained], dtype=torch.float64)
    for method in methods:
        mask = channel_sets_to_mask([r[f"{method}_channels"] for r in explained], num_channels)
        # The shards already hold every rank's samples: no cross-process sync even if a process group is still up.
        overlap = ClassDisentanglement(len(present), num_channels, class_names=names, sync_on_compute=False)
        overlap.update(mask, classes)
        result = overlap.compute()
        masked = torch.tensor([r[f"{method}_masked_score"] for r in explained], dtype=torch.float64)
        drop, increase = AverageDrop(sync_on_compute=False), IncreaseInConfidence(sync_on_compute=False)
        drop.update(base, masked)
        increase.update(base, masked)
        sizes = mask.sum(dim=1).double()
        per_class = torch.stack([mask[classes == i].double().mean(dim=0) for i in range(len(present))])
        summary = {
            "label": LABELS[method],
            "bhattacharyya": _finite(result["matrix"].tolist()),
            "mean_off_diagonal": _number(result["mean_off_diagonal"]),
            "max_off_diagonal": _number(result["max_off_diagonal"]),
            "selection_frequency": per_class.tolist(),
            "mean_selection_size": float(sizes.mean()),
            "mean_selection_size_per_class": [float(sizes[classes == i].mean()) for i in range(len(present))],
            "average_drop": float(drop.compute()),
            "increase_in_confidence": float(increase.compute()),
        }
        if method == "qubo":
            summary["mean_num_variables"] = float(np.mean([r["qubo_num_variables"] for r in explained]))
            summary["mean_solve_seconds"] = float(np.mean([r["qubo_solve_s"] for r in explained]))
        report["methods"][method] = summary
    return report


def _number(value: torch.Tensor) -> Optional[float]:
    value = float(value)
    return value if np.isfinite(value) else None


def _finite(matrix: List[List[float]]) -> List[List[Optional[float]]]:
    return [[value if np.isfinite(value) else None for value in row] for row in matrix]


def write_report(out: Path, report: Dict[str, Any]) -> Dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``report.png`` (each atomically); returns their paths."""
    out = Path(out)
    paths = {"json": out / "report.json", "md": out / "report.md", "png": out / "report.png"}
    _atomic_text(paths["json"], json.dumps(report, indent=2))
    _atomic_text(paths["md"], report_markdown(report))
    figure = report_figure(report)
    partial = out / f".report.png.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    figure.savefig(partial, dpi=200, bbox_inches="tight", format="png")
    os.replace(partial, paths["png"])
    import matplotlib.pyplot as plt

    plt.close(figure)
    return paths


def _atomic_text(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    partial.write_text(text)
    os.replace(partial, path)


def report_markdown(report: Dict[str, Any]) -> str:
    """The report as Markdown tables: one summary row per method, then selection sizes per class."""
    lines = ["# Dataset report", "",
             f"{report['num_explained']} samples explained ({report['num_skipped']} skipped as unreadable), "
             f"{len(report['classes'])} classes, {report['num_channels']} feature maps in the layer.", "",
             "| method | mean BC off-diagonal ↓ | max BC off-diagonal ↓ | mean maps selected | Average Drop % ↓ "
             "| Increase in Confidence % ↑ |", "|---|---|---|---|---|---|"]
    for summary in report["methods"].values():
        lines.append(f"| {summary['label']} | {_cell(summary['mean_off_diagonal'])} | "
                     f"{_cell(summary['max_off_diagonal'])} | {summary['mean_selection_size']:.2f} | "
                     f"{summary['average_drop']:.2f} | {summary['increase_in_confidence']:.2f} |")
    lines += ["", "Mean maps selected per class:", "",
              "| class | " + " | ".join(s["label"] for s in report["methods"].values()) + " |",
              "|---|" + "---|" * len(report["methods"])]
    for i, name in enumerate(report["classes"]):
        cells = " | ".join(f"{s['mean_selection_size_per_class'][i]:.2f}" for s in report["methods"].values())
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines) + "\n"


def _cell(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.3f}"


def report_figure(report: Dict[str, Any]):
    """Per method: the Bhattacharyya matrix (top) and the per-class selection frequency of every map (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(report["methods"].values())
    names = report["classes"]
    size = max(3.5, 0.45 * len(names) + 1.5)
    figure, axes = plt.subplots(2, len(methods), figsize=(size * len(methods) + 1.0, 2 * size), squeeze=False)
    for column, summary in enumerate(methods):
        matrix = np.array([[np.nan if v is None else v for v in row] for row in summary["bhattacharyya"]])
        top = axes[0, column].imshow(np.ma.masked_invalid(matrix), vmin=0, vmax=1, cmap="inferno")
        axes[0, column].set_title(f"{summary['label']}\nclass overlap (mean off-diag "
                                  f"{_cell(summary['mean_off_diagonal'])})", fontsize=9)
        bottom = axes[1, column].imshow(np.array(summary["selection_frequency"]), vmin=0, vmax=1, cmap="inferno",
                                        aspect="auto")
        axes[1, column].set_title(f"{summary['label']}: share of a class's images selecting each map", fontsize=9)
        axes[1, column].set_xlabel("feature map")
        for row in range(2):
            axes[row, column].set_yticks(range(len(names)), names, fontsize=7)
            axes[row, column].set_ylabel("class")
        axes[0, column].set_xticks(range(len(names)), names, fontsize=7, rotation=90)
    figure.colorbar(top, ax=axes[0].tolist(), label="Bhattacharyya coefficient", shrink=0.8)
    figure.colorbar(bottom, ax=axes[1].tolist(), label="selection frequency", shrink=0.8)
    return figure
