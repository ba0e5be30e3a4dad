"""Compare the QUBO feature-map selection with Grad-CAM, Grad-CAM++ and Score-CAM (issue 3, METHOD.md §3–5).

Part 1 (``digits``): the paper's class-disentanglement experiment on scikit-learn digits, N_f = 16, 24, 32.
Part 2 (``imagenet``): pretrained EfficientNet-Lite0 on photos bundled with scikit-image, scikit-learn and
matplotlib: Average Drop, Increase in Confidence, deletion/insertion AUC, grid pointing game, latency.

Writes ``compare_methods.md`` / ``.json``, the README block ``compare_methods_readme_block.md`` and the
figures under ``--out`` (default ``benchmarks/results``) and prints the report. Run from the repository root::

    python -m benchmarks.compare_methods            # full run (sized for ~15 min on 2 shared CPU cores)
    python -m benchmarks.compare_methods --quick    # a minute-sized run
    python -m benchmarks.compare_methods --parts digits --num-filters 16
    python -m benchmarks.compare_methods --from-json benchmarks/results/compare_methods.json  # re-render only
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
from datetime import datetime, timezone
from pathlib import Path
from time import perf_counter
from typing import List, Optional, Sequence

import numpy as np
import torch

from benchmarks._digits_experiment import run_digits
from benchmarks._imagenet_experiment import PHOTOS, run_imagenet
from benchmarks._report import markdown_report, readme_results_block
from captum_qubo.attribution.selection import json_safe

PARTS = ("digits", "imagenet")
DEFAULT_OUT = Path("benchmarks") / "results"  # relative, so report paths read the same on every checkout


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which parts to run")
    parser.add_argument("--quick", action="store_true",
                        help="shrink everything (N_f 16, 3 images/class, 3 photos, 1 composite, short SA)")
    parser.add_argument("--num-filters", type=int, nargs="+", default=None, help="digits N_f values (16 24 32)")
    parser.add_argument("--per-class", type=int, default=None, help="digits: images per class (20)")
    parser.add_argument("--num-photos", type=int, default=None, help=f"imagenet: first n of the {len(PHOTOS)} photos")
    parser.add_argument("--num-composites", type=int, default=None, help="imagenet: 2x2 pointing-game composites (3)")
    parser.add_argument("--deletion-steps", type=int, default=None, help="imagenet: deletion/insertion steps (10)")
    parser.add_argument("--scorecam-images", type=int, default=None,
                        help="imagenet: photos Score-CAM explains (3; 1280 forward passes each)")
    parser.add_argument("--scorecam-pointing", type=int, default=None,
                        help="imagenet: pointing-game evaluations Score-CAM explains (2)")
    parser.add_argument("--sa-reads", type=int, default=None, help="imagenet QUBO: simulated-annealing reads (10)")
    parser.add_argument("--sa-sweeps", type=int, default=None, help="imagenet QUBO: sweeps per read (1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: on a shared machine more threads spin against other jobs; "
                             "the smoke run took 5x longer with 2 threads than with 1 on our 2 busy cores)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="re-render the report and README block from a saved compare_methods.json, run nothing")
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> dict:
    """Full-run defaults, shrunk by --quick, overridden by explicit flags."""
    quick = args.quick
    defaults = {
        "num_filters": [16] if quick else [16, 24, 32],
        "per_class": 3 if quick else 20,
        "num_photos": 3 if quick else len(PHOTOS),
        "num_composites": 1 if quick else 3,
        "deletion_steps": 4 if quick else 10,
        "scorecam_images": 0 if quick else 3,
        "scorecam_pointing": 0 if quick else 2,
        "sa_reads": 2 if quick else 10,
        "sa_sweeps": 200 if quick else 1000,
    }
    return {key: getattr(args, key) if getattr(args, key) is not None else value for key, value in defaults.items()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_benchmark(parts: Sequence[str], config: dict, seed: int, out: Path) -> dict:
    """Run the chosen parts; returns the JSON-ready results (without ``meta``)."""
    results = {"config": dict(config), "part_seconds": {}}
    if "digits" in parts:
        seed_everything(seed)
        start = perf_counter()
        results["digits"] = run_digits(config["num_filters"], config["per_class"], seed, out)
        results["part_seconds"]["digits"] = perf_counter() - start
    if "imagenet" in parts:
        seed_everything(seed)
        start = perf_counter()
        results["imagenet"] = run_imagenet(
            photos=PHOTOS[: config["num_photos"]],
            num_composites=config["num_composites"],
            deletion_steps=config["deletion_steps"],
            scorecam_images=config["scorecam_images"],
            scorecam_pointing=config["scorecam_pointing"],
            sa_kwargs={"num_reads": config["sa_reads"], "num_sweeps": config["sa_sweeps"]},
            seed=seed,
        )
        results["part_seconds"]["imagenet"] = perf_counter() - start
    return results


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    partial.replace(path)


def write_outputs(results: dict, out: Path) -> List[Path]:
    """compare_methods.md, compare_methods.json and compare_methods_readme_block.md under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "compare_methods.md", out / "compare_methods.json", out / "compare_methods_readme_block.md"]
    write_atomically(paths[0], markdown_report(results))
    write_atomically(paths[1], json.dumps(json_safe(results), indent=1))
    write_atomically(paths[2], readme_results_block(results))
    return paths


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    if args.from_json is not None:
        results = json.loads(args.from_json.read_text())
        return report(results, args.out)
    torch.set_num_threads(args.threads)
    config = resolve_config(args)
    start = perf_counter()
    results = run_benchmark(args.parts, config, args.seed, args.out)
    results["meta"] = {
        "command": " ".join(["python -m benchmarks.compare_methods", *(sys.argv[1:] if argv is None else argv)]),
        "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_seconds": perf_counter() - start,
        "seed": args.seed,
        "num_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}",
    }
    return report(results, args.out)


def report(results: dict, out: Path) -> dict:
    """Write the outputs under ``out`` and print the markdown report."""
    paths = write_outputs(results, out)
    print(paths[0].read_text())
    print("Written: " + ", ".join(str(p) for p in paths))
    return results


if __name__ == "__main__":
    main()
