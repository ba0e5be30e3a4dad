"""Time and peak memory of every QIXAI analysis on the digits CNN and EfficientNet-Lite0, and what they show.

Digits: the 540 test images, layers features.1, features.3, reduce.1 (ReLU), reduce (BN; the QUBO's layer).
EfficientNet-Lite0: the 16 photos bundled with scikit-image plus flips and crops (64 inputs by default), one
block per resolution stage and the activated head (1280 maps, 7×7, the layer the QUBO explains). MI is
all pairs within the head (1280² / 2 = 818,560 pairs) and between block 15 (320 maps) and the head.

Peak memory is the process's peak resident set above its level at the start of each step (Linux VmHWM,
reset per step); the model and the inputs are already loaded then.

Usage:
    python benchmarks/analyses.py [--images 64] [--digits-images 540] [--threads N]
Writes benchmarks/results/analyses.md, analyses.json and the pictures under benchmarks/results/analyses/.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch

from captum_qubo.analyses.inputs import MODELS, display_images, input_groups
from captum_qubo.analyses.map_information import permutation_null
from captum_qubo.analyses.pipeline import run_analyses
from captum_qubo.analyses.report import write_atomic

RESULTS = Path(__file__).resolve().parent / "results"


def zero_sets(pooled: np.ndarray, pairs) -> dict:
    """How much of MI's "entanglement" is two maps being silent (exactly zero) on the same inputs."""
    silent = pooled == 0

    def jaccard(a: int, b: int) -> float:
        union = (silent[:, a] | silent[:, b]).sum()
        return float((silent[:, a] & silent[:, b]).sum() / union) if union else float("nan")

    rng = np.random.default_rng(0)
    random_pairs = [tuple(rng.choice(pooled.shape[1], 2, replace=False)) for _ in range(2000)]
    return {"maps_silent_on_a_quarter_of_inputs": int((silent.mean(axis=0) >= 0.25).sum()),
            "mean_silent_fraction": float(silent.mean()),
            "top_pairs_jaccard": float(np.nanmean([jaccard(p["a"], p["b"]) for p in pairs])),
            "random_pairs_jaccard": float(np.nanmean([jaccard(a, b) for a, b in random_pairs]))}


def between_group_share(pooled: np.ndarray, groups) -> float:
    """Fraction of the total variance that lies between the group means (photos, or digit classes)."""
    groups = np.asarray(groups)
    centred = pooled - pooled.mean(axis=0)
    between = sum((groups == g).sum() * (centred[groups == g].mean(axis=0) ** 2).sum() for g in np.unique(groups))
    return float(between / (centred ** 2).sum())


def run_model(name: str, count: int, ig_inputs: int, ig_steps: int) -> dict:
    load, layers, build_inputs, _, pair = MODELS[name]
    inputs, input_names = build_inputs(count)
    torch.manual_seed(0)
    report, raw = run_analyses(load(), layers, inputs, name, RESULTS / "analyses" / name,
                               pictures=display_images(name, inputs), mi_between=[pair], ig_inputs=ig_inputs,
                               ig_steps=ig_steps, null_groups=input_groups(name, input_names), progress=True)
    head = layers[-1]
    plain_null = permutation_null(raw["activations"][head].numpy(), 300)  # inputs shuffled one by one
    values = raw["mutual_information"][head].pair_values()
    plain_null["fraction_above_q999"] = float((values > plain_null["q999"]).mean())
    mi = raw["mutual_information"][head]
    pooled = raw["activations"][head].numpy()
    return {"report": report.to_dict(), "peak_memory_mib": raw["peak_memory_mib"], "inputs": input_names,
            "head": head, "head_silent_maps": zero_sets(pooled, mi.top_pairs(100)),
            "head_mi_zero_fraction": float((mi.pair_values() == 0).mean()), "head_plain_null": plain_null,
            # EfficientNet's inputs are 16 photos x flips/crops: how much of each layer's variance is between photos
            # (digits: between the 10 classes)
            "between_group_variance_share": {
                layer: between_group_share(values.numpy(), [n.split("/")[0].split(":")[-1] for n in input_names])
                for layer, values in raw["activations"].items()}}


def _number(value: float) -> str:
    return "–" if np.isnan(value) else f"{value:.3f}"


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(results: dict, setting: str) -> str:
    lines = ["# QIXAI analyses: time, memory and findings", "", setting, ""]
    lines += ["## Time and peak memory per analysis", "",
              _row(["model", "inputs", "step", "seconds", "peak MiB above start"]), "|---|---|---|---|---|"]
    for name, result in results.items():
        report = result["report"]
        for step, seconds in report["timings"].items():
            lines.append(_row([name, report["num_inputs"], step, f"{seconds:.2f}",
                               f"{result['peak_memory_mib'].get(step, float('nan')):.0f}"]))
    lines += ["", "## Spectra", "",
              _row(["model", "layer", "maps", "PCs 90%", "PCs 95%", "PCs 99%", "top-5 variance", "eff. rank exp(S)",
                    "per-image eff. rank"]), "|---|---|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        for layer, entry in result["report"]["layers"].items():
            s = entry["spectrum"]
            lines.append(_row([name, layer, s["num_features"], s["components"]["90%"], s["components"]["95%"],
                               s["components"]["99%"], f"{s['top5_variance']:.3f}", f"{s['effective_rank']:.1f}",
                               f"{entry.get('image_spectra', {}).get('effective_rank_mean', float('nan')):.1f}"]))
    lines += ["", "Share of each layer's variance between group means (EfficientNet: the 16 photos; digits: the 10 "
              "classes): " + "; ".join(f"{name}: " + ", ".join(f"{layer} {share:.2f}" for layer, share in
                                                                result["between_group_variance_share"].items())
                                       for name, result in results.items()) + ".",
              "", "## Layer similarity (most similar pairs)", "",
              _row(["model", "measure", "pair", "similarity"]), "|---|---|---|---|"]
    for name, result in results.items():
        similarity = result["report"]["similarity"]
        for key, label in (("most_similar", "linear CKA"), ("most_similar_gram_cosine", "Gram cosine")):
            for pair in similarity[key]:
                lines.append(_row([name, label, f"{pair['a']} ↔ {pair['b']}", f"{pair['similarity']:.3f}"]))
        cosine = np.array(similarity["gram_cosine"])
        off = cosine[np.triu_indices(len(cosine), 1)]
        lines.append(_row([name, "Gram cosine, all layer pairs", "min / median", f"{off.min():.3f} / {np.median(off):.3f}"]))
    lines += ["", "## Most entangled map pairs (KSG MI, nats; Pearson r beside)", ""]
    for name, result in results.items():
        for label, mi in result["report"]["mutual_information"].items():
            lines += [f"**{name}, {label}**: {mi['num_pairs']} pairs in {mi['seconds']:.1f} s; mean {mi['mean']:.3f}, "
                      f"max {mi['max']:.3f}.", "", _row(["a", "b", "MI", "r", "−½log(1−r²)"]), "|---|---|---|---|---|"]
            lines += [_row([p["a"], p["b"], f"{p['mi']:.3f}", f"{p['pearson']:.3f}", f"{p['gaussian_mi']:.3f}"])
                      for p in mi["top_pairs"][:5]] + [""]
    lines += ["## Permutation null of the within-layer MI", "",
              _row(["model", "layer", "null", "null pairs", "null mean", "null 99.9 %", "null max",
                    "real pairs above null 99.9 %"]), "|---|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        nulls = [("inputs shuffled one by one", result["head_plain_null"])]
        mi = result["report"]["mutual_information"][result["head"]]
        if mi["null"]["grouped"]:
            nulls.append(("whole photos shuffled (keeps the 4 crops of a photo together)", mi["null"]))
        for kind, n in nulls:
            lines.append(_row([name, result["head"], kind, n["num_pairs"], f"{n['mean']:.3f}", f"{n['q999']:.3f}",
                               f"{n['max']:.3f}", f"{n['fraction_above_q999']:.2%}"]))
    lines += ["", "## QUBO redundancy J = abs cos (mean over images) vs MI across images", "",
              _row(["model", "layer", "pairs", "Spearman(abs cos, MI)", "Spearman(abs cos, abs r)", "Spearman(abs r, MI)",
                    "top-n overlap abs cos ∩ MI", "chance"]), "|---|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        for layer, c in result["report"]["redundancy"].items():
            lines.append(_row([name, layer, c["num_pairs"], f"{c['spearman_cos_mi']:.3f}",
                               f"{c['spearman_cos_abs_r']:.3f}", f"{c['spearman_abs_r_mi']:.3f}",
                               f"{c['top_overlap_cos_mi']:.2f} (n={c['top']})", f"{c['chance_overlap']:.4f}"]))
    lines += ["", "## Silent maps (pooled value exactly 0) behind the entangled pairs", "",
              _row(["model", "maps silent on ≥ 25 % of inputs", "silent fraction", "zero-set Jaccard, top-100 MI pairs",
                    "zero-set Jaccard, random pairs"]), "|---|---|---|---|---|"]
    for name, result in results.items():
        z = result["head_silent_maps"]
        lines.append(_row([f"{name} {result['head']}", z["maps_silent_on_a_quarter_of_inputs"],
                           f"{z['mean_silent_fraction']:.3f}", _number(z["top_pairs_jaccard"]),
                           _number(z["random_pairs_jaccard"])]))
    lines += ["", "## Integrated Gradients completeness", "",
              _row(["model", "on", "inputs", "max abs δ", "max relative δ"]), "|---|---|---|---|---|"]
    for name, result in results.items():
        for on, ig in result["report"]["integrated_gradients"].items():
            lines.append(_row([name, on, ig["num_inputs"], f"{ig['max_abs_delta']:.2e}",
                               f"{ig['max_relative_delta']:.2e}"]))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="EfficientNet-Lite0 inputs (photos + flips/crops)")
    parser.add_argument("--digits-images", type=int, default=540, help="digits test images")
    parser.add_argument("--ig-steps", type=int, default=64, help="IG steps on EfficientNet-Lite0 (2 photos)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"digits": run_model("digits", args.digits_images, 4, 64),
               "efficientnet-lite0": run_model("efficientnet-lite0", args.images, 2, args.ig_steps)}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    setting = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
               f"{torch.__version__} with {torch.get_num_threads()} threads, load average {load:.1f} at the end "
               "(a shared machine: times vary by about ±30 %); MI: KSG k=3, blocks of ≤ 256 MiB.")
    table = markdown(results, setting)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_atomic(RESULTS / "analyses.md", table)
    write_atomic(RESULTS / "analyses.json", json.dumps({"setting": setting, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
