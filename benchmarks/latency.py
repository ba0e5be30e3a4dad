"""Per-image latency of QuboFeatureMapAttribution (per sampler) vs Captum's LayerGradCam.

EfficientNet-Lite0 at 224², layer ``_bn1.activation`` (ReLU6 head maps: 1280 maps, 7×7), scikit-image photos explained for
their predicted class. Each QUBO run is split into forward/backward, QUBO build and solve (the
explainer's own timings); "total" is the wall time of ``attribute()`` and "total CPU" its process
CPU time (less sensitive to other processes on a shared machine; it exceeds wall time when torch
uses several threads). Every cell is the median
over images × repeats, after one warm-up call per method (sampler construction, e.g. building
the Pegasus graph of mock-qpu, and compiling the dense search are excluded by the warm-up); the methods are
timed round-robin (every repeat, every image, every method), so load changes hit all of them alike.

Samplers limited in size get the most important maps only (``max_variables``): ``exact``
enumerates 2^d states (top 20), ``mock-qpu`` must minor-embed a dense clique onto Pegasus
(top 16; 32 maps already take ~13 s per solve). Their energies are of that smaller QUBO and are
not comparable with the full-d rows.

Usage:
    python -m benchmarks.latency [--repeats 5] [--images chelsea coffee astronaut] [--threads 1]
A second table: images/s at batch 64 (72 photo views of benchmarks/_head_qubos, the first 64) for the default
QUBO (both formulations) and the previous default sa, each ÷ LayerGradCam in the same interleaved run, with the
minor page faults and kernel seconds of each batch. It runs twice: with glibc's malloc defaults (large freed
blocks go back to the kernel, so each pass faults its activations in again: on this VM that is most of a batch's
time and swings ~2x) and then with freed memory kept (``mallopt``, as jemalloc/tcmalloc setups behave), where the
comparison is of the computation alone.
Writes benchmarks/results/latency.md and latency.json.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Dict, List

import torch
from captum.attr import LayerGradCam

from captum_qubo.attribution import QuboFeatureMapAttribution
from captum_qubo.zoo import efficientnet_target_layer, load_efficientnet_lite0, load_sample_image, preprocess_image

RESULTS = Path(__file__).resolve().parent / "results"

# (row label, sampler name, max_variables)
QUBO_METHODS = [
    ("QUBO dense-tabu (default)", "dense-tabu", None),
    ("QUBO sa", "sa", None),
    ("QUBO tabu", "tabu", None),
    ("QUBO steepest", "steepest", None),
    ("QUBO sqa", "sqa", None),
    ("QUBO exact (top-20 maps)", "exact", 20),
    ("QUBO sa (top-20 maps)", "sa", 20),
    ("QUBO mock-qpu (top-16 maps)", "mock-qpu", 16),
]


def time_grad_cam(model, layer, inputs: torch.Tensor, target: int) -> Dict[str, float]:
    explainer = LayerGradCam(model, layer)
    start, cpu_start = time.perf_counter(), time.process_time()
    explainer.attribute(inputs, target=target, relu_attributions=True)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"total": total, "cpu": cpu, "forward_backward": total, "build": 0.0, "solve": 0.0, "d": None, "selected": None,
            "energy": None}


# Throughput at batch 64: (row label, QuboOptions fields); LayerGradCam is the reference row.
THROUGHPUT_METHODS = [
    ("QUBO dense-tabu (default, unconstrained)", {}),
    ("QUBO dense-tabu k_hot K=5", {"formulation": "k_hot", "k": 5}),
    ("QUBO sa (previous default)", {"sampler": "sa"}),
]
THROUGHPUT_BATCH = 64


def time_qubo(explainer: QuboFeatureMapAttribution, inputs: torch.Tensor, target: int) -> Dict[str, float]:
    start, cpu_start = time.perf_counter(), time.process_time()
    explainer.attribute(inputs, target=target)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    selection = explainer.last_selections[0]
    return {"total": total, "cpu": cpu, **selection.timings, "d": selection.num_variables, "selected": selection.num_selected,
            "energy": selection.energy}


def run(images: List[str], repeats: int) -> Dict[str, dict]:
    model = load_efficientnet_lite0()
    layer = efficientnet_target_layer(model)
    batches = {name: preprocess_image(load_sample_image(name))[None] for name in images}
    with torch.no_grad():
        targets = {name: int(model(x).argmax()) for name, x in batches.items()}

    explainers = {label: QuboFeatureMapAttribution(model, layer, sampler=sampler, seed=0, max_variables=cap)
                  for label, sampler, cap in QUBO_METHODS}
    first = next(iter(images))
    time_grad_cam(model, layer, batches[first], targets[first])  # warm-up
    for explainer in explainers.values():
        time_qubo(explainer, batches[first], targets[first])  # warm-up: builds the sampler, compiles the search
    # Round-robin: every repeat times every method on every image, so load changes hit all methods alike.
    measured: Dict[str, List[dict]] = {"Captum LayerGradCam": [], **{label: [] for label in explainers}}
    for repeat in range(repeats):
        for name in images:
            measured["Captum LayerGradCam"].append(
                {"image": name, **time_grad_cam(model, layer, batches[name], targets[name])})
            for label, explainer in explainers.items():
                measured[label].append({"image": name, **time_qubo(explainer, batches[name], targets[name])})
        print(f"  repeat {repeat + 1}/{repeats} done", flush=True)
    return {label: summarise(runs) for label, runs in measured.items()}


def throughput(repeats: int) -> Dict[str, dict]:
    """Images/s at batch 64 (photos, mirrored and cropped, explained for their top classes), ÷ LayerGradCam, with
    each method's median minor page faults and system (kernel) seconds per batch."""
    from benchmarks._head_qubos import head_qubo_inputs

    model, layer, inputs, targets, _ = head_qubo_inputs()
    inputs, targets = inputs[:THROUGHPUT_BATCH], targets[:THROUGHPUT_BATCH]
    grad_cam = LayerGradCam(model, layer)
    methods = {"Captum LayerGradCam": lambda: grad_cam.attribute(inputs, target=targets, relu_attributions=True)}
    explainers = {}
    for label, fields in THROUGHPUT_METHODS:
        explainers[label] = QuboFeatureMapAttribution(model, layer, **fields)
        methods[label] = (lambda e: lambda: e.attribute(inputs, target=targets))(explainers[label])
    measured: Dict[str, List[tuple]] = {label: [] for label in methods}
    for call in methods.values():
        call()  # warm-up
    for _ in range(repeats):  # interleaved, so load changes hit every method alike
        for label, call in methods.items():
            before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            call()
            seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
            measured[label].append((seconds, after.ru_minflt - before.ru_minflt, after.ru_stime - before.ru_stime))
    reference = statistics.median(run[0] for run in measured["Captum LayerGradCam"])
    rows = {}
    for label, runs in measured.items():
        median = statistics.median(run[0] for run in runs)
        # Each repeat's own ratio (LayerGradCam's batch and ours, seconds apart) shows the spread that drift and
        # page faults give the ratio of medians.
        paired = [grad_cam[0] / run[0] for grad_cam, run in zip(measured["Captum LayerGradCam"], runs)]
        row = {"seconds": median, "images_per_s": THROUGHPUT_BATCH / median, "ratio": reference / median,
               "paired_ratios": paired,
               "page_faults": statistics.median(run[1] for run in runs),
               "system_seconds": statistics.median(run[2] for run in runs)}
        if label in explainers:
            timings = [s.timings for s in explainers[label].last_selections]
            row.update({part: sum(t[part] for t in timings) for part in ("forward_backward", "build", "solve")})
        rows[label] = row
    return rows


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory instead of handing it back to the kernel (what jemalloc or tcmalloc
    setups do): later allocations then reuse pages instead of faulting in fresh ones. False where it cannot."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int  # C ints, not truncated
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h> parameter numbers
    largest = 2 ** 31 - 1
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, largest))


def throughput_markdown(rows: Dict[str, dict], allocator: str) -> str:
    lines = [
        f"Throughput at batch {THROUGHPUT_BATCH}, {allocator} (median of interleaved repeats; ratio = ours ÷ "
        "LayerGradCam images/s, same run; per repeat: that repeat's own ratio, median and range; from own "
        "timings: forward+backward ÷ (forward+backward + build + solve) of the last batch, the ratio if the "
        "QUBO's own steps were the only difference; page faults and system seconds per batch)",
        "",
        "| method | images/s | ÷ LayerGradCam | per repeat: median (min–max) | from own timings | forward+backward s "
        "| build s | solve s | page faults | system s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, row in rows.items():
        parts = " | ".join(f"{row[p]:.3f}" if p in row else "–" for p in ("forward_backward", "build", "solve"))
        paired = row["paired_ratios"]
        spread = f"{statistics.median(paired):.2f} ({min(paired):.2f}–{max(paired):.2f})"
        own = (f"{row['forward_backward'] / (row['forward_backward'] + row['build'] + row['solve']):.3f}"
               if "solve" in row else "–")
        lines.append(f"| {label} | {row['images_per_s']:.1f} | {row['ratio']:.2f} | {spread} | {own} | {parts} | "
                     f"{row['page_faults']:,.0f} | {row['system_seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def summarise(runs: List[dict]) -> dict:
    summary = {key: statistics.median(run[key] for run in runs) for key in ("total", "cpu", "forward_backward", "build", "solve")}
    for key in ("d", "selected"):
        values = [run[key] for run in runs if run[key] is not None]
        summary[key] = statistics.median(values) if values else None
    # Energies differ between images, so they are kept per image (median over repeats).
    images = dict.fromkeys(run["image"] for run in runs)
    summary["energy"] = {
        image: statistics.median(run["energy"] for run in runs if run["image"] == image)
        for image in images
        if all(run["energy"] is not None for run in runs)
    }
    summary["runs"] = len(runs)
    return summary


def markdown(results: Dict[str, dict], images: List[str], setting: str) -> str:
    energy_columns = " | ".join(f"energy {image}" for image in images)
    lines = [
        f"Per-image latency, median ({setting})",
        "",
        f"| method | d (median) | maps selected | forward+backward ms | QUBO build ms | solve ms | total ms | "
        f"÷ LayerGradCam | total CPU ms | {energy_columns} |",
        "|---|" + "---:|" * (8 + len(images)),
    ]
    reference = results["Captum LayerGradCam"]["total"]
    for label, row in results.items():
        d = "–" if row["d"] is None else f"{row['d']:.0f}"
        selected = "–" if row["selected"] is None else f"{row['selected']:.0f}"
        energy = " | ".join(f"{row['energy'][image]:.4f}" if row["energy"] else "–" for image in images)
        lines.append(
            f"| {label} | {d} | {selected} | {1e3 * row['forward_backward']:.0f} | {1e3 * row['build']:.1f} | "
            f"{1e3 * row['solve']:.1f} | {1e3 * row['total']:.0f} | {row['total'] / reference:.2f} | "
            f"{1e3 * row['cpu']:.0f} | {energy} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=["chelsea", "coffee", "astronaut"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = run(args.images, args.repeats)
    batched = {"glibc malloc defaults": throughput(args.repeats)}
    # The same measurement with freed memory kept (last: mallopt cannot be undone). Under the defaults most of a
    # batch-64 pass is the kernel faulting in fresh pages for the activations, which swings run to run.
    if keep_freed_memory():
        batched["freed memory kept (mallopt)"] = throughput(args.repeats)
    setting = (
        f"EfficientNet-Lite0, 224², layer _bn1.activation (1280 maps, 7×7), images {', '.join(args.images)}, "
        f"{args.repeats} repeats each, torch {torch.__version__} CPU, {args.threads} thread(s), "
        f"{platform.processor() or platform.machine()}"
    )
    setting += f", load average {os.getloadavg()[0]:.1f} at the end"
    table = markdown(results, args.images, setting) + "".join(
        "\n" + throughput_markdown(rows, allocator) for allocator, rows in batched.items())
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latency.md").write_text(table)
    (RESULTS / "latency.json").write_text(
        json.dumps({"setting": setting, "results": results, "throughput": batched}, indent=2))


if __name__ == "__main__":
    main()
