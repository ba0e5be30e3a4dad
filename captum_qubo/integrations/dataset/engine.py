"""explain_dataset: a whole data source explained through Lightning's ``Trainer.predict``, sharded and resumable.

Lightning does the distribution: ``devices``/``num_nodes``/``strategy`` go to the Trainer, whose predict sampler
gives each rank its own samples, none repeated. This function only decides what is left to explain (the source's
ids minus those in trusted shards), checks the output folder belongs to this configuration, and hands the rest to
the Trainer with a :class:`~.writer.ShardWriter`. Under ``strategy="ddp"`` Lightning re-runs the calling script in
every child process, so everything here before ``predict`` is read-only on disk (rank zero writes in the writer).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from torch.nn import Module
from torch.utils.data import DataLoader

from captum_qubo.integrations.dataset.manifest import (
    check_output_folder,
    configuration,
    read_manifest,
    write_manifest,
)
from captum_qubo.integrations.dataset.methods import ExplainSettings
from captum_qubo.integrations.dataset.module import explainer_module
from captum_qubo.integrations.dataset.shards import SHARD_FOLDER, completed_ids
from captum_qubo.integrations.dataset.sources import RemainingSamples, SampleSource
from captum_qubo.integrations.dataset.writer import ShardWriter, finish_manifest


def explain_dataset(
    model: Module,
    source: SampleSource,
    settings: ExplainSettings,
    out: Path,
    devices: Any = 1,
    num_nodes: int = 1,
    strategy: Any = "auto",
    accelerator: str = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = False,
    lightning: str = "lightning.pytorch",
    callbacks: Sequence[Any] = (),
    trainer_kwargs: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Explain every sample of ``source`` not yet in ``out``'s shards; returns the manifest.

    Args:
        model: the classifier; its train/eval modes are given back afterwards and ``.grad`` is never written.
        source: the samples (:class:`~.sources.DigitsSource`, :class:`~.sources.ImageFolderSource` ...).
        settings: methods, QUBO options, target, layer.
        out: output folder (created); a rerun with the same configuration resumes it, another is refused.
        devices, num_nodes, strategy, accelerator: as for ``lightning.pytorch.Trainer`` (``strategy="ddp"`` or
            ``"ddp_spawn"`` with ``devices=2`` on CPU runs two gloo processes).
        batch_size: samples per predict batch, which is also the shard size.
        num_workers: DataLoader worker processes per rank.
        progress: show Lightning's progress bar.
        lightning: the Lightning namespace of the Trainer: ``"lightning.pytorch"`` or ``"pytorch_lightning"``.
        callbacks: more callbacks for the Trainer.
        trainer_kwargs: more Trainer arguments (e.g. ``plugins=[SLURMEnvironment()]``).

    Returns:
        The manifest (``num_done``, ``num_explained``, ``skipped``, ``complete``, ``runs`` ...) on global rank
        zero (and in the parent of ``ddp_spawn``); None on the other ranks of ``strategy="ddp"``.

    Raises:
        OutputFolderMismatch: ``out`` holds shards of a different configuration.
    """
    from lightning_callbacks.lightning_namespace import load_namespace

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    out = Path(out)
    config = configuration(model, settings.to_dict(), source.describe())
    check_output_folder(out, config)
    done = set(completed_ids(out / SHARD_FOLDER)) & set(source.sample_ids)
    remaining = RemainingSamples(source, done)
    if len(remaining) == 0:  # nothing to do; still recorded, so the manifest tells what every invocation did
        if _is_global_zero_here():
            manifest = read_manifest(out)
            manifest["runs"].append({"started": time.time(), "world_size": 0, "samples_done_before": len(done)})
            write_manifest(out, manifest)
            return finish_manifest(out, source.sample_ids, {"seconds": 0.0})
        return None
    writer = ShardWriter(out, config, source.sample_ids)
    trainer = load_namespace(lightning).Trainer(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
        callbacks=[writer, *callbacks], logger=False, enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=progress, inference_mode=False, **(trainer_kwargs or {}),
    )
    loader = DataLoader(remaining, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        persistent_workers=num_workers > 0)
    modes = [(module, module.training) for module in model.modules()]
    try:
        trainer.predict(explainer_module(model, settings, lightning), loader, return_predictions=False)
    finally:
        for module, training in modes:  # predict puts the whole LightningModule in eval mode
            module.training = training
    return read_manifest(out) if trainer.is_global_zero else None


def _is_global_zero_here() -> bool:
    """Rank zero of a launch, judged from the launcher's environment (no Trainer exists when nothing is left)."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))
