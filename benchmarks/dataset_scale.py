"""explain-dataset at scale: images/s on 1 and 2 processes, memory as the dataset grows, shard-writing overhead.

    .venv/bin/python benchmarks/dataset_scale.py                # ~3 min on 2 busy cores
    .venv/bin/python benchmarks/dataset_scale.py --throughput-images 400 --sa-images 0 --memory-sizes 100 400

Every measurement runs in a fresh Python process (so peak memory is that run's own): the digits CNN explained by
the QUBO (``exact`` on at most 10 variables; and ``sa`` on all positive maps) and Grad-CAM top-K, through
``explain_dataset`` (Lightning ``Trainer.predict``, ``return_predictions=False``), CPU. Throughput: ``strategy="ddp_spawn"`` for 2 processes;
"predict" is the time from the writer's ``on_predict_start`` to its ``on_predict_end`` (what the throughput line
prints), "wall" includes starting Lightning and the processes. Memory: peak RSS (``VmHWM``) of the process, and
the Python heap (``tracemalloc``) at the end of the first and of the last batch: flat means nothing accumulates per
sample. Shard overhead: the finished run's shards are written again with the same function (``write_shard``) into
a scratch folder and timed, against the run's predict time. A GPU row is added when CUDA is available.
Writes benchmarks/results/dataset_scale.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPOSITORY = Path(__file__).resolve().parents[1]


def _child(spec: dict) -> dict:
    """One measured run (in this fresh process)."""
    import tracemalloc

    import numpy as np
    import torch
    from lightning.pytorch.callbacks import Callback

    from captum_qubo.attribution.options import QuboOptions
    from captum_qubo.integrations.dataset import DigitsSource, ExplainSettings, explain_dataset
    from captum_qubo.integrations.dataset.shards import scan_shards, write_shard
    from captum_qubo.zoo import train_digits_cnn

    torch.set_num_threads(1)

    class HeapProbe(Callback):
        """The Python heap after each batch (the writer, placed first, has already written it)."""

        def __init__(self):
            self.heap = []

        def on_predict_batch_end(self, *args, **kwargs):
            if tracemalloc.is_tracing():
                self.heap.append(tracemalloc.get_traced_memory()[0])

    model = train_digits_cnn(16, seed=0)
    # The paper's formulation, as in the recorded results (the timings do not hinge on the formulation).
    options = (QuboOptions.preset("paper", sampler="exact", max_variables=10) if spec.get("sampler", "exact") == "exact"
               else QuboOptions.preset("paper", sampler=spec["sampler"]))
    settings = ExplainSettings(layer="reduce", options=options)
    out = Path(tempfile.mkdtemp()) / "out"
    probe = HeapProbe()
    if spec["trace"]:
        tracemalloc.start()
    start = time.perf_counter()
    manifest = explain_dataset(model, DigitsSource(spec["images"]), settings, out, devices=spec["processes"],
                               strategy="ddp_spawn" if spec["processes"] > 1 else "auto",
                               accelerator=spec["accelerator"], batch_size=spec["batch"],
                               callbacks=[probe] if spec["trace"] else [])
    wall = time.perf_counter() - start
    tracemalloc.stop()
    peak_kib = int(next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                        if line.startswith("VmHWM")))
    rewrite, shards = 0.0, scan_shards(out / "shards").trusted
    import pyarrow.parquet as pq

    scratch = Path(tempfile.mkdtemp())
    for path in shards:
        table = pq.read_table(path)
        with np.load(path.with_suffix(".npz")) as arrays:
            maps = {key: arrays[key] for key in arrays}
        columns = table.to_pydict()
        begin = time.perf_counter()
        write_shard(scratch, path.stem, columns, maps)
        rewrite += time.perf_counter() - begin
    size = sum(p.stat().st_size for p in (out / "shards").iterdir())
    return {**spec, "wall_s": wall, "predict_s": manifest["runs"][-1]["seconds"], "num_done": manifest["num_done"],
            "peak_rss_mib": peak_kib / 1024, "heap_first_batch_mib": probe.heap[0] / 2**20 if probe.heap else None,
            "heap_last_batch_mib": probe.heap[-1] / 2**20 if probe.heap else None, "shards": len(shards),
            "shard_write_s": rewrite, "bytes_per_sample": size / manifest["num_done"]}


def measure(**spec) -> dict:
    """Run :func:`_child` in a fresh interpreter and return its result."""
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env, cwd=REPOSITORY, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measurement {spec} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def markdown(results: dict) -> str:
    rows = [f"load average while measuring: {results['machine']['load_average']}", "",
            "| QUBO sampler | processes | device | images | predict s | images/s (predict) | wall s "
            "| images/s (wall) |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results["throughput"]:
        sampler = "exact (≤ 10 maps)" if r["sampler"] == "exact" else f"{r['sampler']} (all maps, registry defaults)"
        rows.append(f"| {sampler} | {r['processes']} | {r['accelerator']} | {r['num_done']} | {r['predict_s']:.1f} | "
                    f"{r['num_done'] / r['predict_s']:.1f} | {r['wall_s']:.1f} | {r['num_done'] / r['wall_s']:.1f} |")
    rows += ["", "| images | peak RSS MiB | Python heap after 1st batch MiB | after last batch MiB | shards | "
             "shard writing s | share of predict time | bytes/sample |", "|---|---|---|---|---|---|---|---|"]
    for r in results["memory"]:
        rows.append(f"| {r['num_done']} | {r['peak_rss_mib']:.0f} | {r['heap_first_batch_mib']:.2f} | "
                    f"{r['heap_last_batch_mib']:.2f} | {r['shards']} | {r['shard_write_s']:.2f} | "
                    f"{100 * r['shard_write_s'] / r['predict_s']:.1f} % | {r['bytes_per_sample']:.0f} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--throughput-images", type=int, default=1797)
    parser.add_argument("--sa-images", type=int, default=400, help="images for the sa throughput rows (0: none)")
    parser.add_argument("--memory-sizes", type=int, nargs="+", default=[200, 800, 1797])
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    import torch

    devices = [("cpu", 1), ("cpu", 2)] + ([("gpu", 1)] if torch.cuda.is_available() else [])
    runs = [("exact", args.throughput_images)] + ([("sa", args.sa_images)] if args.sa_images else [])
    throughput = [measure(images=n, processes=p, accelerator=a, batch=args.batch, trace=False, sampler=sampler)
                  for sampler, n in runs for a, p in devices]
    memory = [measure(images=n, processes=1, accelerator="cpu", batch=args.batch, trace=True, sampler="exact")
              for n in args.memory_sizes]
    results = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "torch": torch.__version__,
                           "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg())},
               "settings": {"model": "digits CNN (N_f=16)", "methods": ["qubo (exact, max_variables=10)",
                                                                        "grad_cam top-K"], "batch": args.batch},
               "throughput": throughput, "memory": memory}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dataset_scale.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "dataset_scale.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
