"""One image through ``captum-qubo explain``: preprocess, classify, explain with the QUBO and Grad-CAM, write
``<name>_qubo.png`` (input | QUBO | Grad-CAM) and ``<name>_qubo.json`` (selection, energies, settings, timings).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
from captum.attr import LayerAttribution
from torch.nn import Module

from captum_qubo.attribution.options import QuboOptions
from captum_qubo.attribution.qubo_attribution import QuboFeatureMapAttribution
from captum_qubo.attribution.selection import json_safe
from captum_qubo.visualization import (
    explanation_figure,
    grad_cam_from_weights,
    save_explanation_figure,
    selected_map_shares,
)
from captum_qubo.zoo.images import NORMALIZATIONS, preprocess_image
from captum_qubo.zoo.models import LoadedModel


class ImageExplainer:
    """Explains images one at a time with one model, layer and :class:`QuboOptions`.

    Args:
        loaded: the model and its class names (:func:`captum_qubo.zoo.models.load_model`).
        layer_name: the explained layer's dotted name (for the report).
        layer: that layer.
        options: the explainer's settings.
        preprocessing: a :data:`~captum_qubo.zoo.images.NORMALIZATIONS` key.
        image_size: the crop size.
        target: the class to explain, or None for each image's prediction.
    """

    def __init__(self, loaded: LoadedModel, layer_name: str, layer: Module, options: QuboOptions,
                 preprocessing: str, image_size: int, target: Optional[int]) -> None:
        self.loaded, self.layer_name, self.layer = loaded, layer_name, layer
        self.options, self.preprocessing, self.image_size, self.target = options, preprocessing, image_size, target
        self.qubo = QuboFeatureMapAttribution(loaded.model, layer, options=options)
        parameter = next(iter(loaded.model.parameters()), None)
        self.device = parameter.device if parameter is not None else torch.device("cpu")
        self.dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32

    def explain(self, name: str, image: np.ndarray, png: Path, report_path: Path) -> Dict[str, Any]:
        """Explain one image and write its two files; returns its summary row.

        Raises:
            ValueError: the model's output is not (1, classes) logits or ``target`` is out of range.
        """
        model = self.loaded.model
        inputs = preprocess_image(image, self.image_size, normalization=self.preprocessing)[None]
        inputs = inputs.to(self.device, self.dtype)
        captured: Dict[str, torch.Tensor] = {}
        # One forward gives the logits and the layer's maps (Grad-CAM and the map shares need both).
        handle = self.layer.register_forward_hook(lambda module, args, output: captured.update(maps=output))
        try:
            with torch.no_grad():
                logits = model(inputs)
        finally:
            handle.remove()
        if logits.ndim != 2:
            raise ValueError(f"--model must return (batch, classes) logits, got shape {tuple(logits.shape)}")
        probabilities = logits.double().softmax(dim=1)[0].cpu()
        predicted = int(probabilities.argmax())
        target = predicted if self.target is None else self.target
        if target >= probabilities.numel():
            raise ValueError(f"--target {target} but the model has {probabilities.numel()} outputs")
        qubo_map = self.qubo.attribute(inputs, target=target)
        selection = self.qubo.last_selections[0]
        maps = captured["maps"][0].detach()
        shares = selected_map_shares(self.qubo.last_channel_weights[0], maps)
        size = tuple(inputs.shape[-2:])
        upsampled = LayerAttribution.interpolate(qubo_map.detach(), size, "bilinear")
        # The QUBO pass already computed every α, so Grad-CAM needs no second backward pass.
        grad_cam = grad_cam_from_weights(torch.as_tensor(selection.alpha, device=maps.device), maps, size)

        title = f"{name}: {self.loaded.name} predicts {self._class(predicted)} ({float(probabilities[predicted]):.1%})"
        if target != predicted:
            title += f"; explaining {self._class(target)} ({float(probabilities[target]):.1%})"
        caption = (f"QUBO ({self.qubo.sampler_spec if isinstance(self.qubo.sampler_spec, str) else 'sampler'}): "
                   f"{selection.num_selected} of {selection.num_variables} maps")
        figure = explanation_figure(self._shown(inputs[0]), upsampled[0], grad_cam[0], title, caption, shares)
        save_explanation_figure(figure, png)
        report = {
            "image": name,
            "image_shape": list(np.shape(image)),  # as read: upright (EXIF applied), before preprocessing
            "model": self.loaded.name,
            "layer": {"name": self.layer_name, "map_shape": list(qubo_map.shape[2:]),
                      "num_maps": int(selection.importance.size)},
            "device": str(self.device),
            "preprocessing": {"normalization": self.preprocessing, "size": self.image_size},
            "predicted": self._class_entry(predicted, probabilities),
            "target": self._class_entry(target, probabilities),
            "settings": json_safe(self.options.to_dict()),
            "selection": selection.to_dict(),
            "top_maps": [{"channel": channel, "share": share} for channel, share in shares],
            "energies": {"selection": selection.energy, "grad_cam_top_k": grad_cam_top_k_energy(selection)},
        }
        _write_atomically(report_path, json.dumps(report, indent=2))
        return {"image": name, "predicted": self._class(predicted), "probability": float(probabilities[predicted]),
                "target": self._class(target), "num_selected": selection.num_selected,
                "num_variables": selection.num_variables, "energy": selection.energy,
                "solve_seconds": selection.timings["solve"]}

    def _class(self, index: int) -> str:
        names = self.loaded.class_names
        return names[index] if names is not None and index < len(names) else str(index)

    def _class_entry(self, index: int, probabilities: torch.Tensor) -> Dict[str, Any]:
        return {"index": index, "class": self._class(index), "probability": float(probabilities[index])}

    def _shown(self, inputs: torch.Tensor) -> np.ndarray:
        """The crop the model saw, back in [0, 1] RGB for display."""
        mean, std = (np.asarray(v)[:, None, None] for v in NORMALIZATIONS[self.preprocessing])
        return np.clip(inputs.detach().float().cpu().numpy() * std + mean, 0.0, 1.0).transpose(1, 2, 0)


def grad_cam_top_k_energy(selection) -> Optional[float]:
    """QUBO energy of Grad-CAM's own choice of the same number of maps (largest α among the QUBO's
    variables), for comparison.

    None when nothing was selected. The QUBO's selection has at most this energy when the solver
    found the minimum, since the top-K state is one of the states it minimises over.
    """
    qubo, size = selection.qubo, selection.num_selected
    if size == 0:
        return None
    state = np.zeros(qubo.num_variables)
    state[np.argsort(-selection.alpha[qubo.kept], kind="stable")[:size]] = 1.0
    return float(qubo.energies(state))


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    os.replace(partial, path)
