"""Best-known selections of the 72 real head QUBOs, from three independent searches, for the solver tests.

For each instance (8 photos × as-is/mirrored/crop × top-3 classes, :mod:`benchmarks._head_qubos`) and each
formulation (unconstrained; k_hot with K = 3, 5, 10) the best state found by any of
- dwave-samplers' simulated annealing, 100 reads,
- dwave-samplers' tabu search, 2 reads with a 1 s timeout each,
- our dense tabu search with 32 starts and patience 200,
is kept, as layer channels, in ``tests/data/head_qubo_best_known.json``. The solver test rebuilds the QUBOs and
requires the default search to reach each of these energies.

Usage:  python -m benchmarks.head_qubo_references   (about 15 minutes on one core)
"""
from __future__ import annotations

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

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "head_qubo_best_known.json"
FORMULATIONS = (("unconstrained", None), ("k_hot", 3), ("k_hot", 5), ("k_hot", 10))


def main() -> None:
    torch.set_num_threads(1)
    importance, maps, names = head_importance_and_maps()
    records, started = [], time.time()
    for formulation, k in FORMULATIONS:
        batched = build_batched_qubos(importance, maps, 0.7, formulation, k)
        ours = dense_tabu_search(batched.linear, batched.quadratic, batched.mask, k=k, num_starts=32, patience=200,
                                 seed=12345)
        for i, name in enumerate(names):
            problem = build_feature_map_qubo(importance[i].double().numpy(), maps[i].double().numpy(), 0.7,
                                             formulation, k)
            bqm = problem.to_bqm()
            candidates = {"dense-tabu-32": ours.states[i, : problem.num_variables].numpy().astype(np.int8)}
            for label, sampleset in (
                ("sa-100", SimulatedAnnealingSampler().sample(bqm, num_reads=100, seed=i)),
                ("tabu-2x1s", TabuSampler().sample(bqm, num_reads=2, timeout=1000, seed=i)),
            ):
                best = sampleset.first.sample
                candidates[label] = np.array([best[v] for v in range(problem.num_variables)], dtype=np.int8)
            energies = {label: float(problem.energies(state)) for label, state in candidates.items()}
            winner = min(energies, key=energies.get)
            records.append({
                "instance": name, "formulation": formulation, "k": k, "d": problem.num_variables,
                "best_energy": energies[winner], "found_by": winner, "energies": energies,
                "channels": [int(c) for c in problem.selected_channels(candidates[winner].astype(bool))],
            })
        print(f"{formulation} k={k}: done after {time.time() - started:.0f} s", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    temporary = OUT.with_suffix(".tmp")
    temporary.write_text(json.dumps({"beta": 0.7, "records": records}, indent=1))
    os.replace(temporary, OUT)
    print(f"wrote {OUT} ({len(records)} records)")


if __name__ == "__main__":
    main()
