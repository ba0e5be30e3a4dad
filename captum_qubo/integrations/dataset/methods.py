"""One predict batch explained by every requested method, as per-sample columns and saliency maps.

Independent of Lightning (the LightningModule in :mod:`.module` only calls :meth:`BatchExplainer.explain`), so it
can be tested and benchmarked alone. For each sample: the model's probabilities and prediction, the explained
target, and per method its selected maps and its map. The CAM baselines "select" their own top-K maps by their
channel weights, with K the QUBO's selection size for that sample when the QUBO runs too (the paper's
comparison: the same number of maps, chosen by the QUBO or by the weights), else :attr:`ExplainSettings.cam_k`.
Every method's map is ``minmax(Σ_{k∈S} ReLU(w_k f_k))`` over its selection S, so Average Drop / Increase in
Confidence compare which maps are chosen, not how they are combined.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from captum.attr import LayerAttribution
from torch import Tensor
from torch.nn import Module

from captum_qubo.attribution.options import QuboOptions

#: Methods by name; "qubo" is the QUBO selection, the others the CAM baselines' top-K.
METHODS = ("qubo", "grad_cam", "grad_cam_plus_plus", "score_cam")
TARGETS = ("predicted", "label")


@dataclass(frozen=True)
class ExplainSettings:
    """What a dataset run computes per sample (everything that changes the records, hence the output folder's).

    Attributes:
        layer: dotted name of the explained layer in the model.
        methods: names from :data:`METHODS`, each once.
        options: the QUBO explainer's :class:`~captum_qubo.attribution.options.QuboOptions`.
        target: ``"predicted"`` (explain the model's top class) or ``"label"`` (the sample's true class).
        cam_k: K of the CAM baselines' top-K when ``"qubo"`` is not among the methods.
    """

    layer: str
    methods: Tuple[str, ...] = ("qubo", "grad_cam")
    options: QuboOptions = field(default_factory=QuboOptions)
    target: str = "predicted"
    cam_k: int = 5

    def __post_init__(self) -> None:
        methods = tuple(self.methods)
        unknown = [m for m in methods if m not in METHODS]
        if not methods or unknown or len(set(methods)) != len(methods):
            raise ValueError(f"methods must be distinct names from {METHODS}, got {list(methods)}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if isinstance(self.cam_k, bool) or not isinstance(self.cam_k, int) or self.cam_k < 1:
            raise ValueError(f"cam_k must be a positive integer, got {self.cam_k!r}")
        if not isinstance(self.options, QuboOptions):
            raise TypeError(f"options must be a QuboOptions, got {type(self.options).__name__}")
        object.__setattr__(self, "methods", methods)

    def to_dict(self) -> Dict[str, Any]:
        """JSON description, the part of an output folder's configuration that concerns the explainers."""
        return {"layer": self.layer, "methods": list(self.methods), "options": self.options.to_dict(),
                "target": self.target, "cam_k": None if "qubo" in self.methods else self.cam_k}


class BatchExplainer:
    """Explains batches of one model with the methods of an :class:`ExplainSettings`.

    Args:
        model: the classifier, (N, C, H, W) → (N, classes) logits. Its train/eval modes are given back after
            each batch and parameters' ``.grad`` is never written (gradients come from ``torch.autograd.grad``).
        settings: what to compute.
    """

    def __init__(self, model: Module, settings: ExplainSettings) -> None:
        from captum_qubo.model_access import find_layer

        self.model = model
        self.settings = settings
        self.layer = find_layer(model, settings.layer)
        self._explainers: Dict[str, Any] = {}
        self._channels: Optional[int] = None

    def _explainer(self, method: str) -> Any:
        if method not in self._explainers:  # built on first use: in the worker process, after any spawn
            from captum_qubo.attribution import QuboFeatureMapAttribution
            from captum_qubo.baselines import LayerGradCamPlusPlus, LayerGradCamWithWeights, LayerScoreCam

            if method == "qubo":
                self._explainers[method] = QuboFeatureMapAttribution(self.model, self.layer,
                                                                     options=self.settings.options)
            else:
                kind = {"grad_cam": LayerGradCamWithWeights, "grad_cam_plus_plus": LayerGradCamPlusPlus,
                        "score_cam": LayerScoreCam}[method]
                self._explainers[method] = kind(self.model, self.layer)
        return self._explainers[method]

    def explain(self, images: Tensor, labels: Tensor) -> Tuple[Dict[str, List[Any]], Dict[str, np.ndarray]]:
        """Explain one batch of readable samples.

        Args:
            images: (N, C, H, W) model inputs.
            labels: (N,) true classes (:data:`~.sources.NO_LABEL` where unknown).

        Returns:
            ``(columns, maps)``: per-sample columns (lists of length N; see :mod:`.shards` for the schema) and per
            method an (N, h, w) float32 array of maps at the layer's resolution.
        """
        from captum_qubo.model_access import preserved_module_modes

        # Lightning predicts under inference mode by default; explanations need autograd on ordinary tensors.
        with torch.inference_mode(False), torch.enable_grad(), preserved_module_modes(self.model):
            images = images.clone() if images.is_inference() else images
            return self._explain(images, labels.clone() if labels.is_inference() else labels)

    def _explain(self, images: Tensor, labels: Tensor) -> Tuple[Dict[str, List[Any]], Dict[str, np.ndarray]]:
        from captum_qubo.metrics import masked_confidences

        with torch.no_grad():
            probabilities = torch.softmax(self.model(images).float(), dim=1)
        predicted = probabilities.argmax(dim=1)
        if self.settings.target == "label":
            if (labels < 0).any():
                raise ValueError("target='label' needs a label for every sample; this source has unlabelled "
                                 "images (use target='predicted', or class sub-folders)")
            target = labels.to(predicted.device)
        else:
            target = predicted
        columns: Dict[str, List[Any]] = {
            "target": target.tolist(),
            "predicted": predicted.tolist(),
            "probabilities": list(probabilities.cpu().numpy().astype(np.float32)),
            "base_score": probabilities.gather(1, target[:, None]).squeeze(1).tolist(),
            "num_channels": [int(self._num_channels(images, target))] * len(images),
        }
        maps: Dict[str, np.ndarray] = {}
        sizes: Optional[List[int]] = None
        activations = None
        for method in self.settings.methods:
            start = perf_counter()
            explainer = self._explainer(method)
            if method == "qubo":
                saliency = explainer.attribute(images, target=target)
                selections = explainer.last_selections
                sizes = [s.num_selected for s in selections]
                columns["qubo_channels"] = [s.channels.astype(np.int64) for s in selections]
                columns["qubo_energy"] = [float(s.energy) for s in selections]
                columns["qubo_num_variables"] = [int(s.num_variables) for s in selections]
                columns["qubo_sampler"] = [str(s.sampler) for s in selections]
                for phase in ("forward_backward", "build", "solve"):
                    columns[f"qubo_{phase}_s"] = [float(s.timings.get(phase, float("nan"))) for s in selections]
            else:
                saliency, activations, weights, chosen = self._cam_top_k(method, explainer, images, target,
                                                                         sizes, activations)
                columns[f"{method}_weights"] = list(weights.cpu().numpy().astype(np.float32))
                columns[f"{method}_channels"] = [np.flatnonzero(row).astype(np.int64) for row in chosen]
            upsampled = LayerAttribution.interpolate(saliency, tuple(images.shape[2:]), "bilinear")
            _, masked = masked_confidences(self.model, images, upsampled.clamp(0, 1), target)
            columns[f"{method}_masked_score"] = masked.tolist()
            columns[f"{method}_seconds"] = [(perf_counter() - start) / len(images)] * len(images)
            maps[method] = saliency[:, 0].detach().cpu().numpy().astype(np.float32)
        return columns, maps

    def _num_channels(self, images: Tensor, target: Tensor) -> int:
        if self._channels is None:  # the layer's width, for reports that turn selections into masks
            from captum_qubo.attribution.layer_evaluation import layer_activations

            with torch.no_grad():
                self._channels = layer_activations(self.model, self.layer, (images[:1],), target[:1], None, None,
                                                   False).shape[1]
        return self._channels

    def _cam_top_k(self, method: str, explainer: Any, images: Tensor, target: Tensor,
                   sizes: Optional[List[int]], activations: Optional[Tensor]):
        from captum_qubo.attribution import explanation_map
        from captum_qubo.attribution.layer_evaluation import layer_activations
        from captum_qubo.metrics import top_k_mask

        explainer.attribute(images, target=target, relu_attributions=True)
        weights = explainer.last_channel_weights.detach()
        if activations is None:  # one forward pass shared by all CAM methods of the batch
            activations = layer_activations(self.model, self.layer, (images,), target, None, None, False)
        k = sizes if sizes is not None else min(self.settings.cam_k, weights.shape[1])
        chosen = top_k_mask(weights, torch.as_tensor(k, device=weights.device))
        saliency = explanation_map(torch.where(chosen, weights, torch.zeros_like(weights)), activations)
        return saliency, activations, weights, chosen.cpu().numpy()
