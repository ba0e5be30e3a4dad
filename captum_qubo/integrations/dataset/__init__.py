"""Explain a whole dataset on Lightning's distributed engine: sharded, resumable, with a dataset-level report.

One idea per module: :mod:`.sources` (what is explained, with sample ids), :mod:`.methods` (a batch explained by
every method), :mod:`.module` (the LightningModule whose ``predict_step`` does it), :mod:`.shards` (the on-disk
format and what a rerun trusts), :mod:`.manifest` (the folder's configuration and run record), :mod:`.writer`
(the ``BasePredictionWriter``), :mod:`.engine` (:func:`explain_dataset`) and :mod:`.report` (the dataset report).
"""
from captum_qubo.integrations.dataset.engine import explain_dataset
from captum_qubo.integrations.dataset.manifest import OutputFolderMismatch, read_manifest
from captum_qubo.integrations.dataset.methods import METHODS, BatchExplainer, ExplainSettings
from captum_qubo.integrations.dataset.shards import completed_ids, load_maps, read_records, scan_shards
from captum_qubo.integrations.dataset.sources import DigitsSource, ImageFolderSource, RemainingSamples
from captum_qubo.integrations.dataset.writer import ShardWriter

__all__ = [
    "METHODS",
    "BatchExplainer",
    "DigitsSource",
    "ExplainSettings",
    "ImageFolderSource",
    "OutputFolderMismatch",
    "RemainingSamples",
    "ShardWriter",
    "completed_ids",
    "explain_dataset",
    "load_maps",
    "read_manifest",
    "read_records",
    "scan_shards",
]
