"""Part 2: pretrained EfficientNet-Lite0 on photos that ship in scikit-image, scikit-learn and matplotlib.

Every method explains the model's top-1 class of each photo at the default layer
(``efficientnet_target_layer``: the activated head maps, 1280 × 7×7). Measured: Average Drop, Increase in Confidence, deletion and
insertion AUC, latency per image (one call per image), and the grid pointing game on 2×2 composites of
half-size tiles. Score-CAM costs one forward pass per map (1280 per explanation), so it runs on the first
``scorecam_images`` photos and ``scorecam_pointing`` pointing evaluations only, and is compared with the
others on that subset.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from captum.attr import LayerActivation
from tqdm.auto import tqdm

from benchmarks._explainers import (
    GRAD_CAM,
    GRAD_CAM_PP,
    GRAD_CAM_TOP_K,
    GRAD_CAM_TOP_K_PAPER,
    QUBO,
    QUBO_PAPER,
    SCORE_CAM,
    Explanations,
    concatenate,
    explain_baseline,
    explain_grad_cam_top_k,
    explain_qubo,
    paper_differs_from_default,
)
from captum_qubo.attribution.options import QuboOptions
from benchmarks._scores import average_drop, increase_in_confidence, mean, perturbation_aucs, pointing_scores
from captum_qubo.metrics import build_grid_composites, masked_confidences
from captum_qubo.zoo import (
    efficientnet_target_layer,
    imagenet_class_names,
    load_efficientnet_lite0,
    load_sample_image,
    preprocess_image,
)

# Photos of ImageNet-like objects that ship offline. skimage's "cat" is the same picture as "chelsea"; its other
# RGB images (hubble_deep_field, immunohistochemistry, retina, colorwheel, logo) are not object photos.
# "camera" is greyscale (replicated to RGB); EfficientNet-Lite0 predicts "tripod" for it.
PHOTOS: Tuple[Tuple[str, str], ...] = (
    ("skimage", "chelsea"),
    ("skimage", "coffee"),
    ("skimage", "rocket"),
    ("skimage", "astronaut"),
    ("skimage", "camera"),
    ("sklearn", "china"),
    ("sklearn", "flower"),
    ("matplotlib", "grace_hopper"),
)
IMAGENET_METHODS = (QUBO, GRAD_CAM, GRAD_CAM_PP, GRAD_CAM_TOP_K, SCORE_CAM)


def imagenet_methods() -> Tuple[str, ...]:
    """IMAGENET_METHODS, plus the paper preset and Grad-CAM top-K at its K when the default is not the paper's."""
    if not paper_differs_from_default():
        return IMAGENET_METHODS
    return (QUBO, QUBO_PAPER, GRAD_CAM, GRAD_CAM_PP, GRAD_CAM_TOP_K, GRAD_CAM_TOP_K_PAPER, SCORE_CAM)


def load_photo(source: str, name: str) -> np.ndarray:
    """An RGB uint8 (H, W, 3) photo from scikit-image, scikit-learn or matplotlib's bundled sample data."""
    if source == "skimage":
        return load_sample_image(name)
    if source == "sklearn":
        from sklearn.datasets import load_sample_image as load_sklearn_image

        return np.asarray(load_sklearn_image(f"{name}.jpg"))
    if source == "matplotlib":
        import matplotlib.cbook as cbook
        import matplotlib.image as mpimg

        with cbook.get_sample_data(f"{name}.jpg") as handle:
            return np.ascontiguousarray(mpimg.imread(handle, format="jpg")[..., :3])
    raise ValueError(f"unknown photo source {source!r}; use skimage, sklearn or matplotlib")


def explain_all(
    model: torch.nn.Module,
    layer: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    methods: Sequence[str],
    sampler_kwargs: dict,
    seed: int,
    internal_batch_size: int,
) -> Dict[str, Explanations]:
    """Explanations of every listed method; the top-K ablation uses the QUBO's per-image selection sizes."""
    results: Dict[str, Explanations] = {}
    for name in methods:
        if name == QUBO:
            results[name] = explain_qubo(model, layer, inputs, targets, "sa", sampler_kwargs, seed=seed)
        elif name == QUBO_PAPER:
            results[name] = explain_qubo(model, layer, inputs, targets, "sa", sampler_kwargs, seed=seed,
                                         options=QuboOptions.preset("paper"))
        elif name == GRAD_CAM_TOP_K:
            results[name] = explain_grad_cam_top_k(model, layer, inputs, targets, results[QUBO].selection_sizes)
        elif name == GRAD_CAM_TOP_K_PAPER:
            results[name] = explain_grad_cam_top_k(model, layer, inputs, targets, results[QUBO_PAPER].selection_sizes)
        else:
            results[name] = explain_baseline(name, model, layer, inputs, targets, internal_batch_size)
    return results


def method_order(row: int, with_score_cam: bool) -> List[str]:
    """Methods for photo ``row``, order rotated per photo: one photo at a time with every method in turn, so
    load changes on a shared machine, and any slowdown a method leaves behind for the next call (we saw one after
    the QUBO), hit every method alike. The top-K ablation needs the QUBO's sizes, so it always comes last."""
    paper = paper_differs_from_default()
    methods = [m for m in (GRAD_CAM, GRAD_CAM_PP, SCORE_CAM, QUBO, QUBO_PAPER)
               if (m != SCORE_CAM or with_score_cam) and (m != QUBO_PAPER or paper)]
    shift = row % len(methods)
    return methods[shift:] + methods[:shift] + [GRAD_CAM_TOP_K] + ([GRAD_CAM_TOP_K_PAPER] if paper else [])


def summarise(entry: dict, num_images: Optional[int] = None, num_pointing: Optional[int] = None) -> dict:
    """Metric means of one method over its first ``num_images`` photos / ``num_pointing`` evaluations (all if None)."""
    images = slice(None, num_images)
    pointing = slice(None, num_pointing)
    base, masked = entry["base_scores"][images], entry["masked_scores"][images]
    summary = {
        "num_images": len(base),
        "average_drop": average_drop(base, masked) if base else float("nan"),
        "increase_in_confidence": increase_in_confidence(base, masked) if base else float("nan"),
        "deletion_auc": mean(entry["deletion_auc_per_image"][images]),
        "insertion_auc": mean(entry["insertion_auc_per_image"][images]),
        "latency_median_s": float(np.median(entry["seconds_per_image"][images])) if base else float("nan"),
        "num_pointing": len(entry["pointing_shares"][pointing]),
        "pointing_game": mean(entry["pointing_shares"][pointing]),
    }
    for key in ("selection_sizes", "num_variables"):
        if key in entry:
            summary[f"mean_{key}"] = mean(entry[key][images])
    if entry.get("solve_seconds", [])[images]:
        summary["solve_median_s"] = float(np.median(entry["solve_seconds"][images]))
    return summary


def run_imagenet(
    photos: Sequence[Tuple[str, str]] = PHOTOS,
    num_composites: int = 3,
    deletion_steps: int = 10,
    scorecam_images: int = 3,
    scorecam_pointing: int = 2,
    sa_kwargs: Optional[dict] = None,
    seed: int = 0,
    internal_batch_size: int = 64,
    tile_size: int = 112,
    min_confidence: float = 0.5,
    warm_up: bool = True,
) -> dict:
    """Part 2. Returns per-method per-image values, summaries over all and over the Score-CAM subset."""
    sa_kwargs = dict(sa_kwargs or {"num_reads": 10, "num_sweeps": 1000})
    model = load_efficientnet_lite0()
    layer = efficientnet_target_layer(model)
    names = imagenet_class_names()
    raw = {photo: load_photo(*photo) for photo in dict.fromkeys([*photos, *PHOTOS])}
    inputs = torch.stack([preprocess_image(raw[photo]) for photo in photos])
    with torch.no_grad():
        probabilities = torch.softmax(model(inputs), dim=1)
    confidence, targets = probabilities.max(dim=1)
    layer_name = next(name for name, module in model.named_modules() if module is layer)
    layer_shape = tuple(LayerActivation(model, layer).attribute(inputs[:1]).shape[1:])

    # Composites always draw on every bundled photo: a 2x2 grid needs 4 confidently predicted classes.
    tiles = torch.stack([preprocess_image(image, tile_size) for image in raw.values()])
    composites = build_grid_composites(model, tiles, num_composites, (2, 2), min_confidence, seed)
    grid_inputs, grid_targets, grid_cells = composites.expand_per_cell()

    if warm_up:  # untimed: the first calls of a process pay one-off allocation costs
        explain_all(model, layer, inputs[:1], targets[:1], [QUBO, GRAD_CAM, GRAD_CAM_PP], sa_kwargs, seed,
                    internal_batch_size)
    entries: Dict[str, dict] = {name: {} for name in imagenet_methods()}
    for stage, stage_inputs, stage_targets, scorecam_limit in (
        ("photos", inputs, targets, scorecam_images),
        ("pointing", grid_inputs, grid_targets, scorecam_pointing),
    ):
        pieces: Dict[str, List[Explanations]] = {name: [] for name in imagenet_methods()}
        for row in tqdm(range(len(stage_inputs)), desc=f"explain {stage}", unit="image"):
            one = slice(row, row + 1)
            for name, result in explain_all(model, layer, stage_inputs[one], stage_targets[one],
                                            method_order(row, row < scorecam_limit), sa_kwargs, seed,
                                            internal_batch_size).items():
                pieces[name].append(result)
        explained = {name: concatenate(parts) for name, parts in pieces.items() if parts}
        for name, result in tqdm(explained.items(), desc=f"score {stage}", unit="method", leave=False):
            rows = slice(None, len(result.saliency))
            if stage == "pointing":
                entries[name].update(pointing_scores(result.saliency, grid_cells[rows]))
                continue
            base, masked = masked_confidences(model, inputs[rows], result.saliency, targets[rows])
            entries[name].update(
                base_scores=base.tolist(),
                masked_scores=masked.tolist(),
                seconds_per_image=result.seconds.tolist(),
                **perturbation_aucs(model, inputs[rows], result.saliency, targets[rows], deletion_steps,
                                    internal_batch_size),
            )
            if result.selection_sizes is not None:
                entries[name]["selection_sizes"] = result.selection_sizes.tolist()
            if result.num_variables is not None:
                entries[name]["num_variables"] = result.num_variables.tolist()
            if "solve_seconds" in result.extra:
                entries[name]["solve_seconds"] = result.extra["solve_seconds"]
    per_image_keys = ("base_scores", "masked_scores", "seconds_per_image", "deletion_auc_per_image",
                      "insertion_auc_per_image", "pointing_shares")
    for entry in entries.values():  # Score-CAM has none when scorecam_images is 0
        for key in per_image_keys:
            entry.setdefault(key, [])

    subset_images = min(scorecam_images, len(photos))
    subset_pointing = min(scorecam_pointing, len(grid_inputs))
    return {
        "photos": [
            {"source": source, "name": name, "predicted": names[int(t)], "class_index": int(t), "confidence": float(c)}
            for (source, name), t, c in zip(photos, targets, confidence)
        ],
        "composites": {
            "num_composites": num_composites,
            "tile_size": tile_size,
            "min_confidence": min_confidence,
            "cell_classes": [[names[int(c)] for c in row] for row in composites.cell_classes],
        },
        "config": {"sampler": "sa", "sampler_kwargs": sa_kwargs, "seed": seed, "deletion_steps": deletion_steps,
                   "options": {name: {key: value for key, value in options.to_dict().items()
                                      if key in ("importance", "beta", "formulation", "pair_convention")}
                               for name, options in ((QUBO, QuboOptions()), (QUBO_PAPER, QuboOptions.preset("paper")))
                               if name == QUBO or paper_differs_from_default()},
                   "scorecam_images": scorecam_images, "scorecam_pointing": scorecam_pointing,
                   "internal_batch_size": internal_batch_size, "num_threads": torch.get_num_threads(),
                   "layer": f"`{layer_name}` ({layer_shape[0]} maps, {layer_shape[1]}×{layer_shape[2]} at 224²)"},
        "methods": entries,
        "summary": {name: summarise(entries[name]) for name in imagenet_methods()},
        "scorecam_subset": {name: summarise(entries[name], subset_images, subset_pointing)
                            for name in imagenet_methods()},
    }
