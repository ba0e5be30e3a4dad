"""Part 1: the paper's class-disentanglement experiment on scikit-learn digits (METHOD.md §3–5).

For each N_f: the digits CNN with the paper's shape, ``per_class`` correctly classified test images per class,
the QUBO (unconstrained, β = 0.7, solved exactly; and k_hot) against Grad-CAM / Grad-CAM++ / Score-CAM, whose
"selection" is their top-K maps by their own channel weights with K = the unconstrained QUBO's selection size on
the same image. Reports the Bhattacharyya class×class matrices and faithfulness of every method's map.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmarks._explainers import (
    BASELINES,
    GRAD_CAM,
    GRAD_CAM_TOP_K,
    GRAD_CAM_TOP_K_PAPER,
    QUBO,
    QUBO_K_HOT,
    QUBO_PAPER,
    Explanations,
    explain_baseline,
    explain_grad_cam_top_k,
    explain_qubo,
    paper_differs_from_default,
)
from benchmarks._scores import disentanglement_summary, faithfulness_scores
from captum_qubo.attribution.options import QuboOptions
from captum_qubo.metrics import ClassDisentanglement, top_k_mask
from captum_qubo.zoo import load_digits_split, train_digits_cnn

NUM_CLASSES = 10


def select_correct_per_class(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, per_class: int):
    """The first ``per_class`` correctly classified images of each class, in the (seeded) test-split order.

    Returns:
        (images, labels) of the chosen images, grouped by class.
    """
    with torch.no_grad():
        correct = model(images).argmax(1) == labels
    chosen = []
    for digit in range(NUM_CLASSES):
        rows = torch.nonzero(correct & (labels == digit)).flatten()[:per_class]
        if len(rows) < per_class:
            raise ValueError(f"only {len(rows)} correctly classified test images of digit {digit}; lower per_class")
        chosen.append(rows)
    rows = torch.cat(chosen)
    return images[rows], labels[rows]


def k_hot_cardinality(selection_sizes: np.ndarray) -> int:
    """K for the k_hot run: the median unconstrained selection size over all images (rounded half up, ≥ 1)."""
    return max(1, int(np.floor(np.median(selection_sizes) + 0.5)))


def selection_masks(explanations: Dict[str, Explanations], qubo_sizes: np.ndarray) -> Dict[str, torch.Tensor]:
    """(N, C) selected maps per method: the QUBOs' own selections; baselines' top-K with K = the QUBO's size."""
    masks = {name: explanations[name].channel_weights != 0 for name in (QUBO, QUBO_K_HOT, QUBO_PAPER)
             if name in explanations}
    for name in BASELINES:
        masks[f"{name} top-K"] = top_k_mask(explanations[name].channel_weights, torch.as_tensor(qubo_sizes))
    if QUBO_PAPER in explanations:  # the paper preset against Grad-CAM top-K at *its* K
        paper_sizes = torch.as_tensor(explanations[QUBO_PAPER].selection_sizes)
        masks[GRAD_CAM_TOP_K_PAPER] = top_k_mask(explanations[GRAD_CAM].channel_weights, paper_sizes)
    return masks


def run_digits_model(
    num_filters: int, per_class: int, seed: int, figure_dir: Path, internal_batch_size: int = 256
) -> dict:
    """Everything part 1 measures for one N_f; figure written to ``figure_dir``."""
    model = train_digits_cnn(num_filters=num_filters, seed=seed)
    _, _, x_test, y_test = load_digits_split(seed=seed)
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).double().mean().item()
    images, labels = select_correct_per_class(model, x_test, y_test, per_class)
    layer = model.reduce

    explanations: Dict[str, Explanations] = {}
    samplers: Dict[str, str] = {}
    explanations[QUBO], samplers[QUBO] = _exact_or_tabu(model, layer, images, labels, seed)
    qubo_sizes = explanations[QUBO].selection_sizes
    k_hot = k_hot_cardinality(qubo_sizes)
    # An image with fewer positively important maps than K selects all of them (k_hot needs K ≤ d).
    per_image_k = np.minimum(k_hot, explanations[QUBO].num_variables)
    explanations[QUBO_K_HOT], samplers[QUBO_K_HOT] = _exact_or_tabu(model, layer, images, labels, seed, k=per_image_k)
    if paper_differs_from_default():
        explanations[QUBO_PAPER], samplers[QUBO_PAPER] = _exact_or_tabu(model, layer, images, labels, seed,
                                                                        options=QuboOptions.preset("paper"))
    for name in BASELINES:
        explanations[name] = explain_baseline(name, model, layer, images, labels, internal_batch_size)
    explanations[GRAD_CAM_TOP_K] = explain_grad_cam_top_k(model, layer, images, labels, qubo_sizes)
    if QUBO_PAPER in explanations:
        explanations[GRAD_CAM_TOP_K_PAPER] = explain_grad_cam_top_k(
            model, layer, images, labels, explanations[QUBO_PAPER].selection_sizes)

    disentanglement = {}
    for name, mask in selection_masks(explanations, qubo_sizes).items():
        metric = ClassDisentanglement(NUM_CLASSES, num_filters, class_names=[str(c) for c in range(NUM_CLASSES)])
        metric.update(mask, labels)
        disentanglement[name] = {"metric": metric, **disentanglement_summary(metric.compute())}
    figure = figure_dir / f"digits_disentanglement_nf{num_filters}.png"
    plot_disentanglement(disentanglement, figure, num_filters)

    methods = {}
    for name, result in explanations.items():
        methods[name] = faithfulness_scores(model, images, result.saliency, labels)
        methods[name]["seconds_per_image"] = float(result.seconds.mean())
        if result.selection_sizes is not None:
            methods[name]["mean_selection_size"] = float(result.selection_sizes.mean())
        if result.num_variables is not None:
            methods[name]["mean_num_variables"] = float(result.num_variables.mean())
    return {
        "num_filters": num_filters,
        "test_accuracy": accuracy,
        "num_images": len(images),
        "k_hot_k": k_hot,
        "k_hot_images_capped": int((per_image_k < k_hot).sum()),
        "qubo_selection_sizes": qubo_sizes.tolist(),
        "qubo_num_variables": explanations[QUBO].num_variables.tolist(),
        "samplers": samplers,
        "disentanglement": {name: {k: v for k, v in d.items() if k != "metric"} for name, d in disentanglement.items()},
        "methods": methods,
        "figure": str(figure),
    }


def _exact_or_tabu(model, layer, images, labels, seed, **kwargs):
    """(explanations, sampler): solved exactly, or by the default dense tabu search when some image has d > 24
    variables (beyond the exact solver; with the contribution importance the BatchNorm-ended maps can give more
    positive-importance maps than α > 0 alone)."""
    try:
        return explain_qubo(model, layer, images, labels, sampler="exact", seed=seed, **kwargs), "exact"
    except ValueError as error:
        if "handles at most" not in str(error):
            raise
        return explain_qubo(model, layer, images, labels, sampler="dense-tabu", seed=seed, **kwargs), "dense-tabu"


def plot_disentanglement(disentanglement: Dict[str, dict], path: Path, num_filters: int) -> None:
    """One PNG, one BC-matrix panel per method (ClassDisentanglement.plot), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(disentanglement), figsize=(5.2 * len(disentanglement), 4.6))
    for ax, (name, entry) in zip(np.atleast_1d(axes), disentanglement.items()):
        entry["metric"].plot(ax=ax)
        ax.set_title(f"{name}\nmean off-diag {entry['mean_off_diagonal']:.3f}", fontsize=10)
    fig.suptitle(f"Digits CNN, N_f = {num_filters}: class × class Bhattacharyya coefficient of selected maps")
    fig.tight_layout(rect=(0, 0, 1, 0.92))  # leave room for the suptitle
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.png")
    fig.savefig(partial, dpi=80)
    plt.close(fig)
    partial.replace(path)


def run_digits(num_filters: Sequence[int], per_class: int, seed: int, figure_dir: Path) -> dict:
    """Part 1 for every N_f."""
    runs: List[dict] = [
        run_digits_model(nf, per_class, seed, figure_dir) for nf in tqdm(num_filters, desc="digits N_f", unit="model")
    ]
    return {"per_class": per_class, "seed": seed, "options": _options_note(), "sampler": "exact", "runs": runs}


def _options_note() -> dict:
    """The formulations run: the library default (QUBO, QUBO k-hot) and, when it differs, the paper preset."""
    note = {"QUBO": QuboOptions().to_dict()}
    if paper_differs_from_default():
        note[QUBO_PAPER] = QuboOptions.preset("paper").to_dict()
    return {name: {key: value for key, value in options.items() if key in ("importance", "beta", "formulation",
                                                                             "pair_convention")}
            for name, options in note.items()}
