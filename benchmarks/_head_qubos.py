"""Real feature-map QUBOs: EfficientNet-Lite0's activated head maps on bundled photos, their flips and crops.

72 instances: 8 photos × (as is, mirrored, centre 80 % crop) × the model's top-3 classes. The images are resized
here with their own fixed rule (bilinear, antialiased, to 224²), so the instances stay the same whatever the
library's preprocessing becomes. Used by the solver benchmark, the best-known-energy reference script and the
solver tests.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks._imagenet_experiment import PHOTOS, load_photo
from captum_qubo.attribution.layer_evaluation import layer_gradients_and_activations
from captum_qubo.zoo import efficientnet_target_layer, load_efficientnet_lite0

VIEWS = ("as-is", "mirrored", "crop80")
TOP_CLASSES = 3


def _view(image: np.ndarray, view: str) -> torch.Tensor:
    pixels = torch.tensor(np.ascontiguousarray(image), dtype=torch.float32).permute(2, 0, 1) / 255.0
    if view == "mirrored":
        pixels = pixels.flip(2)
    elif view == "crop80":
        height, width = pixels.shape[1:]
        top, left = height // 10, width // 10
        pixels = pixels[:, top: height - top, left: width - left]
    resized = F.interpolate(pixels[None], size=(224, 224), mode="bilinear", align_corners=False, antialias=True)[0]
    return (resized.clamp(0.0, 1.0) - 0.5) / 0.5


def head_qubo_inputs() -> Tuple[torch.nn.Module, torch.nn.Module, torch.Tensor, torch.Tensor, List[str]]:
    """The model, its head layer, the (72, 3, 224, 224) inputs, their (72,) targets and instance names."""
    model = load_efficientnet_lite0()
    layer = efficientnet_target_layer(model)
    images, names = [], []
    for source, photo in PHOTOS:
        raw = load_photo(source, photo)
        images += [_view(raw, view) for view in VIEWS]
        names += [f"{photo}/{view}" for view in VIEWS]
    inputs = torch.stack(images)
    with torch.no_grad():
        top = model(inputs).topk(TOP_CLASSES, dim=1).indices
    inputs = inputs.repeat_interleave(TOP_CLASSES, dim=0)
    targets = top.flatten()
    names = [f"{name}/top{rank + 1}" for name in names for rank in range(TOP_CLASSES)]
    return model, layer, inputs, targets, names


def head_importance_and_maps(batch_size: int = 24) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    """(72, 1280) Grad-CAM weights α and (72, 1280, 7, 7) head maps of every instance, with the names."""
    model, layer, inputs, targets, names = head_qubo_inputs()
    importance, maps = [], []
    for start in range(0, len(inputs), batch_size):
        gradients, activations = layer_gradients_and_activations(
            model, layer, (inputs[start: start + batch_size],), targets[start: start + batch_size], None, None, False
        )
        importance.append(gradients.mean(dim=(2, 3)))
        maps.append(activations)
    return torch.cat(importance), torch.cat(maps), names
