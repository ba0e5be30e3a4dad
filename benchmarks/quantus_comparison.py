"""QUBO vs Grad-CAM under Quantus' metrics on the digits CNN: one or two metrics per Quantus family.

Every metric is a real Quantus 0.6 call with ``captum_qubo.integrations.quantus.explain`` as its ``explain_func``
(MPRT explains Quantus' randomised deep copies). Images: the first ``--per-class`` correctly classified test
images of every digit. Localisation ground truth: the digit's ink (pixels > 0.3), the only segmentation digits
have. Pixel-Flipping's AUC needs ``numpy2_auc_shim`` on numpy >= 2.4 (Quantus calls the removed ``np.trapz``).

Run: ``.venv/bin/python benchmarks/quantus_comparison.py`` (about two minutes on 2 cores); writes
``benchmarks/results/quantus_comparison.{md,json}``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np
import quantus
import torch

from captum_qubo.attribution.options import QuboOptions
from captum_qubo.integrations.quantus import explain, numpy2_auc_shim
from captum_qubo.zoo import load_digits_split, train_digits_cnn

RESULTS = Path(__file__).resolve().parent / "results"
QUIET = dict(disable_warnings=True, display_progressbar=False)

# name -> (Quantus family, higher is better, metric factory, needs the ink mask)
METRICS: Dict[str, Tuple[str, bool, Callable[[], quantus.Metric], bool]] = {
    "Faithfulness Correlation": ("faithfulness", True, lambda: quantus.FaithfulnessCorrelation(
        nr_runs=50, subset_size=8, perturb_baseline="black", return_aggregate=False, **QUIET), False),
    "Pixel-Flipping AUC": ("faithfulness", False, lambda: quantus.PixelFlipping(
        features_in_step=4, perturb_baseline="black", return_auc_per_sample=True, **QUIET), False),
    "Relevance Mass Accuracy": ("localisation", True, lambda: quantus.RelevanceMassAccuracy(**QUIET), True),
    "Pointing Game": ("localisation", True, lambda: quantus.PointingGame(**QUIET), True),
    "MPRT (mean correlation)": ("randomisation", False, lambda: quantus.MPRT(
        return_average_correlation=True, **QUIET), False),
    "Max-Sensitivity": ("robustness", False, lambda: quantus.MaxSensitivity(
        nr_samples=10, lower_bound=0.1, **QUIET), False),
    "Sparseness (Gini)": ("complexity", True, lambda: quantus.Sparseness(**QUIET), False),
    "Complexity (entropy)": ("complexity", False, lambda: quantus.Complexity(**QUIET), False),
}


def chosen_images(model: torch.nn.Module, per_class: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """The first ``per_class`` correctly classified test images of each digit, in a seeded shuffled order."""
    _, _, x_test, y_test = load_digits_split(seed)
    with torch.no_grad():
        correct = model(x_test).argmax(dim=1) == y_test
    keep = np.concatenate([np.flatnonzero((y_test == digit).numpy() & correct.numpy())[:per_class]
                           for digit in range(10)])
    keep = np.random.default_rng(seed).permutation(keep)
    return x_test[keep].numpy(), y_test[keep].numpy()


def run(per_class: int, seed: int) -> dict:
    model = train_digits_cnn(num_filters=16, seed=seed)
    x, y = chosen_images(model, per_class, seed)
    ink = (x > 0.3).astype(np.float64)
    methods = {"QUBO": {"layer": "reduce", "method": "qubo", "options": QuboOptions.preset("paper", sampler="exact", seed=seed)},
               "Grad-CAM": {"layer": "reduce", "method": "grad_cam"}}
    rows = {}
    for name, (family, higher, make, masked) in METRICS.items():
        rows[name] = {"family": family, "higher_is_better": higher}
        for method, kwargs in methods.items():
            np.random.seed(seed)  # Quantus draws subsets and noise from the global streams: same for both methods
            torch.manual_seed(seed)
            start = time.perf_counter()
            try:
                with numpy2_auc_shim():
                    scores = make()(model=model, x_batch=x, y_batch=y, s_batch=ink if masked else None,
                                    explain_func=explain, explain_func_kwargs=kwargs, device="cpu")
            except AssertionError as error:  # Quantus' input checks: record why instead of losing the other rows
                rows[name][method] = {"mean": float("nan"), "sem": float("nan"), "error": str(error)[:200]}
                continue
            values = np.asarray(scores, dtype=np.float64).reshape(-1)
            rows[name][method] = {"mean": float(np.nanmean(values)),
                                  "sem": float(np.nanstd(values) / np.sqrt(np.count_nonzero(~np.isnan(values)))),
                                  "seconds": time.perf_counter() - start}
            print(f"{name:26s} {method:9s} {rows[name][method]['mean']:.4f}", flush=True)
    return {"images": int(len(x)), "per_class": per_class, "seed": seed, "metrics": rows}


def markdown(result: dict, seconds: float) -> str:
    lines = [
        "# QUBO vs Grad-CAM under Quantus metrics (digits CNN)", "",
        f"Generated by `python benchmarks/quantus_comparison.py` on {result['date']} in {seconds:.0f} s "
        f"(quantus {quantus.__version__}, numpy {np.__version__}, torch {torch.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cores, seed {result['seed']}).", "",
        f"{result['images']} correctly classified sklearn-digits test images ({result['per_class']} per digit), "
        "DigitsCNN with N_f = 16, layer `reduce`. QUBO: β = 0.7, solved exactly (sampler `exact`); Grad-CAM: "
        "Captum's LayerGradCam with ReLU. Both through `captum_qubo.integrations.quantus.explain`; Quantus "
        "normalises every map by its maximum. Localisation mask: the digit's ink (pixel > 0.3). "
        "Images are shuffled (seeded) so Quantus' batches of 64 mix the digits: on MPRT's randomised copies "
        "Grad-CAM is all zero for 5-21 % of the images, class by class (α is the same for every image of a class "
        "here), and Quantus refuses a batch whose maps are all zero. "
        "Mean ± standard error over images; ↑ higher is better, ↓ lower is better.", "",
        "| Family | Metric | QUBO | Grad-CAM | Better |", "|---|---|---|---|---|",
    ]
    for name, row in result["metrics"].items():
        qubo, grad_cam = row["QUBO"]["mean"], row["Grad-CAM"]["mean"]
        if np.isnan(qubo) or np.isnan(grad_cam):
            better = "n/a"
        elif abs(qubo - grad_cam) <= 1e-9:
            better = "tie"
        else:
            better = "QUBO" if (qubo > grad_cam) == row["higher_is_better"] else "Grad-CAM"
        arrow = "↑" if row["higher_is_better"] else "↓"
        lines.append(f"| {row['family']} | {name} {arrow} | {qubo:.3f} ± {row['QUBO']['sem']:.3f} | "
                     f"{grad_cam:.3f} ± {row['Grad-CAM']['sem']:.3f} | {better} |")
    lines += ["", "Not run: IROF, Region Perturbation, Selectivity (they call `np.trapz`, removed in numpy 2.4; "
              "`numpy2_auc_shim` would make them run too) and Continuity (`np.NaN`, removed in numpy 2.0)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=20, help="correctly classified test images per digit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    start = time.perf_counter()
    result = run(args.per_class, args.seed)
    result["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    seconds = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    for suffix, text in (("json", json.dumps(result, indent=2)), ("md", markdown(result, seconds))):
        partial = args.out / f"quantus_comparison.{suffix}.tmp"
        partial.write_text(text)
        os.replace(partial, args.out / f"quantus_comparison.{suffix}")
    print(markdown(result, seconds))


if __name__ == "__main__":
    main()
