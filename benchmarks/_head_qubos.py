"""Real feature-map QUBOs: EfficientNet-Lite0's activated head maps on bundled photos, their flips and crops.

Two instance sets on the 8 photos, disjoint:
- ``"tuning"`` (72): as is, mirrored and centre 80 % crop × the model's top-3 classes. The dense search's settings
  (starts, patience) were chosen on these.
- ``"holdout"`` (64): centre 65 % crop and mirrored 65 % crop × the top-3 classes, and as is × the 4th and 5th
  classes. They played no part in choosing the settings.

The images are resized here with their own fixed rule (bilinear, antialiased, to 224²), so the instances stay the
same whatever the library's preprocessing becomes. Used by the solver benchmark, the best-known-energy reference
script and the solver tests.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks._imagenet_experiment import PHOTOS, load_photo
from captum_qubo.attribution.layer_evaluation import layer_gradients_and_activations
from captum_qubo.zoo import efficientnet_target_layer, load_efficientnet_lite0

# Per set: (view, class ranks explained) pairs; rank 0 is the top class.
INSTANCE_SETS = {
    "tuning": (("as-is", (0, 1, 2)), ("mirrored", (0, 1, 2)), ("crop80", (0, 1, 2))),
    "holdout": (("crop65", (0, 1, 2)), ("mirrored-crop65", (0, 1, 2)), ("as-is", (3, 4))),
}


def _view(image: np.ndarray, view: str) -> torch.Tensor:
    pixels = torch.tensor(np.ascontiguousarray(image), dtype=torch.float32).permute(2, 0, 1) / 255.0
    if view.startswith("mirrored"):
        pixels = pixels.flip(2)
    if "crop" in view:
        keep = int(view.split("crop")[1])  # percent of each side kept, centred
        height, width = pixels.shape[1:]
        top, left = height * (100 - keep) // 200, width * (100 - keep) // 200
        pixels = pixels[:, top: height - top, left: width - left]
    resized = F.interpolate(pixels[None], size=(224, 224), mode="bilinear", align_corners=False, antialias=True)[0]
    return (resized.clamp(0.0, 1.0) - 0.5) / 0.5


def head_qubo_inputs(instance_set: str = "tuning") -> Tuple[torch.nn.Module, torch.nn.Module, torch.Tensor,
                                                            torch.Tensor, List[str]]:
    """The model, its head layer, the (N, 3, 224, 224) inputs, their (N,) targets and instance names."""
    model = load_efficientnet_lite0()
    layer = efficientnet_target_layer(model)
    images, targets, names = [], [], []
    for source, photo in PHOTOS:
        raw = load_photo(source, photo)
        for view, ranks in INSTANCE_SETS[instance_set]:
            image = _view(raw, view)
            with torch.no_grad():
                order = model(image[None])[0].argsort(descending=True)
            for rank in ranks:
                images.append(image)
                targets.append(int(order[rank]))
                names.append(f"{photo}/{view}/top{rank + 1}")
    return model, layer, torch.stack(images), torch.tensor(targets), names


def head_importance_and_maps(batch_size: int = 24, instance_set: str = "tuning"
                              ) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    """(N, 1280) Grad-CAM weights α and (N, 1280, 7, 7) head maps of every instance of a set, with the names."""
    model, layer, inputs, targets, names = head_qubo_inputs(instance_set)
    importance, maps = [], []
    for start in range(0, len(inputs), batch_size):
        gradients, activations = layer_gradients_and_activations(
            model, layer, (inputs[start: start + batch_size],), targets[start: start + batch_size], None, None, False
        )
        importance.append(gradients.mean(dim=(2, 3)))
        maps.append(activations)
    return torch.cat(importance), torch.cat(maps), names
