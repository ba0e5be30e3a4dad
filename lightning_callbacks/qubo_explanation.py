"""QuboExplanationCallback: explain a fixed set of validation samples every n epochs and log how well
the explanations disentangle the classes, through torchmetrics and ``pl_module.log``.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from captum.attr import LayerAttribution
from torch import Tensor
from torch.nn import Module, ModuleDict

from captum_qubo.attribution.options import QuboOptions
from captum_qubo.attribution.qubo_attribution import QuboFeatureMapAttribution, explanation_map
from captum_qubo.metrics import channel_sets_to_mask, masked_confidences_of_methods, top_k_mask
from captum_qubo.solvers.registry import check_sampler_ready
from lightning_callbacks.explanation_metrics import METRIC_NAMES, ExplanationMetrics
from lightning_callbacks.figures import disentanglement_image, log_images, overlay_grid, takes_images
from lightning_callbacks.isolation import explanation_context, preserved_random_state
from lightning_callbacks.layer_lookup import layer_name
from lightning_callbacks.lightning_namespace import LightningCallback
from lightning_callbacks.validation_samples import (
    UnpackBatch,
    dataset_labels,
    inputs_and_labels,
    load_samples,
    rank_share,
    stratified_indices,
    validation_dataloader,
)

QUBO, BASELINE = "qubo", "gradcam_topk"
TARGETS = ("label", "prediction")


class QuboExplanationCallback(LightningCallback):
    r"""Explains the same validation samples at the end of every n-th validation epoch and logs the result.

    Per explained epoch it runs :class:`~captum_qubo.attribution.QuboFeatureMapAttribution` on a fixed,
    class-stratified, seeded subset of the validation set and logs, through ``pl_module.log`` (so every
    Lightning logger gets them), under ``{prefix}qubo/``: ``bc_mean_off_diagonal`` and
    ``bc_max_off_diagonal`` (class disentanglement, lower is better), ``average_drop`` (%, lower is
    better), ``increase_in_confidence`` (%, higher is better), ``mean_selected_maps``,
    ``mean_solve_seconds`` and ``num_samples``. With ``baseline=True`` the four quality metrics go
    under ``{prefix}gradcam_topk/`` for Grad-CAM restricted to its top-K maps, K = the QUBO's
    selection size per sample, explained with the same map formula (its selection size and sample
    count would repeat the QUBO's). TensorBoard and W&B-style loggers
    also get an overlay grid and the class x class BC matrices (rank zero only).

    Training is unaffected: the model is explained in eval mode with gradients taken by
    ``torch.autograd.grad`` (no parameter ``.grad`` touched), in the parameters' precision with autocast
    off (float32 under ``*-mixed`` precision), outside ``torch.inference_mode``; module modes and the
    torch, numpy and Python random streams are restored and Captum removes its hooks.

    Samples come from the *dataset* of validation dataloader ``dataloader_idx`` (default the first),
    read by index with that dataloader's ``collate_fn``, so ``limit_val_batches`` and distributed
    samplers do not change them. Under DDP each rank explains every ``world_size``-th sample and the
    metric states are summed across ranks, so logged values equal a single process's. The chosen indices
    and the history of logged values (``history``, one dict per explained epoch) are checkpointed.

    The LightningModule's ``forward`` must map a batch of inputs to (batch, num_classes) logits.

    Args:
        layer (str or nn.Module): the convolutional layer to explain, as a dotted name inside the
                    LightningModule (e.g. ``"model.reduce"``) or the module itself.
        num_samples (int): how many validation samples to explain (fewer if the set is smaller).
        every_n_epochs (int): explain when ``(current_epoch + 1) % every_n_epochs == 0`` (at every validation
                    run of such an epoch: several with ``val_check_interval < 1``); ``trainer.validate`` always explains.
        options (QuboOptions, optional): how maps are selected (sampler, sampler_kwargs, formulation, k, beta,
                    seed, max_variables), exactly as for :class:`~captum_qubo.attribution.QuboFeatureMapAttribution`.
                    Its seed also seeds the choice of samples (seed None: samples chosen with seed 0, so every
                    rank agrees).
        target (str): explain the true ``"label"`` (default) or the model's ``"prediction"``; the
                    explained class is also the class the disentanglement groups by.
        baseline (bool): also log Grad-CAM top-K on the same samples.
        dataloader_idx (int): which validation dataloader's dataset to draw from.
        batch_size (int): samples per explanation forward/backward pass.
        num_images (int): samples shown in the overlay grid (0: no overlay grid).
        images_every_n_epochs (int): send the pictures to loggers that take images on explained epochs with
                    ``(current_epoch + 1) % images_every_n_epochs == 0`` (0: never). Drawing the annotated BC
                    matrices takes about a second, so raise this for long runs with many classes.
        class_names (list[str], optional): tick labels of the BC matrix picture.
        unpack_batch (Callable): maps a collated batch to ``(inputs, labels)``; default ``batch[0], batch[1]``.
        prefix (str): prefix of the logged names.
        lightning (str, optional): pin the callback to ``"lightning.pytorch"`` or ``"pytorch_lightning"``; None
                    (default) runs with a Trainer of either (see :mod:`lightning_callbacks.lightning_namespace`).
        **option_fields: the fields of :class:`QuboOptions` as keywords (``sampler="exact"``, ``seed=0`` ...),
                    applied over ``options``.
    """

    def __init__(
        self,
        layer: Union[str, Module],
        num_samples: int = 64,
        every_n_epochs: int = 1,
        options: Optional[QuboOptions] = None,
        target: str = "label",
        baseline: bool = True,
        dataloader_idx: int = 0,
        batch_size: int = 64,
        num_images: int = 8,
        images_every_n_epochs: int = 1,
        class_names: Optional[Sequence[str]] = None,
        unpack_batch: UnpackBatch = inputs_and_labels,
        prefix: str = "explain/",
        lightning: Optional[str] = None,
        **option_fields: Any,
    ) -> None:
        super().__init__(lightning)
        for name, value, low in (("num_samples", num_samples, 1), ("every_n_epochs", every_n_epochs, 1),
                                 ("dataloader_idx", dataloader_idx, 0), ("batch_size", batch_size, 1), ("num_images", num_images, 0),
                                 ("images_every_n_epochs", images_every_n_epochs, 0)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.layer = layer
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        try:
            self.options = QuboOptions.from_kwargs(options, **option_fields)
        except TypeError as error:
            raise TypeError(f"QuboExplanationCallback: {error} (or one of the callback's own arguments)") from None
        self.seed = self.options.resolved_seed if self.options.resolved_seed is not None else 0
        self.target = target
        self.baseline = baseline
        self.dataloader_idx = dataloader_idx
        self.batch_size = batch_size
        self.num_images = num_images
        self.images_every_n_epochs = images_every_n_epochs
        self.class_names = list(class_names) if class_names is not None else None
        self.unpack_batch = unpack_batch
        self.prefix = prefix
        self.sample_indices: Optional[List[int]] = None
        self.history: List[Dict[str, float]] = []
        self._layer_name: Optional[str] = None
        self._dataset: Optional[torch.utils.data.Dataset] = None
        self._collate: Optional[Callable] = None
        self._samples: Optional[tuple] = None
        self._attribution: Optional[QuboFeatureMapAttribution] = None
        self._metrics: Optional[ModuleDict] = None

    @property
    def state_key(self) -> str:
        layer = self.layer if isinstance(self.layer, str) else type(self.layer).__name__
        return self._generate_state_key(layer=layer, num_samples=self.num_samples, dataloader_idx=self.dataloader_idx)

    def setup(self, trainer: "Trainer", pl_module: "LightningModule", stage: str) -> None:
        """Check everything that could fail later (layer, sampler, validation data), choose the samples, dry-run."""
        lightning = self.bind(trainer)
        if stage not in ("fit", "validate"):
            return
        self._layer_name = layer_name(pl_module, self.layer)
        check_sampler_ready(self.options.resolved_sampler)
        if not lightning.is_overridden("validation_step", pl_module):
            raise ValueError(
                f"{type(pl_module).__name__} defines no validation_step, so Lightning never runs validation "
                "and QuboExplanationCallback (which explains at the end of validation epochs) would do nothing"
            )
        if stage == "fit" and trainer.limit_val_batches == 0:
            raise ValueError(
                "limit_val_batches=0 disables validation, so QuboExplanationCallback would never run; "
                "allow at least one validation batch or remove the callback"
            )
        with preserved_random_state():
            dataloader = validation_dataloader(trainer, stage, self.dataloader_idx)
            self._dataset, self._collate = dataloader.dataset, dataloader.collate_fn
            if self.sample_indices is None:
                self._choose_samples(dataloader)
        self._samples = None
        self._attribution = QuboFeatureMapAttribution(
            pl_module, pl_module.get_submodule(self._layer_name), options=self.options
        )
        self._dry_run(pl_module)

    def _choose_samples(self, dataloader: torch.utils.data.DataLoader) -> None:
        labels = dataset_labels(dataloader, self.unpack_batch)
        if self.num_samples > labels.size:
            self.lightning.rank_zero_warn(f"num_samples={self.num_samples} but the validation set has {labels.size} items; "
                           "explaining all of them")
        self.sample_indices = stratified_indices(labels, min(self.num_samples, labels.size), self.seed).tolist()

    def _dry_run(self, pl_module: "LightningModule") -> None:
        """Explain one sample now, so a failing sampler or an unsuitable layer stops the run before training."""
        with explanation_context(pl_module):
            inputs, _ = self._inputs_and_labels(pl_module, [0])
            logits = pl_module(inputs)
            if logits.ndim != 2:
                raise ValueError(
                    f"{type(pl_module).__name__}'s forward must return (batch, num_classes) logits for "
                    f"QuboExplanationCallback, got shape {tuple(logits.shape)}"
                )
            try:
                self._attribution.attribute(inputs, target=logits.argmax(dim=1))
            except Exception as error:
                raise RuntimeError(
                    f"QuboExplanationCallback could not explain a validation sample at setup "
                    f"({type(error).__name__}: {error}); fix the sampler or layer before training"
                ) from error
            num_channels = self._attribution.last_channel_weights.shape[1]
        methods = [QUBO, BASELINE] if self.baseline else [QUBO]
        self._metrics = ModuleDict({m: ExplanationMetrics(logits.shape[1], num_channels, m == QUBO) for m in methods})

    def _inputs_and_labels(self, pl_module: "LightningModule", positions: List[int]) -> tuple:
        if self._samples is None:
            self._samples = load_samples(self._dataset, self.sample_indices, self._collate, self.unpack_batch)
        inputs, labels = self._samples
        dtype = next((p.dtype for p in pl_module.parameters() if p.is_floating_point()), torch.float32)
        index = torch.as_tensor(positions, dtype=torch.long)
        return inputs[index].to(pl_module.device, dtype), labels[index].to(pl_module.device)

    def on_validation_epoch_end(self, trainer: "Trainer", pl_module: "LightningModule") -> None:
        if trainer.sanity_checking or self._metrics is None:
            return
        if trainer.state.fn == "fit" and (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        positions = rank_share(self.sample_indices, trainer.global_rank, trainer.world_size)
        self._metrics.to(pl_module.device)
        with explanation_context(pl_module):
            shown = self._explain(pl_module, positions) if positions else None
            values = {method: metrics.compute() for method, metrics in self._metrics.items()}
        self._attribution.release_workspace()  # explained once per epoch: holding J until the next buys nothing
        record: Dict[str, float] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for method, method_values in values.items():
            for name in METRIC_NAMES:
                if name in method_values:
                    key = f"{self.prefix}{method}/{name}"
                    record[key] = method_values[name]
                    pl_module.log(key, method_values[name], on_step=False, on_epoch=True, sync_dist=True,
                                  add_dataloader_idx=False)
        self.history.append(record)
        if self._pictures_due(trainer):
            self._log_images(trainer, values, shown)
        for metrics in self._metrics.values():
            metrics.reset()

    def _pictures_due(self, trainer: "Trainer") -> bool:
        every = self.images_every_n_epochs
        return (every > 0 and (trainer.current_epoch + 1) % every == 0 and trainer.is_global_zero
                and any(takes_images(logger) for logger in trainer.loggers))

    def _explain(self, pl_module: "LightningModule", positions: List[int]) -> Dict[str, Tensor]:
        """Explain this rank's samples in batches, update the metrics, return the first inputs and maps for pictures."""
        batches = [positions[start:start + self.batch_size] for start in range(0, len(positions), self.batch_size)]
        shown = [self._explain_batch(pl_module, batch) for batch in batches]
        return shown[0]

    def _explain_batch(self, pl_module: "LightningModule", positions: List[int]) -> Dict[str, Tensor]:
        inputs, labels = self._inputs_and_labels(pl_module, positions)
        if self.target == "label":
            targets = labels
        else:
            with torch.no_grad():
                targets = pl_module(inputs).argmax(dim=1)
        layer_maps = self._attribution.attribute(inputs, target=targets)
        selections = self._attribution.last_selections
        selected = channel_sets_to_mask([s.channels for s in selections], self._num_channels()).to(inputs.device)
        solve_seconds = torch.tensor([s.timings["solve"] for s in selections], dtype=torch.float64)
        maps, masks = {QUBO: layer_maps}, {QUBO: selected}
        if self.baseline:
            # Grad-CAM's weights are α of the QUBO explainer's own pass: no second forward/backward.
            weights = self._attribution.last_gradient_weights
            masks[BASELINE] = top_k_mask(weights, selected.sum(dim=1))
            maps[BASELINE] = explanation_map(torch.where(masks[BASELINE], weights, torch.zeros_like(weights)),
                                             self._attribution.last_activations)
        saliency = {m: LayerAttribution.interpolate(method_maps, inputs.shape[2:], "bilinear").clamp(0.0, 1.0).detach()
                    for m, method_maps in maps.items()}
        # y_c from the explainer's own forward pass; the masked images of every method scored in one pass.
        logits = self._attribution.last_outputs.double()
        base_scores = torch.softmax(logits, dim=1).gather(1, targets[:, None].to(logits.device))[:, 0]
        _, masked_scores = masked_confidences_of_methods(
            lambda x: pl_module(x).double(), inputs, list(saliency.values()), targets,
            internal_batch_size=len(saliency) * len(inputs), base_scores=base_scores)
        for method, method_scores in zip(saliency, masked_scores):
            self._metrics[method].update(masks[method], targets, base_scores, method_scores,
                                         solve_seconds if method == QUBO else None)
        shown = slice(0, self.num_images)
        return {"inputs": inputs[shown], **{m: s[shown] for m, s in saliency.items()}}

    def _num_channels(self) -> int:
        return self._metrics[QUBO].disentanglement.num_channels

    def _log_images(self, trainer: "Trainer", values: Dict[str, dict], shown: Optional[Dict[str, Tensor]]):
        panels = {m: (self._metrics[m].disentanglement, v["matrix"]) for m, v in values.items()}
        images = {f"{self.prefix}bc_matrix": disentanglement_image(panels, self.class_names)}
        if shown is not None and self.num_images:
            images[f"{self.prefix}overlays"] = overlay_grid(shown["inputs"], {m: shown[m] for m in values})
        log_images(trainer.loggers, images, trainer.global_step)

    def teardown(self, trainer: "Trainer", pl_module: "LightningModule", stage: str) -> None:
        """Let go of the model, the dataset and the cached samples; indices and history stay."""
        self._dataset = self._collate = self._samples = self._attribution = self._metrics = None

    def state_dict(self) -> Dict[str, Any]:
        """The chosen sample indices and the per-epoch metric history (checkpointed by Lightning)."""
        return {"sample_indices": copy.copy(self.sample_indices), "history": copy.deepcopy(self.history)}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore indices and history; the samples are re-read from the validation set on next use."""
        self.sample_indices = copy.copy(state_dict["sample_indices"])
        self.history = copy.deepcopy(state_dict["history"])
        self._samples = None
