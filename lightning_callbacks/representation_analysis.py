"""RepresentationAnalysisCallback: every n epochs, the effective rank of chosen layers and the linear CKA
between them on a fixed validation subset (optionally MI summaries), logged through ``pl_module.log``.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch.nn import Module

from captum_qubo.analyses.activations import collect_activations
from captum_qubo.analyses.map_information import mutual_information
from captum_qubo.analyses.similarity import similarity_matrix
from captum_qubo.analyses.spectrum import activation_spectrum
from lightning_callbacks.isolation import explanation_context, preserved_random_state
from lightning_callbacks.layer_lookup import layer_name
from lightning_callbacks.lightning_namespace import LightningCallback
from lightning_callbacks.validation_samples import (
    UnpackBatch,
    dataset_labels,
    inputs_and_labels,
    load_samples,
    stratified_indices,
    validation_dataloader,
)


class RepresentationAnalysisCallback(LightningCallback):
    r"""Logs how the chosen layers' representations evolve: effective rank, CKA between layers, MI.

    At the end of every n-th validation epoch it collects the layers' globally pooled activations on a fixed,
    class-stratified, seeded subset of the validation set (Captum's ``LayerActivation``, one forward pass per
    batch) and logs, through ``pl_module.log``:

    - ``{prefix}{layer}/effective_rank``: exp of the von Neumann entropy of the trace-normalised covariance;
    - ``{prefix}{layer}/components_90``: principal components needed for 90 % of the variance;
    - ``{prefix}cka/{a}__{b}``: linear CKA for every pair of layers;
    - with ``mutual_information=True``: ``{prefix}{layer}/mi_mean`` and ``mi_max``, the KSG MI between the
      layer's maps (all pairs; costs seconds for hundreds of maps on a few hundred samples).

    Training is unaffected, with the guarantees of :class:`~lightning_callbacks.QuboExplanationCallback`
    (its isolation code is reused): eval mode inside, every module's own mode back afterwards; no gradients
    (so no ``.grad`` touched), no autocast; the torch, numpy and Python random streams restored; Captum
    removes its hooks. Every rank analyses the whole subset, so all ranks log the same values.

    Args:
        layers: two or more layers (dotted names inside the LightningModule, or the modules), or one.
        num_samples: validation samples analysed (fewer if the set is smaller).
        every_n_epochs: analyse when ``(current_epoch + 1) % every_n_epochs == 0``; ``trainer.validate`` always does.
        mutual_information: also log MI summaries.
        seed: seeds the choice of samples and the MI jitter.
        dataloader_idx: which validation dataloader's dataset the samples come from.
        batch_size: samples per forward pass.
        unpack_batch: maps a collated batch to ``(inputs, labels)``.
        prefix: prefix of the logged names.
        lightning: pin to one Lightning namespace (see :class:`~lightning_callbacks.LightningCallback`); None
            follows whichever Trainer runs the callback.
    """

    def __init__(
        self,
        layers: Union[str, Module, Sequence[Union[str, Module]]],
        num_samples: int = 256,
        every_n_epochs: int = 1,
        mutual_information: bool = False,
        seed: int = 0,
        dataloader_idx: int = 0,
        batch_size: int = 128,
        unpack_batch: UnpackBatch = inputs_and_labels,
        prefix: str = "representation/",
        lightning: Optional[str] = None,
    ) -> None:
        super().__init__(lightning)
        for name, value, low in (("num_samples", num_samples, 3), ("every_n_epochs", every_n_epochs, 1),
                                 ("dataloader_idx", dataloader_idx, 0), ("batch_size", batch_size, 1)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.layers = list(layers) if isinstance(layers, (list, tuple)) else [layers]
        if not self.layers:
            raise ValueError("layers is empty; name at least one layer, e.g. layers=['model.reduce']")
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.mutual_information = mutual_information
        self.seed = seed
        self.dataloader_idx = dataloader_idx
        self.batch_size = batch_size
        self.unpack_batch = unpack_batch
        self.prefix = prefix
        self.sample_indices: Optional[List[int]] = None
        self.history: List[Dict[str, float]] = []
        self._layer_names: Optional[List[str]] = None
        self._dataset = self._collate = self._inputs = None

    @property
    def state_key(self) -> str:
        names = [layer if isinstance(layer, str) else type(layer).__name__ for layer in self.layers]
        return self._generate_state_key(layers=",".join(names), num_samples=self.num_samples,
                                        dataloader_idx=self.dataloader_idx)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Resolve the layers (a typo fails here, naming the closest layers) and choose the samples."""
        self.bind(trainer)
        if stage not in ("fit", "validate"):
            return
        names = [layer_name(pl_module, layer) for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"layers name the same module twice: {names}; list each layer once")
        self._layer_names = names
        with preserved_random_state():
            dataloader = validation_dataloader(trainer, stage, self.dataloader_idx)
            self._dataset, self._collate = dataloader.dataset, dataloader.collate_fn
            if self.sample_indices is None:
                labels = dataset_labels(dataloader, self.unpack_batch)
                count = min(self.num_samples, labels.size)
                if count < 3:
                    raise ValueError(f"the validation set has {labels.size} items; a spectrum needs at least 3")
                self.sample_indices = stratified_indices(labels, count, self.seed).tolist()
        self._inputs = None

    def _samples(self, pl_module: Any) -> torch.Tensor:
        if self._inputs is None:
            self._inputs, _ = load_samples(self._dataset, self.sample_indices, self._collate, self.unpack_batch)
        dtype = next((p.dtype for p in pl_module.parameters() if p.is_floating_point()), torch.float32)
        return self._inputs.to(pl_module.device, dtype)

    def analyse(self, pl_module: Any) -> Dict[str, float]:
        """The values this callback logs, computed now on the fixed samples (no logging)."""
        with explanation_context(pl_module), torch.no_grad():
            pooled = collect_activations(pl_module, self._layer_names, self._samples(pl_module), self.batch_size)
            values: Dict[str, float] = {}
            for name, activations in pooled.items():
                spectrum = activation_spectrum(activations)
                values[f"{self.prefix}{name}/effective_rank"] = spectrum.effective_rank
                values[f"{self.prefix}{name}/components_90"] = float(spectrum.components[0.9])
                if self.mutual_information and activations.shape[1] > 1:
                    pairs = mutual_information(activations, seed=self.seed).pair_values()
                    values[f"{self.prefix}{name}/mi_mean"] = float(pairs.mean())
                    values[f"{self.prefix}{name}/mi_max"] = float(pairs.max())
            if len(pooled) > 1:
                names, cka = similarity_matrix(pooled, "cka")
                rows, cols = np.triu_indices(len(names), k=1)
                for i, j in zip(rows, cols):
                    values[f"{self.prefix}cka/{names[i]}__{names[j]}"] = float(cka[i, j])
        return values

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or self._layer_names is None:
            return
        if trainer.state.fn == "fit" and (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        values = self.analyse(pl_module)
        for key, value in values.items():
            pl_module.log(key, value, on_step=False, on_epoch=True, sync_dist=True, add_dataloader_idx=False)
        self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step, **values})

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Let go of the dataset and the cached samples; indices and history stay."""
        self._dataset = self._collate = self._inputs = None

    def state_dict(self) -> Dict[str, Any]:
        """The chosen sample indices and the logged history (checkpointed by Lightning)."""
        return {"sample_indices": copy.copy(self.sample_indices), "history": copy.deepcopy(self.history)}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.sample_indices = copy.copy(state_dict["sample_indices"])
        self.history = copy.deepcopy(state_dict["history"])
        self._inputs = None
