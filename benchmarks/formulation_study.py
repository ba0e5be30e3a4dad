"""Which QUBO formulation earns its place? A grid chosen on a tuning split, judged on held-out data (issue 12).

Grid: importance {gradient (the paper's α), contribution (α·Σf), contrastive (the contribution to the margin
z_c − z_r over the runner-up class)} × redundancy {|cos|} × β {0.5, 0.7, 0.9} unconstrained, plus k_hot (at the
paper preset's median K on that model) at β = 0.7 (the ``half`` pair convention; dense-tabu, seed 0). Reduced to
fit ≈ 20 min on 2 shared cores: see the report's "Splits" section. Data: :mod:`benchmarks._formulation_data` (tuning: the
paper-shaped digits CNNs and the photos as-is / mirrored; held-out: GAP-head digits CNNs trained on another split
and seed, and centre crops of the photos).

Per configuration and model: mean off-diagonal BC of the selections against Grad-CAM top-K, Grad-CAM++ top-K and
Score-CAM top-K (digits) at the same K per image, and against the positive-α set; sufficiency and
comprehensiveness (:mod:`captum_qubo.metrics.selection_faithfulness`) of the selection and of Grad-CAM top-K;
Average Drop / Increase in Confidence of the map; on the photos the grid pointing game (2×2 composites of the
split's own views) of the map and of Grad-CAM top-K at the same K; mean K.

Choice (tuning only): among configurations whose sufficiency is ≥ Grad-CAM top-K's on every tuning model, the one
with the largest mean relative BC reduction against Grad-CAM top-K (mean over models within a family, then over
families); if none qualifies, the one qualifying on the most models, ties by BC reduction. Target (held-out): BC
≥ 20 % below Grad-CAM top-K with sufficiency ≥ Grad-CAM top-K's, on both families.

Run: ``python -m benchmarks.formulation_study`` (≈ 20 min on 2 shared cores); ``--quick`` for a smoke run.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from benchmarks._digits_experiment import k_hot_cardinality
from benchmarks._explainers import GRAD_CAM, to_input_saliency
from benchmarks._formulation_data import StudySet, study_sets
from benchmarks._formulation_report import report_markdown
from benchmarks._scores import average_drop, increase_in_confidence, perturbation_aucs, pointing_scores
from captum_qubo.attribution.qubo_attribution import explanation_map
from captum_qubo.formulation.batched import build_batched_qubos
from captum_qubo.formulation.importance import map_importance
from captum_qubo.metrics import ClassDisentanglement, masked_confidences, selection_curve, selection_probabilities, top_k_mask
from captum_qubo.solvers.batch import solve_batch
from captum_qubo.solvers.registry import get_sampler, sampler_defaults

# gradient_x_activation = contribution on pooled heads (the photos' and the held-out digits'); left out for time.
IMPORTANCES = ("gradient", "contribution", "contrastive")
BETAS = (0.5, 0.7, 0.9)
FORMULATIONS = ("unconstrained", "k_hot")
PAPER = {"importance": "gradient", "beta": 0.7, "formulation": "unconstrained"}
TARGET_BC_REDUCTION = 0.20
SAMPLER = "dense-tabu"


def grid_configs(importances, betas) -> List[dict]:
    """Every importance × β unconstrained, and k_hot at β = 0.7 only (the paper's β; the time budget)."""
    return [dict(importance=i, beta=b, formulation=f) for i, b, f in itertools.product(importances, betas, FORMULATIONS)
            if f == "unconstrained" or b == 0.7]


def config_name(config: dict) -> str:
    return f"{config['importance']}, β={config['beta']:g}, {config['formulation']}"


def scores_of(study, importance: str) -> torch.Tensor:
    """(N, C) the importance the QUBO rewards, from the gradients it is defined on (z_c or the margin)."""
    return map_importance(importance, study.gradients_for(importance), study.activations)


def select(study, importance: str, beta: float, formulation: str, k=None) -> torch.Tensor:
    """(N, C) bool selections of one configuration (k: one K per image for k_hot, capped at each d_i)."""
    scores = scores_of(study, importance)
    sampler = get_sampler(SAMPLER)
    selected = torch.zeros_like(scores, dtype=torch.bool)
    groups = {None: np.arange(len(scores))} if k is None else {int(v): np.flatnonzero(k == v) for v in np.unique(k)}
    for value, rows in groups.items():
        rows_t = torch.as_tensor(rows)
        qubos = build_batched_qubos(scores[rows_t], study.activations[rows_t], beta, formulation, value)
        solution = solve_batch(qubos, sampler, 0, sampler_defaults(SAMPLER))
        block = torch.zeros((len(rows), scores.shape[1]), dtype=torch.bool)
        index = torch.arange(len(rows))[:, None].expand_as(qubos.kept)
        block[index[solution.states], qubos.kept[solution.states]] = True
        selected[rows_t] = block
    return selected


def k_hot_sizes(study, importance: str) -> np.ndarray:
    """Per image: the paper preset's median selection size on this model, capped at the image's d_i."""
    paper_sizes = select(study, **PAPER).sum(1).numpy()
    positive = (scores_of(study, importance) > 0).sum(1).numpy()
    return np.minimum(k_hot_cardinality(paper_sizes), np.maximum(positive, 1))


def bc(study: StudySet, selected: torch.Tensor) -> float:
    metric = ClassDisentanglement(study.num_classes, selected.shape[1])
    metric.update(selected, study.classes)
    return float(metric.compute()["mean_off_diagonal"])


def faithfulness(study: StudySet, selected: torch.Tensor) -> Dict[str, float]:
    """Sufficiency, comprehensiveness (removal as the set defines) of a selection."""
    with torch.no_grad():
        base, kept, removed = selection_probabilities(
            study.model, study.layer, study.inputs, selected, study.targets, study.removal
        )
    return {"sufficiency": float(kept.mean()), "comprehensiveness": float((base - removed).mean())}


def saliency_of(study, selected: torch.Tensor, importance: str = "gradient") -> torch.Tensor:
    """The input-size map of a selection, weighted by α of the importance's score (as the library does)."""
    alpha = study.alpha_for(importance)
    weights = torch.where(selected, alpha, torch.zeros_like(alpha)).float()
    return to_input_saliency(explanation_map(weights, study.activations.float()), study.inputs.shape[2:])


def pointing(study: StudySet, config: dict, k=None) -> dict:
    """Grid pointing game of a configuration's map and of Grad-CAM top-K at the same K per evaluation."""
    grids = study.pointing
    selected = select(grids, **config, k=k)
    weights = grids.grad_cam_weights
    top = top_k_mask(weights, selected.sum(1)) & (weights > 0)
    return {"pointing_game": pointing_scores(saliency_of(grids, selected, config["importance"]),
                                             grids.cells)["pointing_game"],
            f"pointing_game {GRAD_CAM} top-K": pointing_scores(saliency_of(grids, top), grids.cells)["pointing_game"],
            "pointing_mean_k": float(selected.sum(1).double().mean())}


def evaluate(study: StudySet, selected: torch.Tensor, importance: str = "gradient") -> dict:
    """Every metric of one selection on one set, with the baselines at the same K per image."""
    sizes = selected.sum(1)
    row = {"mean_k": float(sizes.double().mean()), "bc": bc(study, selected), **faithfulness(study, selected)}
    base, masked = masked_confidences(study.model, study.inputs, saliency_of(study, selected, importance), study.targets)
    row.update(average_drop=average_drop(base, masked), increase_in_confidence=increase_in_confidence(base, masked))
    for name, weights in study.baseline_weights.items():
        top = top_k_mask(weights, sizes) & (weights > 0)
        row[f"bc {name} top-K"] = bc(study, top)
        if name == GRAD_CAM:
            gc = faithfulness(study, top)
            row.update({f"{key} {name} top-K": value for key, value in gc.items()})
    reference = row[f"bc {GRAD_CAM} top-K"]
    row["bc_reduction"] = 1.0 - row["bc"] / reference if reference > 0 else float("nan")
    row["sufficiency_margin"] = row["sufficiency"] - row[f"sufficiency {GRAD_CAM} top-K"]
    return row


def positive_alpha_row(study: StudySet) -> dict:
    """The other plausible Grad-CAM selection: every map with α > 0 (what the pre-filter keeps)."""
    selected = study.alpha > 0
    return {"mean_k": float(selected.sum(1).double().mean()), "bc": bc(study, selected), **faithfulness(study, selected)}


def run_grid(sets: List[StudySet], configs: List[dict]) -> Dict[str, Dict[str, dict]]:
    results = {}
    for study in sets:
        began = time.perf_counter()
        per_config, k_cache = {}, {}
        for config in configs:
            k = k_grid = None
            if config["formulation"] == "k_hot":
                k = k_cache.setdefault(config["importance"], k_hot_sizes(study, config["importance"]))
                if study.pointing is not None:
                    k_grid = k_cache.setdefault(("grid", config["importance"]),
                                                k_hot_sizes(study.pointing, config["importance"]))
            row = evaluate(study, select(study, **config, k=k), config["importance"])
            if study.pointing is not None:
                row.update(pointing(study, config, k_grid))
            per_config[config_name(config)] = row
        per_config["Grad-CAM positive-α set"] = positive_alpha_row(study)
        if study.pointing is not None:
            grids = study.pointing
            full = torch.relu((grids.alpha[:, :, None, None] * grids.activations).sum(1, keepdim=True)).float()
            per_config["Grad-CAM positive-α set"]["pointing_game"] = pointing_scores(
                to_input_saliency(full, grids.inputs.shape[2:]), grids.cells)["pointing_game"]
        results[study.name] = per_config
        print(f"  {study.name}: {len(configs)} configurations in {time.perf_counter() - began:.0f} s", flush=True)
    return results


def family_mean(results, sets, name, key, family) -> float:
    """Mean over a family's models, ignoring undefined values (a BC reduction against a zero BC)."""
    values = [results[s.name][name][key] for s in sets if s.family == family]
    return float(np.nanmean(values)) if not np.all(np.isnan(values)) else float("nan")


def choose(results: dict, sets: List[StudySet], configs: List[dict]) -> dict:
    """The tuning-split rule stated in the module docstring."""
    families = sorted({s.family for s in sets})
    scored = []
    for config in configs:
        name = config_name(config)
        qualifying = sum(results[s.name][name]["sufficiency_margin"] >= 0 for s in sets)
        reduction = float(np.nanmean([family_mean(results, sets, name, "bc_reduction", f) for f in families]))
        reduction = reduction if np.isfinite(reduction) else -np.inf
        scored.append((qualifying, reduction, name, config))
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    qualifying, reduction, name, config = scored[0]
    return {"config": config, "name": name, "qualifying_models": qualifying, "num_models": len(sets),
            "mean_bc_reduction": reduction}


def meets_target(results: dict, sets: List[StudySet], name: str) -> bool:
    families = sorted({s.family for s in sets})
    return all(family_mean(results, sets, name, "bc_reduction", f) >= TARGET_BC_REDUCTION
               and family_mean(results, sets, name, "sufficiency_margin", f) >= 0 for f in families)


def maps_comparison(study: StudySet, chosen: dict, steps: int) -> Dict[str, dict]:
    """Deletion / insertion AUC of the chosen and paper selections, Grad-CAM top-K at the chosen K, full Grad-CAM."""
    selections = {"chosen: " + config_name(chosen): select(study, **chosen), "paper preset": select(study, **PAPER)}
    importances = {"chosen: " + config_name(chosen): chosen["importance"]}
    alpha = study.baseline_weights[GRAD_CAM]
    selections[f"{GRAD_CAM} top-K (chosen's K)"] = top_k_mask(alpha, selections["chosen: " + config_name(chosen)].sum(1)) & (alpha > 0)
    selections[f"{GRAD_CAM} (all maps, ReLU after sum)"] = None
    rows = {}
    for name, selected in selections.items():
        if selected is None:
            full = torch.relu((alpha[:, :, None, None] * study.activations).sum(1, keepdim=True)).float()
            saliency = to_input_saliency(full, study.inputs.shape[2:])
        else:
            saliency = saliency_of(study, selected, importances.get(name, "gradient"))
        aucs = perturbation_aucs(study.model, study.inputs, saliency, study.targets, steps, internal_batch_size=48)
        rows[name] = {key.replace("_per_image", ""): float(np.mean(value)) for key, value in aucs.items()}
    return rows


def curves(study: StudySet, ks) -> Dict[str, dict]:
    """Sufficiency / comprehensiveness over K for the α, contribution and contrastive rankings."""
    rankings = (("top-K by α (Grad-CAM)", study.alpha), ("top-K by contribution", scores_of(study, "contribution")),
                ("top-K by contrastive", scores_of(study, "contrastive")))
    return {label: {key: value.tolist() for key, value in selection_curve(
        study.model, study.layer, study.inputs, weights, study.targets, ks, study.removal).items()}
        for label, weights in rankings}


def rewrite_report(path: Path) -> None:
    """The markdown report again from a finished run's JSON (no model is run)."""
    from types import SimpleNamespace

    result = json.loads(path.read_text())
    sets = {split: [SimpleNamespace(name=name, **info) for name, info in result["sets"].items() if info["split"] == split]
            for split in ("tuning", "held-out")}
    settings = result["settings"]
    configs = grid_configs(settings["importances"], settings["betas"])
    path.with_suffix(".md").write_text(report_markdown(result, sets["tuning"], sets["held-out"], configs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=10, help="correctly classified digits per class")
    parser.add_argument("--top-classes", type=int, default=1, help="explained classes per photo view")
    parser.add_argument("--num-filters", type=int, nargs="+", default=[16, 24, 32])
    parser.add_argument("--steps", type=int, default=16, help="deletion / insertion steps")
    parser.add_argument("--composites", type=int, default=3, help="2×2 pointing-game grids per photo split")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 digits per class, N_f=16, one β")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from an existing .json")
    args = parser.parse_args()
    if args.report_only:
        rewrite_report(args.out / "formulation_study.json")
        return
    torch.manual_seed(0)
    torch.set_num_threads(2)
    betas = (0.7,) if args.quick else BETAS
    if args.quick:
        args.per_class, args.num_filters, args.top_classes, args.steps, args.composites = 3, [16], 1, 4, 1
    configs = grid_configs(IMPORTANCES, betas)
    start = time.perf_counter()
    print("tuning split", flush=True)
    tuning_sets = study_sets("tuning", args.num_filters, args.per_class, args.top_classes,
                             num_composites=args.composites)
    print(f"  sets built at {time.perf_counter() - start:.0f} s", flush=True)
    tuning = run_grid(tuning_sets, configs)
    chosen = choose(tuning, tuning_sets, configs)
    print(f"chosen on tuning: {chosen['name']}", flush=True)
    print("held-out split", flush=True)
    held_sets = study_sets("held-out", args.num_filters, args.per_class, args.top_classes, tuning_sets[-1].model,
                           args.composites)
    held = run_grid(held_sets, configs)
    photos = held_sets[-1]
    result = {
        "settings": {**vars(args), "out": str(args.out), "betas": list(betas), "sampler": SAMPLER, "seed": 0,
                     "pair_convention": "half", "redundancy": "|cos|", "importances": list(IMPORTANCES),
                     "formulations": list(FORMULATIONS), "target_bc_reduction": TARGET_BC_REDUCTION},
        "sets": {s.name: {"split": s.split, "family": s.family, "n": len(s.inputs), "removal": s.removal_note,
                          "pointing_evaluations": 0 if s.pointing is None else len(s.pointing.inputs),
                          "pointing_min_confidence": None if s.pointing is None else s.pointing.min_confidence}
                 for s in tuning_sets + held_sets},
        "tuning": tuning, "held_out": held, "chosen": chosen,
        "chosen_meets_target": meets_target(held, held_sets, chosen["name"]),
        "any_meets_target": [config_name(c) for c in configs if meets_target(held, held_sets, config_name(c))],
        "held_out_maps": maps_comparison(photos, chosen["config"], args.steps),
        "held_out_curves": {s.name: curves(s, [1, 2, 4, 8] if s.family == "digits" else [1, 4, 16])
                            for s in (held_sets[0], photos)},
    }
    result["seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (args.out / f"formulation_study{suffix}.json").write_text(json.dumps(result, indent=1))
    (args.out / f"formulation_study{suffix}.md").write_text(report_markdown(result, tuning_sets, held_sets, configs))
    print(f"done in {result['seconds']:.0f} s; chosen {chosen['name']}; meets target: {result['chosen_meets_target']}")


if __name__ == "__main__":
    main()
