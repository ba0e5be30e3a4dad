"""Solver table: best-known hit rate and solve time per solver on real head QUBOs, scaling in d and in batch size.

1. Real QUBOs (benchmarks/_head_qubos.py: 8 photos × as-is/mirrored/crop × top-3 classes = 72, d ≈ 280–460), for
   unconstrained and k_hot K=5: share of instances where a solver reaches the best-known energy of
   tests/data/head_qubo_best_known.json (sa 100 reads, tabu, dense-tabu 32 starts), and its median solve time per
   instance. dense-tabu (both implementations: the compiled CPU search and the torch one that runs on GPUs) solves
   all 72 in one batch and one at a time; the dwave-samplers solvers (their registry
   defaults: sa/steepest 10 reads, tabu 10 reads × 10 restarts) run on the first ``--dimod-instances`` instances.
2. Scaling in d: a random dense family with the head's statistics (sparse non-negative 7×7 maps, |normal| α),
   d = 100 … 2000, batch 8: dense-tabu time per problem and agreement with a 32-start, patience-200 run.
3. Small problems (d = 6–18, the random family, batch 64): exhaustive enumeration, exact and the default up to
   EXHAUSTIVE_MAX_VARIABLES, against the tabu search alone.
4. Solve time per problem vs batch size (1, 8, 24, 72) on the real QUBOs.
5. The default on the 64 held-out real QUBOs (tests/data/head_qubo_best_known_holdout.json): its patience was
   chosen without them; its number of starts was raised to 32 after 24 starts missed one of them.
6. The explainer's default formulation (contribution, β = 0.9) on all 136 inputs, against a long run of itself.

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

import torch

from benchmarks._head_qubos import head_importance_and_maps
from captum_qubo.formulation.batched import build_batched_qubos
from captum_qubo.formulation.importance import map_importance
from captum_qubo.solvers.batch import selection_energies
from captum_qubo.solvers.dense_tabu import EXHAUSTIVE_MAX_VARIABLES, dense_tabu_search
from captum_qubo.solvers.registry import sample_lowest_energy

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
BEST_KNOWN = {"tuning": DATA / "head_qubo_best_known.json", "holdout": DATA / "head_qubo_best_known_holdout.json"}
HOLDOUT_FORMULATIONS = (("unconstrained", None), ("k_hot", 5), ("k_hot", 10))
FORMULATIONS = (("unconstrained", None), ("k_hot", 5))
DIMOD_SOLVERS = ("sa", "tabu", "steepest")
# The dense search's two implementations of the same moves: compiled loops (the CPU default) and batched torch
# operations (what runs on a GPU; timed here on the CPU).
BACKENDS = (("compiled", "dense-tabu (default, compiled CPU search)"), ("torch", "dense-tabu, torch backend (the GPU path)"))
SIZES = (100, 250, 500, 1000, 2000)
SMALL_SIZES = (6, 8, 10, 12, 14, 16, 17, 18)


def best_known(formulation, k, instance_set="tuning"):
    records = json.loads(BEST_KNOWN[instance_set].read_text())["records"]
    return {r["instance"]: r["best_energy"] for r in records if r["formulation"] == formulation and r["k"] == k}


def real_rows(importance, maps, names, dimod_instances):
    rows = []
    for formulation, k in FORMULATIONS:
        reference = best_known(formulation, k)
        qubos = build_batched_qubos(importance, maps, 0.7, formulation, k)
        for backend, label in BACKENDS:
            start = time.perf_counter()
            result = dense_tabu_search(qubos.linear, qubos.J, qubos.mask, k=k, seed=0, backend=backend,
                                       quadratic_scale=qubos.quadratic_scale)
            batch_seconds = (time.perf_counter() - start) / len(names)
            energies = selection_energies(qubos, result.states)
            hits = [energies[i] <= reference[n] + 1e-9 for i, n in enumerate(names)]
            single = []
            for i in range(len(names)):
                one = build_batched_qubos(importance[i:i + 1], maps[i:i + 1], 0.7, formulation, k)
                start = time.perf_counter()
                dense_tabu_search(one.linear, one.J, one.mask, k=k, seed=0, backend=backend,
                                  quadratic_scale=one.quadratic_scale)
                single.append(time.perf_counter() - start)
            rows.append({"formulation": formulation if k is None else f"k_hot K={k}", "solver": label,
                         "instances": len(names), "hits": int(sum(hits)),
                         "median_ms_batch1": 1e3 * statistics.median(single),
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


def holdout_rows():
    """The default search on the 64 held-out instances (other crops and classes; its settings were not chosen on
    them), against their own best-known energies."""
    importance, maps, names = head_importance_and_maps(instance_set="holdout")
    rows = []
    for formulation, k in HOLDOUT_FORMULATIONS:
        reference = best_known(formulation, k, "holdout")
        qubos = build_batched_qubos(importance, maps, 0.7, formulation, k)
        result, seconds = timed_search(qubos, "compiled", k=k, seed=0)
        energies = selection_energies(qubos, result.states)
        rows.append({"formulation": formulation if k is None else f"k_hot K={k}", "instances": len(names),
                     "hits": int(sum(energies[i] <= reference[n] + 1e-9 for i, n in enumerate(names))),
                     "ms_per_instance_batch": 1e3 * seconds / len(names)})
    return rows


def default_formulation_rows():
    """The explainer's default formulation (contribution importance, β = 0.9) on all 136 head inputs (tuning and
    held-out): the default search against a 96-start, patience-200 run of itself (no independent reference was
    computed for this formulation: a weaker check than the rows above)."""
    rows = []
    for instance_set in ("tuning", "holdout"):
        alpha, maps, names = head_importance_and_maps(instance_set=instance_set)
        # The explainer's own importance function; on this pooled head ∂z_c/∂f is α at every position.
        contribution = map_importance("contribution", alpha[:, :, None, None].expand_as(maps), maps)
        for formulation, k in (("unconstrained", None), ("k_hot", 5)):
            qubos = build_batched_qubos(contribution, maps, 0.9, formulation, k)
            ours, seconds = timed_search(qubos, "compiled", k=k, seed=0)
            strong, _ = timed_search(qubos, "compiled", k=k, num_starts=96, patience=200, seed=1)
            rows.append({"set": instance_set, "formulation": formulation if k is None else f"k_hot K={k}",
                         "instances": len(names), "matches_long_run": int((ours.energies <= strong.energies + 1e-9).sum()),
                         "median_d": float(qubos.num_variables.double().median()),
                         "ms_per_instance_batch": 1e3 * seconds / len(names)})
    return rows


def random_family(d: int, batch: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    importance = torch.rand((batch, d), generator=generator, dtype=torch.float64) + 1e-3
    active = torch.rand((batch, d, 49), generator=generator) < 0.35
    maps = torch.randn((batch, d, 7, 7), generator=generator, dtype=torch.float64).abs() * active.view(batch, d, 7, 7)
    return importance, maps


def timed_search(qubos, backend: str, **options):
    start = time.perf_counter()
    result = dense_tabu_search(qubos.linear, qubos.J, qubos.mask, backend=backend,
                               quadratic_scale=qubos.quadratic_scale, **options)
    return result, time.perf_counter() - start


def scaling_rows():
    rows = []
    for d in SIZES:
        importance, maps = random_family(d, 8, seed=d)
        qubos = build_batched_qubos(importance, maps, 0.7)
        ours, seconds = timed_search(qubos, "compiled", seed=0)
        _, torch_seconds = timed_search(qubos, "torch", seed=0)
        strong, _ = timed_search(qubos, "compiled", num_starts=32, patience=200, seed=1)
        agree = int((ours.energies <= strong.energies + 1e-9).sum())
        rows.append({"d": d, "ms_per_problem": 1e3 * seconds / 8, "torch_ms_per_problem": 1e3 * torch_seconds / 8,
                     "matches_32_starts": agree, "problems": 8,
                     "mean_selected": float(ours.states.sum(dim=1).double().mean())})
        print(f"  d={d}: {rows[-1]['ms_per_problem']:.1f} ms/problem (torch {rows[-1]['torch_ms_per_problem']:.1f}), "
              f"{agree}/8", flush=True)
    return rows


def small_rows():
    """Small problems (d = 6–18, the random family, batch 64): exhaustive enumeration against the tabu search alone,
    the data behind EXHAUSTIVE_MAX_VARIABLES."""
    rows = []
    for d in SMALL_SIZES:
        importance, maps = random_family(d, 64, seed=100 + d)
        qubos = build_batched_qubos(importance, maps, 0.9)
        for k in (None, 3):
            timings = {}
            for label, limit in (("enumeration", 30), ("tabu", 0)):
                runs = [timed_search(qubos, "compiled", k=k, seed=0, exhaustive_max_variables=limit) for _ in range(3)]
                timings[label] = (runs[0][0], min(seconds for _, seconds in runs))
            exact, tabu = timings["enumeration"][0], timings["tabu"][0]
            rows.append({"d": d, "formulation": "unconstrained" if k is None else f"k_hot K={k}", "problems": 64,
                         "enumeration_ms_per_problem": 1e3 * timings["enumeration"][1] / 64,
                         "tabu_ms_per_problem": 1e3 * timings["tabu"][1] / 64,
                         "tabu_optimal": int((tabu.energies <= exact.energies + 1e-9).sum())})
    return rows


def batch_rows(importance, maps):
    rows = []
    for batch in (1, 8, 24, 72):
        qubos = build_batched_qubos(importance[:batch], maps[:batch], 0.7)
        row = {"batch": batch}
        for backend, _ in BACKENDS:
            row[f"{backend}_ms_per_problem"] = 1e3 * timed_search(qubos, backend, seed=0)[1] / batch
        rows.append(row)
    return rows


def markdown(real, holdout, default_rows, scaling, small, batches, setting):
    lines = [f"Solvers on real EfficientNet-Lite0 head QUBOs ({setting})", "",
             "| formulation | solver | hits best-known | median solve ms (one problem) | ms per problem (batch of 72) |",
             "|---|---|---:|---:|---:|"]
    for row in real:
        batched = "–" if row["ms_per_instance_batch72"] is None else f"{row['ms_per_instance_batch72']:.1f}"
        lines.append(f"| {row['formulation']} | {row['solver']} | {row['hits']}/{row['instances']} | "
                     f"{row['median_ms_batch1']:.1f} | {batched} |")
    lines += ["", "dense-tabu (default) on the 64 held-out head QUBOs (centre 65 % crops, mirrored or not, × top-3 "
              "classes; as is × 4th and 5th classes): its patience was chosen without them; its number of starts was "
              "raised from 24 to 32 after 24 missed one of them", "",
              "| formulation | hits best-known | ms per problem (batch of 64) |", "|---|---:|---:|"]
    lines += [f"| {r['formulation']} | {r['hits']}/{r['instances']} | {r['ms_per_instance_batch']:.1f} |" for r in holdout]
    lines += ["", "dense-tabu (default) on the explainer's default formulation (contribution, β = 0.9), against a "
              "96-start, patience-200 run of itself", "",
              "| set | formulation | median d | equals the long run | ms per problem (batch) |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['set']} | {r['formulation']} | {r['median_d']:.0f} | {r['matches_long_run']}/{r['instances']} | "
              f"{r['ms_per_instance_batch']:.1f} |" for r in default_rows]
    lines += ["", "dense-tabu on a random dense family with the head's statistics (batch 8)", "",
              "| d | ms per problem (compiled) | ms per problem (torch backend) | equals a 32-start, patience-200 run "
              "with other seeds | "
              "mean maps selected |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['d']} | {r['ms_per_problem']:.1f} | {r['torch_ms_per_problem']:.1f} | "
              f"{r['matches_32_starts']}/{r['problems']} | {r['mean_selected']:.1f} |" for r in scaling]
    lines += ["", f"Small problems: exhaustive enumeration (exact; the default up to d = {EXHAUSTIVE_MAX_VARIABLES}) against "
              "the tabu search alone (random family, β = 0.9, batch 64, compiled, best of 3)", "",
              "| d | formulation | enumeration ms per problem | tabu ms per problem | tabu reaches the optimum |",
              "|---:|---|---:|---:|---:|"]
    lines += [f"| {r['d']} | {r['formulation']} | {r['enumeration_ms_per_problem']:.3f} | {r['tabu_ms_per_problem']:.3f} | "
              f"{r['tabu_optimal']}/{r['problems']} |" for r in small]
    lines += ["", "dense-tabu solve time per problem vs batch size (real QUBOs, unconstrained)", "",
              "| batch | ms per problem (compiled) | ms per problem (torch backend) |", "|---:|---:|---:|"]
    lines += [f"| {r['batch']} | {r['compiled_ms_per_problem']:.1f} | {r['torch_ms_per_problem']:.1f} |"
              for r in batches]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dimod-instances", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(1)
    importance, maps, names = head_importance_and_maps()
    warm_up = build_batched_qubos(importance[:1], maps[:1], 0.7)
    for backend, _ in BACKENDS:
        timed_search(warm_up, backend, seed=0)  # loads (or compiles) the numba kernel
    real = real_rows(importance, maps, names, args.dimod_instances)
    holdout = holdout_rows()
    default_rows = default_formulation_rows()
    scaling = scaling_rows()
    small = small_rows()
    batches = batch_rows(importance, maps)
    setting = f"torch {torch.__version__} CPU, 1 thread, load average {os.getloadavg()[0]:.1f}"
    table = markdown(real, holdout, default_rows, scaling, small, batches, setting)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "solver_table.md").write_text(table)
    (RESULTS / "solver_table.json").write_text(
        json.dumps({"setting": setting, "real": real, "holdout": holdout, "default_formulation": default_rows,
                    "scaling": scaling, "small": small, "batches": batches},
                   indent=2))


if __name__ == "__main__":
    main()
