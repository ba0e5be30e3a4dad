"""Best-known selections of the real head QUBOs, from independent searches, for the solver tests.

For each instance of a set (:mod:`benchmarks._head_qubos`) and each formulation the best state found by any of
- dwave-samplers' simulated annealing, 100 reads,
- dwave-samplers' tabu search, 2 reads with a 1 s timeout each,
- our dense tabu search with many starts (32 on the tuning set, 48 on the held-out one) and patience 200,
is kept, as layer channels, in ``tests/data/head_qubo_best_known[_holdout].json``. The solver test rebuilds the
QUBOs and requires the default search to reach each of these energies.

- ``--set tuning`` (72 instances; unconstrained and k_hot with K = 3, 5, 10): ~35 min on a busy core.
- ``--set holdout`` (64 instances; unconstrained and k_hot with K = 5, 10): simulated annealing only for the
  unconstrained form (it cannot hold K: it reached 0 of the tuning set's k_hot optima), ~10-15 min.

Usage:  python -m benchmarks.head_qubo_references [--set tuning|holdout]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from dwave.samplers import SimulatedAnnealingSampler, TabuSampler

from benchmarks._head_qubos import head_importance_and_maps
from captum_qubo.formulation.batched import build_batched_qubos
from captum_qubo.formulation.qubo import build_feature_map_qubo
from captum_qubo.solvers.dense_tabu import dense_tabu_search

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
OUT = {"tuning": DATA / "head_qubo_best_known.json", "holdout": DATA / "head_qubo_best_known_holdout.json"}
FORMULATIONS = {
    "tuning": (("unconstrained", None), ("k_hot", 3), ("k_hot", 5), ("k_hot", 10)),
    "holdout": (("unconstrained", None), ("k_hot", 5), ("k_hot", 10)),
}
LONG_RUN_STARTS = {"tuning": 32, "holdout": 48}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="instance_set", choices=sorted(OUT), default="tuning")
    args = parser.parse_args()
    torch.set_num_threads(1)
    importance, maps, names = head_importance_and_maps(instance_set=args.instance_set)
    records, started = [], time.time()
    for formulation, k in FORMULATIONS[args.instance_set]:
        batched = build_batched_qubos(importance, maps, 0.7, formulation, k)
        starts = LONG_RUN_STARTS[args.instance_set]
        ours = dense_tabu_search(batched.linear, batched.quadratic, batched.mask, k=k, num_starts=starts,
                                 patience=200, seed=12345)
        for i, name in enumerate(names):
            problem = build_feature_map_qubo(importance[i].double().numpy(), maps[i].double().numpy(), 0.7,
                                             formulation, k)
            bqm = problem.to_bqm()
            candidates = {f"dense-tabu-{starts}": ours.states[i, : problem.num_variables].numpy().astype(np.int8)}
            samplers = {"tabu-2x1s": lambda: TabuSampler().sample(bqm, num_reads=2, timeout=1000, seed=i)}
            if args.instance_set == "tuning" or k is None:
                samplers["sa-100"] = lambda: SimulatedAnnealingSampler().sample(bqm, num_reads=100, seed=i)
            for label, sample in samplers.items():
                best = sample().first.sample
                candidates[label] = np.array([best[v] for v in range(problem.num_variables)], dtype=np.int8)
            energies = {label: float(problem.energies(state)) for label, state in candidates.items()}
            winner = min(energies, key=energies.get)
            records.append({
                "instance": name, "formulation": formulation, "k": k, "d": problem.num_variables,
                "best_energy": energies[winner], "found_by": winner, "energies": energies,
                "channels": [int(c) for c in problem.selected_channels(candidates[winner].astype(bool))],
            })
        print(f"{formulation} k={k}: done after {time.time() - started:.0f} s", flush=True)
    out = OUT[args.instance_set]
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_suffix(".tmp")
    temporary.write_text(json.dumps({"beta": 0.7, "instance_set": args.instance_set, "records": records}, indent=1))
    os.replace(temporary, out)
    print(f"wrote {out} ({len(records)} records)")


if __name__ == "__main__":
    main()
