"""The fixed validation samples a callback explains: which dataset, which indices, and loading them.

The samples are drawn once, class-stratified and seeded, from the *dataset* behind one validation
dataloader, so every epoch explains the same images and epochs are comparable. Indices point into
that dataset; Lightning's ``limit_val_batches`` and distributed samplers do not change them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable, List, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

UnpackBatch = Callable[[Any], Tuple[Tensor, Tensor]]


def inputs_and_labels(batch: Any) -> Tuple[Tensor, Tensor]:
    """Default batch layout: ``(inputs, labels, ...)`` as a tuple or list."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError(
            f"cannot read (inputs, labels) from a validation batch of type {type(batch).__name__}; pass "
            "unpack_batch=lambda batch: (batch['image'], batch['label']) (or similar) to the callback"
        )
    return batch[0], batch[1]


def stratified_indices(labels: np.ndarray, num_samples: int, seed: int) -> np.ndarray:
    """``num_samples`` distinct indices, as evenly spread over the classes as the data allows.

    Round robin over a seeded shuffle of each class: round r takes the r-th shuffled image of every
    class that still has one, so two classes' counts differ by at most one unless a class runs out.

    Args:
        labels: (N,) integer class of every dataset item.
        num_samples: how many to choose; at most N.
        seed: the same seed gives the same indices.

    Returns:
        (num_samples,) int64 indices, ascending.
    """
    labels = np.asarray(labels).reshape(-1)
    if not 1 <= num_samples <= labels.size:
        raise ValueError(f"num_samples must lie in [1, {labels.size}] (the validation set's size), got {num_samples}")
    order = np.random.default_rng(seed).permutation(labels.size)
    shuffled = labels[order]
    by_class = np.argsort(shuffled, kind="stable")
    sorted_labels = shuffled[by_class]
    group_start = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    group_sizes = np.diff(np.r_[group_start, sorted_labels.size])
    rank_in_class = np.empty(labels.size, dtype=np.int64)
    rank_in_class[by_class] = np.arange(labels.size) - np.repeat(group_start, group_sizes)
    round_robin = np.lexsort((shuffled, rank_in_class))
    return np.sort(order[round_robin[:num_samples]])


def validation_dataloader(trainer: "Trainer", stage: str, dataloader_idx: int) -> DataLoader:
    """The ``dataloader_idx``-th validation dataloader of the run, or a ValueError saying why there is none."""
    loop = trainer.validate_loop if stage == "validate" else trainer.fit_loop.epoch_loop.val_loop
    source = loop._data_source
    no_data = (
        "the QuboExplanationCallback explains validation samples, but this run has no validation data: "
        "define val_dataloader() in the LightningModule or LightningDataModule, or pass val_dataloaders= "
        "to trainer.fit"
    )
    if source.instance is None or not source.is_defined():
        raise ValueError(no_data)
    dataloaders = source.dataloader()
    if isinstance(dataloaders, Mapping):
        dataloaders = list(dataloaders.values())
    elif not isinstance(dataloaders, Sequence):
        dataloaders = [dataloaders]
    if not dataloaders:
        raise ValueError(no_data)
    if not 0 <= dataloader_idx < len(dataloaders):
        raise ValueError(
            f"dataloader_idx={dataloader_idx} but there are {len(dataloaders)} validation dataloaders; "
            f"use 0..{len(dataloaders) - 1}"
        )
    dataloader = dataloaders[dataloader_idx]
    dataset = getattr(dataloader, "dataset", None)
    if not isinstance(dataloader, DataLoader) or isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        raise ValueError(
            f"validation dataloader {dataloader_idx} must be a torch DataLoader over a map-style dataset "
            "(with __len__ and __getitem__) so the same samples can be read every epoch"
        )
    if len(dataset) == 0:
        raise ValueError(no_data + f" (validation dataloader {dataloader_idx} has an empty dataset)")
    return dataloader


def dataset_labels(dataloader: DataLoader, unpack_batch: UnpackBatch, batch_size: int = 256) -> np.ndarray:
    """Every item's label, read with the dataloader's own collate function (``dataset.targets`` if present)."""
    dataset = dataloader.dataset
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        return np.asarray(torch.as_tensor(targets).cpu()).reshape(-1)
    reader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=dataloader.collate_fn)
    return torch.cat([torch.as_tensor(unpack_batch(batch)[1]).reshape(-1).cpu() for batch in reader]).numpy()


def load_samples(
    dataset: Dataset, indices: Sequence[int], collate_fn: Callable, unpack_batch: UnpackBatch
) -> Tuple[Tensor, Tensor]:
    """The items at ``indices`` collated into one (inputs, labels) batch on the CPU."""
    if len(indices) and max(indices) >= len(dataset):
        raise ValueError(
            f"sample index {max(indices)} is out of range for a validation dataset of {len(dataset)} items; "
            "the checkpointed indices belong to another dataset"
        )
    inputs, labels = unpack_batch(collate_fn([dataset[int(index)] for index in indices]))
    return torch.as_tensor(inputs).cpu(), torch.as_tensor(labels).reshape(-1).long().cpu()


def rank_share(indices: List[int], rank: int, world_size: int) -> List[int]:
    """Positions of this rank's share of the samples (every world_size-th, starting at rank)."""
    return list(range(rank, len(indices), world_size))
