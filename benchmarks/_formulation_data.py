"""The formulation study's four data sets: a tuning split and a held-out split for each model family.

- digits, tuning: the paper-shaped :class:`~captum_qubo.zoo.DigitsCNN` (flatten → linear head), N_f = 16/24/32,
  seed 0, its own test split (seed 0);
- digits, held-out: a *different architecture*, the global-average-pooled ``DigitsCNN(head="gap")``, N_f =
  16/24/32, trained with seed 1 on the split of seed 1, explained on that split's test images;
- photos, tuning: EfficientNet-Lite0's head maps on the 8 bundled photos as they are and mirrored;
- photos, held-out: the same photos as centre crops (80 % and 65 % of each side), which the choice never saw.

Each image is explained for the model's own correct class (digits: ``per_class`` correctly classified test images
per digit) or its top-``top_classes`` classes (photos). Everything a configuration needs is computed here once:
the layer's gradients of z_c and of the margin z_c − z_r over the runner-up class (for the contrastive
importance), the maps, the baselines' channel weights and the removal value of the selection metrics. Each photo
set also carries grid pointing-game composites (2×2 grids of 112² tiles of its own views, Böhle et al.).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks._digits_experiment import select_correct_per_class
from benchmarks._explainers import GRAD_CAM, GRAD_CAM_PP, SCORE_CAM, explain_baseline
from benchmarks._imagenet_experiment import PHOTOS, load_photo
from captum_qubo.attribution.layer_evaluation import (
    layer_gradients_and_activations,
    layer_margin_gradients_and_activations,
)
from captum_qubo.formulation.importance import MARGIN_IMPORTANCES
from captum_qubo.metrics import build_grid_composites, reference_map_means
from captum_qubo.zoo import efficientnet_target_layer, load_digits_split, load_efficientnet_lite0, train_digits_cnn

TUNING_VIEWS = ("as-is", "mirrored")
HELD_OUT_VIEWS = ("crop80", "crop65")


@dataclass
class StudySet:
    """One model and its explained images, with everything computed once.

    Attributes:
        name: e.g. ``"digits N_f=16 (flatten head)"``.
        family: ``"digits"`` or ``"photos"``.
        split: ``"tuning"`` or ``"held-out"``.
        model, layer: the model (eval mode) and the explained layer.
        inputs, targets: (N, ...) images and (N,) explained classes.
        classes: (N,) targets renumbered 0..m−1 (the class axis of the disentanglement matrix).
        gradients, activations: (N, C, H, W) ∂z_c/∂f and f at the layer (float64).
        margin_gradients: (N, C, H, W) ∂(z_c − z_r)/∂f, r the runner-up class of each image (float64).
        runner_up: (N,) r.
        baseline_weights: each baseline's (N, C) channel weights.
        removal: what "removing" a map means for sufficiency / comprehensiveness ("zero" or (C,) means).
        removal_note: that choice in words.
        pointing: photos only, the grid pointing-game evaluations (a :class:`PointingSet`).
    """

    name: str
    family: str
    split: str
    model: nn.Module
    layer: nn.Module
    inputs: Tensor
    targets: Tensor
    classes: Tensor
    gradients: Tensor
    activations: Tensor
    margin_gradients: Tensor
    runner_up: Tensor
    baseline_weights: Dict[str, Tensor] = field(default_factory=dict)
    removal: Union[str, Tensor] = "zero"
    removal_note: str = ""
    pointing: Optional["PointingSet"] = None

    @property
    def alpha(self) -> Tensor:
        """(N, C) Grad-CAM weights."""
        return self.gradients.mean(dim=(2, 3))

    @property
    def num_classes(self) -> int:
        return int(self.classes.max()) + 1

    def gradients_for(self, importance: str) -> Tensor:
        """The gradients an importance is computed from: of the margin for the contrastive one, else of z_c."""
        return self.margin_gradients if importance in MARGIN_IMPORTANCES else self.gradients

    def alpha_for(self, importance: str) -> Tensor:
        """(N, C) the explanation map's weights under an importance (as the library builds them)."""
        return self.gradients_for(importance).mean(dim=(2, 3))


@dataclass
class PointingSet:
    """Grid pointing-game evaluations: each 2×2 composite once per cell, explained for that cell's class.

    Has the attributes :func:`benchmarks.formulation_study.select` reads, like a :class:`StudySet`.
    """

    inputs: Tensor
    targets: Tensor
    cells: Tensor
    gradients: Tensor
    activations: Tensor
    margin_gradients: Tensor
    grad_cam_weights: Tensor
    min_confidence: float

    alpha = StudySet.alpha
    gradients_for = StudySet.gradients_for
    alpha_for = StudySet.alpha_for


def _layer_inputs(model, layer, inputs, targets, batch_size=24):
    """(∂z_c/∂f, f, ∂(z_c − z_r)/∂f, r), float64, batched."""
    gradients, activations, margins, rivals = [], [], [], []
    for start in range(0, len(inputs), batch_size):
        batch, batch_targets = (inputs[start: start + batch_size],), targets[start: start + batch_size]
        g, a = layer_gradients_and_activations(model, layer, batch, batch_targets, None, None, False)
        m, _, r = layer_margin_gradients_and_activations(model, layer, batch, batch_targets, None, None, False)
        gradients.append(g.detach().double())
        activations.append(a.detach().double())
        margins.append(m.detach().double())
        rivals.append(r)
    return torch.cat(gradients), torch.cat(activations), torch.cat(margins), torch.cat(rivals)


def _renumber(targets: Tensor) -> Tensor:
    return torch.as_tensor(np.unique(targets.numpy(), return_inverse=True)[1].reshape(-1))


def digits_set(num_filters: int, split: str, per_class: int, baselines: Sequence[str]) -> StudySet:
    """A digits model of the tuning (flatten head, seed 0) or held-out (GAP head, seed 1) split."""
    head, seed = ("flatten", 0) if split == "tuning" else ("gap", 1)
    model = train_digits_cnn(num_filters=num_filters, seed=seed, head=head)
    x_train, _, x_test, y_test = load_digits_split(seed=seed)
    images, labels = select_correct_per_class(model, x_test, y_test, per_class)
    gradients, activations, margins, rivals = _layer_inputs(model, model.reduce, images, labels, len(images))
    weights = {name: explain_baseline(name, model, model.reduce, images, labels).channel_weights.double()
               for name in baselines}
    return StudySet(
        f"digits N_f={num_filters} ({head} head, seed {seed})", "digits", split, model, model.reduce, images, labels,
        labels.clone(), gradients, activations, margins, rivals, weights,
        removal=reference_map_means(model, model.reduce, x_train),
        removal_note="each map's mean over the model's training images (the reduce block ends in BatchNorm, "
                     "so 0 is not 'off')",
    )


def _view(image: np.ndarray, view: str, size: int = 224) -> Tensor:
    """A photo view resized to size² and normalised for EfficientNet-Lite0 (same rule as ``_head_qubos``)."""
    pixels = torch.tensor(np.ascontiguousarray(image), dtype=torch.float32).permute(2, 0, 1) / 255.0
    if view == "mirrored":
        pixels = pixels.flip(2)
    elif view.startswith("crop"):
        keep = int(view[4:]) / 100.0
        height, width = pixels.shape[1:]
        top, left = int(round(height * (1 - keep) / 2)), int(round(width * (1 - keep) / 2))
        pixels = pixels[:, top: height - top, left: width - left]
    resized = F.interpolate(pixels[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return (resized.clamp(0.0, 1.0) - 0.5) / 0.5


def pointing_set(model: nn.Module, layer: nn.Module, views: Sequence[str], num_composites: int) -> PointingSet:
    """2×2 composites of 112² tiles of the split's views (distinct confidently predicted classes, seed 0)."""
    tiles = torch.stack([_view(load_photo(source, photo), view, 112) for source, photo in PHOTOS for view in views])
    for min_confidence in (0.5, 0.3, 0.1):  # a 2×2 grid needs 4 classes predicted at this confidence
        try:
            composites = build_grid_composites(model, tiles, num_composites, (2, 2), min_confidence, 0)
            break
        except ValueError:
            continue
    else:
        raise ValueError(f"fewer than 4 confidently predicted classes among the {views} tiles")
    inputs, targets, cells = composites.expand_per_cell()
    gradients, activations, margins, _ = _layer_inputs(model, layer, inputs, targets)
    weights = explain_baseline(GRAD_CAM, model, layer, inputs, targets).channel_weights.double()
    return PointingSet(inputs, targets, cells, gradients, activations, margins, weights, min_confidence)


def photos_set(split: str, top_classes: int, baselines: Sequence[str], model: Optional[nn.Module] = None,
               num_composites: int = 0) -> StudySet:
    """EfficientNet-Lite0 on the photos' tuning views (as-is, mirrored) or held-out crops (80 %, 65 %)."""
    model = model if model is not None else load_efficientnet_lite0()
    layer = efficientnet_target_layer(model)
    views = TUNING_VIEWS if split == "tuning" else HELD_OUT_VIEWS
    images = torch.stack([_view(load_photo(source, photo), view) for source, photo in PHOTOS for view in views])
    with torch.no_grad():
        top = model(images).topk(top_classes, dim=1).indices
    inputs, targets = images.repeat_interleave(top_classes, dim=0), top.flatten()
    gradients, activations, margins, rivals = _layer_inputs(model, layer, inputs, targets)
    weights = {}
    for name in baselines:
        weights[name] = torch.cat([
            explain_baseline(name, model, layer, inputs[s: s + 24], targets[s: s + 24]).channel_weights.double()
            for s in range(0, len(inputs), 24)
        ])
    return StudySet(
        f"EfficientNet-Lite0, photos {'/'.join(views)} × top-{top_classes}", "photos", split, model, layer, inputs,
        targets, _renumber(targets), gradients, activations, margins, rivals, weights, removal="zero",
        removal_note="0 (the head maps are ReLU6 outputs, so 0 is an inactive map)",
        pointing=pointing_set(model, layer, views, num_composites) if num_composites else None,
    )


def study_sets(split: str, num_filters: Sequence[int], per_class: int, top_classes: int,
               efficientnet: Optional[nn.Module] = None, num_composites: int = 0) -> List[StudySet]:
    """The digits models and the photo set of one split (with ``num_composites`` pointing-game grids)."""
    sets = [digits_set(nf, split, per_class, (GRAD_CAM, GRAD_CAM_PP, SCORE_CAM)) for nf in num_filters]
    sets.append(photos_set(split, top_classes, (GRAD_CAM, GRAD_CAM_PP), efficientnet, num_composites))
    return sets
