"""ShardWriter: Lightning's ``BasePredictionWriter`` writing each predict batch as a shard, on every rank.

With ``write_interval="batch"`` and ``Trainer.predict(..., return_predictions=False)`` nothing accumulates in
memory: a batch's records and maps go to disk when the batch ends and are dropped (and so are the batch indices
Lightning's predict sampler would otherwise keep). Rank zero clears leftovers of
interrupted writes and writes the manifest before any rank writes (a barrier orders it), and after the last batch
of every rank (another barrier) records the run in the manifest. The class subclasses the ``BasePredictionWriter``
of every installed Lightning namespace, so a ``lightning.pytorch`` or a ``pytorch_lightning`` Trainer runs it.
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from captum_qubo.integrations.dataset.manifest import FORMAT, read_manifest, write_manifest
from captum_qubo.integrations.dataset.shards import (
    SHARD_FOLDER,
    completed_ids,
    read_records,
    remove_untrusted,
    scan_shards,
    shard_name,
    write_shard,
)
from lightning_callbacks.lightning_namespace import installed_namespaces


def _writer_bases() -> tuple:
    import importlib

    return tuple(importlib.import_module(f"{n.name}.callbacks").BasePredictionWriter for n in installed_namespaces())


class ShardWriter(*_writer_bases()):
    """Writes every predict batch of :class:`~.module.DatasetExplainMixin` to ``<out>/shards``.

    Args:
        out: the output folder.
        config: the configuration the folder is bound to (:func:`~.manifest.configuration`).
        sample_ids: every sample id of the source (for "is the dataset complete?").
    """

    def __init__(self, out: Path, config: Dict[str, Any], sample_ids: Sequence[str]) -> None:
        super().__init__(write_interval="batch")
        self.out = Path(out)
        self.config = config
        self.sample_ids = list(sample_ids)
        self.rows_written = 0
        self._started: Optional[float] = None

    @property
    def shard_folder(self) -> Path:
        return self.out / SHARD_FOLDER

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._started = time.time()
        if trainer.is_global_zero:
            removed = remove_untrusted(self.shard_folder)
            manifest = read_manifest(self.out) or {"format": FORMAT, "configuration": self.config, "runs": []}
            before = len(set(completed_ids(self.shard_folder)) & set(self.sample_ids))
            manifest["runs"].append({"started": self._started, "world_size": trainer.world_size,
                                     "samples_done_before": before,
                                     "removed_leftovers": [f"{p.name}: {why}" for p, why in removed]})
            write_manifest(self.out, manifest)
        trainer.strategy.barrier("captum_qubo_shards_ready")  # no rank writes before the leftovers are gone

    def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: Dict[str, Any],
                           batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        columns = prediction["columns"]
        write_shard(self.shard_folder, shard_name(trainer.global_rank, columns["sample_id"]), columns,
                    prediction["maps"])
        self.rows_written += len(columns["sample_id"])
        _release_seen_batch_indices(trainer, batch_idx, dataloader_idx)

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        trainer.strategy.barrier("captum_qubo_shards_written")  # every rank's last shard is on disk
        if trainer.is_global_zero:
            finish_manifest(self.out, self.sample_ids, {"seconds": time.time() - self._started})


def _release_seen_batch_indices(trainer: Any, batch_idx: int, dataloader_idx: int) -> None:
    """Drop the indices Lightning's predict batch sampler keeps of every batch seen so far.

    ``_IndexBatchSamplerWrapper.seen_batch_indices`` grows by one list per batch (for epoch-end writers); a batch
    writer never looks back, so without this the memory of a run would grow with the dataset (~40 bytes a
    sample). Only past entries are cleared (the loop indexes the current one); a Lightning without the wrapper
    (private API) is left alone.
    """
    try:
        loader = trainer.predict_loop._combined_loader.flattened[dataloader_idx]
        seen = loader.batch_sampler.seen_batch_indices
    except (AttributeError, IndexError, TypeError):
        return
    for index in range(min(batch_idx + 1, len(seen))):
        seen[index] = None


def finish_manifest(out: Path, sample_ids: Sequence[str], run: Dict[str, Any]) -> Dict[str, Any]:
    """Record the shards, skipped samples and completeness in the manifest; ``run`` updates the last run's entry.

    Returns:
        The manifest written.
    """
    out = Path(out)
    manifest = read_manifest(out)
    records = read_records(out / SHARD_FOLDER, ["sample_id", "source", "error"])
    ids = records.column("sample_id").to_pylist()
    errors = records.column("error").to_pylist() if "error" in records.column_names else []
    sources = records.column("source").to_pylist() if "source" in records.column_names else []
    wanted = set(sample_ids)
    done = set(ids) & wanted
    if manifest["runs"]:
        before = manifest["runs"][-1].get("samples_done_before", 0)
        manifest["runs"][-1].update(run, samples_done=len(done), samples_this_run=len(done) - before)
    counts = Counter(ids)
    manifest.update(
        shards=[path.name for path in scan_shards(out / SHARD_FOLDER).trusted],
        num_samples=len(wanted),
        num_done=len(done),
        num_explained=sum(1 for i, e in zip(ids, errors) if e is None and i in wanted),
        duplicates=sorted(i for i, count in counts.items() if count > 1),
        skipped=[{"sample_id": i, "source": s, "error": e} for i, s, e in zip(ids, sources, errors) if e is not None],
        complete=done == wanted,
    )
    write_manifest(out, manifest)
    return manifest
