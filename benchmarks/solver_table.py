"""Solver table: best-known hit rate and solve time per solver on real head QUBOs, scaling in d and in batch size.

1. Real QUBOs (benchmarks/_head_qubos.py: 8 photos × as-is/mirrored/crop × top-3 classes = 72, d ≈ 280–460), for
   unconstrained and k_hot K=5: share of instances where a solver reaches the best-known energy of
   tests/data/head_qubo_best_known.json (sa 100 reads, tabu, dense-tabu 32 starts), and its median solve time per
   instance. dense-tabu solves all 72 in one batch and one at a time; the dwave-samplers solvers (their registry
   defaults: sa/steepest 10 reads, tabu 10 reads × 10 restarts) run on the first ``--dimod-instances`` instances.
2. Scaling in d: a random dense family with the head's statistics (sparse non-negative 7×7 maps, |normal| α),
   d = 100 … 2000, batch 8: dense-tabu time per problem and agreement with a 32-start, patience-200 run.
3. Solve time per problem vs batch size (1, 8, 24, 72) on the real QUBOs.

Usage:  python -m benchmarks.solver_table [--dimod-instances 24]
Writes benchmarks/results/solver_table.md and .json. One torch thread.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._head_qubos import head_importance_and_maps
from captum_qubo.formulation.batched import build_batched_qubos
from captum_qubo.solvers.batch import selection_energies
from captum_qubo.solvers.dense_tabu import dense_tabu_search
from captum_qubo.solvers.registry import sample_lowest_energy

RESULTS = Path(__file__).resolve().parent / "results"
BEST_KNOWN = Path(__file__).resolve().parents[1] / "tests" / "data" / "head_qubo_best_known.json"
FORMULATIONS = (("unconstrained", None), ("k_hot", 5))
DIMOD_SOLVERS = ("sa", "tabu", "steepest")
SIZES = (100, 250, 500, 1000, 2000)


def best_known(formulation, k):
    records = json.loads(BEST_KNOWN.read_text())["records"]
    return {r["instance"]: r["best_energy"] for r in records if r["formulation"] == formulation and r["k"] == k}


def real_rows(importance, maps, names, dimod_instances):
    rows = []
    for formulation, k in FORMULATIONS:
        reference = best_known(formulation, k)
        qubos = build_batched_qubos(importance, maps, 0.7, formulation, k)
        start = time.perf_counter()
        result = dense_tabu_search(qubos.linear, qubos.quadratic, qubos.mask, k=k, seed=0)
        batch_seconds = (time.perf_counter() - start) / len(names)
        energies = selection_energies(qubos, result.states)
        hits = [energies[i] <= reference[n] + 1e-9 for i, n in enumerate(names)]
        single = []
        for i in range(len(names)):
            one = build_batched_qubos(importance[i:i + 1], maps[i:i + 1], 0.7, formulation, k)
            start = time.perf_counter()
            dense_tabu_search(one.linear, one.quadratic, one.mask, k=k, seed=0)
            single.append(time.perf_counter() - start)
        rows.append({"formulation": formulation if k is None else f"k_hot K={k}", "solver": "dense-tabu (default)",
                     "instances": len(names), "hits": int(sum(hits)), "median_ms_batch1": 1e3 * statistics.median(single),
                     "ms_per_instance_batch72": 1e3 * batch_seconds})
        for solver in DIMOD_SOLVERS:
            hits, seconds = [], []
            for i in range(dimod_instances):
                problem = qubos.problem(i)
                start = time.perf_counter()
                best = sample_lowest_energy(problem.to_bqm(), solver, seed=0)
                seconds.append(time.perf_counter() - start)
                on_k_hot = k is None or int(best.state.sum()) == k
                hits.append(on_k_hot and best.energy <= reference[names[i]] + 1e-9)
            rows.append({"formulation": rows[-1]["formulation"], "solver": solver, "instances": dimod_instances,
                         "hits": int(sum(hits)), "median_ms_batch1": 1e3 * statistics.median(seconds),
                         "ms_per_instance_batch72": None})
            print(f"  {rows[-1]['formulation']} {solver}: {rows[-1]['hits']}/{dimod_instances}", flush=True)
    return rows


def random_family(d: int, batch: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    importance = torch.rand((batch, d), generator=generator, dtype=torch.float64) + 1e-3
    active = torch.rand((batch, d, 49), generator=generator) < 0.35
    maps = torch.randn((batch, d, 7, 7), generator=generator, dtype=torch.float64).abs() * active.view(batch, d, 7, 7)
    return importance, maps


def scaling_rows():
    rows = []
    for d in SIZES:
        importance, maps = random_family(d, 8, seed=d)
        qubos = build_batched_qubos(importance, maps, 0.7)
        start = time.perf_counter()
        ours = dense_tabu_search(qubos.linear, qubos.quadratic, qubos.mask, seed=0)
        seconds = (time.perf_counter() - start) / 8
        strong = dense_tabu_search(qubos.linear, qubos.quadratic, qubos.mask, num_starts=32, patience=200, seed=1)
        agree = int((ours.energies <= strong.energies + 1e-9).sum())
        rows.append({"d": d, "ms_per_problem": 1e3 * seconds, "matches_32_starts": agree, "problems": 8,
                     "mean_selected": float(ours.states.sum(dim=1).double().mean())})
        print(f"  d={d}: {1e3 * seconds:.1f} ms/problem, {agree}/8", flush=True)
    return rows


def batch_rows(importance, maps):
    rows = []
    for batch in (1, 8, 24, 72):
        qubos = build_batched_qubos(importance[:batch], maps[:batch], 0.7)
        start = time.perf_counter()
        dense_tabu_search(qubos.linear, qubos.quadratic, qubos.mask, seed=0)
        rows.append({"batch": batch, "ms_per_problem": 1e3 * (time.perf_counter() - start) / batch})
    return rows


def markdown(real, scaling, batches, setting):
    lines = [f"Solvers on real EfficientNet-Lite0 head QUBOs ({setting})", "",
             "| formulation | solver | hits best-known | median solve ms (one problem) | ms per problem (batch of 72) |",
             "|---|---|---:|---:|---:|"]
    for row in real:
        batched = "–" if row["ms_per_instance_batch72"] is None else f"{row['ms_per_instance_batch72']:.1f}"
        lines.append(f"| {row['formulation']} | {row['solver']} | {row['hits']}/{row['instances']} | "
                     f"{row['median_ms_batch1']:.1f} | {batched} |")
    lines += ["", "dense-tabu on a random dense family with the head's statistics (batch 8)", "",
              "| d | ms per problem | equals a 32-start run | mean maps selected |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['d']} | {r['ms_per_problem']:.1f} | {r['matches_32_starts']}/{r['problems']} | "
              f"{r['mean_selected']:.1f} |" for r in scaling]
    lines += ["", "dense-tabu solve time per problem vs batch size (real QUBOs, unconstrained)", "",
              "| batch | ms per problem |", "|---:|---:|"]
    lines += [f"| {r['batch']} | {r['ms_per_problem']:.1f} |" for r in batches]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dimod-instances", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(1)
    importance, maps, names = head_importance_and_maps()
    real = real_rows(importance, maps, names, args.dimod_instances)
    scaling = scaling_rows()
    batches = batch_rows(importance, maps)
    setting = f"torch {torch.__version__} CPU, 1 thread, load average {os.getloadavg()[0]:.1f}"
    table = markdown(real, scaling, batches, setting)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "solver_table.md").write_text(table)
    (RESULTS / "solver_table.json").write_text(
        json.dumps({"setting": setting, "real": real, "scaling": scaling, "batches": batches}, indent=2))


if __name__ == "__main__":
    main()
