"""Score-CAM (Wang et al., 2020, arXiv 1910.01279) as a Captum LayerAttribution (Captum issue #350)."""
from typing import Any, Tuple, Union

import torch
import torch.nn.functional as F
from captum._utils.common import _format_additional_forward_args, _format_tensor_into_tuples, _select_targets
from captum._utils.typing import TargetType
from torch import Tensor

from captum_qubo.baselines._base import ChannelWeightedLayerCam
from captum_qubo.attribution.layer_evaluation import layer_activations

CHANNEL_SCORES = ("probability", "logit_softmax")


class LayerScoreCam(ChannelWeightedLayerCam):
    r"""Score-CAM: map k weighted by the model's score on the input masked by map k.

    For each feature map A_k: upsample it (bilinear) to the input size, min-max normalise it to a mask
    H_k ∈ [0, 1], run the model on x ⊙ H_k, and weigh A_k by that score. Gradient-free; C forward passes per
    example, batched ``internal_batch_size`` at a time.

    A constant map has no min-max normalisation (0/0) and carries no spatial information: it gets weight 0, no
    forward pass is spent on it, and it is left out of the softmax in ``"logit_softmax"`` mode. A layer whose
    maps are all constant gives weights 0 and an all-zero map, never NaN.

    Run the model in eval mode: like every perturbation method, the masked forward passes would otherwise use
    and update batch statistics.

    Args:
        forward_func (Callable): the model or any function returning (N, classes) scores for a single
            (N, channels, height, width) image tensor (plus ``additional_forward_args``).
        layer (torch.nn.Module): the layer whose (N, C, H, W) feature maps are weighted.
        device_ids (list[int], optional): as in Captum, for DataParallel models.
    """

    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = False,
        internal_batch_size: int = 32,
        channel_scores: str = "probability",
        align_corners: bool = False,
    ) -> Tensor:
        r"""
        Args:
            inputs (Tensor or 1-tuple of Tensor): images (N, channels, height, width), the tensor that is masked.
            target (int, tuple, Tensor or list, optional): output indices to explain, as in Captum.
            additional_forward_args (Any, optional): extra arguments passed to ``forward_func`` after inputs;
                tensors whose dimension 0 has N entries are indexed per example for the masked passes.
            attribute_to_layer_input (bool): weigh the layer's input instead of its output.
            relu_attributions (bool): ReLU the map (the paper does; default False as in ``LayerGradCam``).
            internal_batch_size (int): masked images per forward pass (trades memory for speed; the result
                does not depend on it).
            channel_scores (str): ``"probability"`` (the paper and its official code): w_k = softmax over
                classes of f(x ⊙ H_k), at the target class. ``"logit_softmax"`` (pytorch-grad-cam's
                ``ScoreCAM`` with ``ClassifierOutputTarget``): w = softmax over channels of the target logits.
            align_corners (bool): bilinear upsampling convention of the masks; False as in the official code,
                True as in pytorch-grad-cam (``UpsamplingBilinear2d``).

        Returns:
            Tensor: (N, 1, H, W) map Σ_k w_k A_k at layer resolution.
        """
        self.last_channel_weights = None  # never leave a stale result behind a failed call
        if channel_scores not in CHANNEL_SCORES:
            raise ValueError(f"channel_scores must be one of {CHANNEL_SCORES}, got {channel_scores!r}")
        if not isinstance(internal_batch_size, int) or internal_batch_size < 1:
            raise ValueError(f"internal_batch_size must be a positive int, got {internal_batch_size!r}")
        images = _single_image_tensor(inputs)
        if target is None and channel_scores == "probability":
            raise ValueError("channel_scores='probability' needs a class: pass target=<class index>")
        activations = layer_activations(
            self.forward_func,
            self.layer,
            (images,),
            target,
            additional_forward_args,
            self.device_ids,
            attribute_to_layer_input,
        )
        scores, informative = self._masked_scores(
            images, activations, target, additional_forward_args, internal_batch_size, channel_scores, align_corners
        )
        if channel_scores == "logit_softmax":
            scores = torch.softmax(scores.masked_fill(~informative, float("-inf")), dim=1)
        weights = torch.where(informative, scores, 0.0)
        return self._finish(weights, activations, relu_attributions)

    @torch.no_grad()
    def _masked_scores(
        self,
        images: Tensor,
        activations: Tensor,
        target: TargetType,
        additional_forward_args: Any,
        internal_batch_size: int,
        channel_scores: str,
        align_corners: bool,
    ) -> Tuple[Tensor, Tensor]:
        """Target scores (N, C) on every informative masked image, and which maps are informative (N, C)."""
        num_examples, num_channels = activations.shape[:2]
        maps = activations.reshape(num_examples * num_channels, 1, *activations.shape[2:])
        informative = (maps.amax(dim=(1, 2, 3)) > maps.amin(dim=(1, 2, 3))).reshape(num_examples, num_channels)
        example_of_row = torch.arange(num_examples, device=images.device).repeat_interleave(num_channels)
        extra_args = _format_additional_forward_args(additional_forward_args) or ()
        scores = torch.zeros(num_examples * num_channels, dtype=activations.dtype, device=activations.device)
        for rows in informative.flatten().nonzero().flatten().split(internal_batch_size):
            masks = _min_max_masks(maps[rows], images.shape[2:], align_corners)
            examples = example_of_row[rows.to(example_of_row.device)]
            row_args = tuple(_rows_of(arg, examples, num_examples) for arg in extra_args)
            output = self.forward_func(images[examples] * masks.to(images.device), *row_args)
            if channel_scores == "probability":
                output = torch.softmax(output, dim=1)
            selected = _select_targets(output, _rows_of_target(target, examples, num_examples))
            scores[rows] = selected.to(scores)
        return scores.reshape(num_examples, num_channels), informative


def _min_max_masks(maps: Tensor, size: torch.Size, align_corners: bool) -> Tensor:
    """Bilinearly upsample (B, 1, h, w) maps to ``size`` and min-max normalise each one to [0, 1]."""
    upsampled = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=align_corners)
    low = upsampled.amin(dim=(2, 3), keepdim=True)
    span = upsampled.amax(dim=(2, 3), keepdim=True) - low
    # Maps reaching here vary at layer resolution; the guard only protects against a downsampling that flattens one.
    return torch.where(span > 0, (upsampled - low) / torch.where(span > 0, span, 1.0), 0.0)


def _single_image_tensor(inputs: Union[Tensor, Tuple[Tensor, ...]]) -> Tensor:
    inputs = _format_tensor_into_tuples(inputs)
    if len(inputs) != 1 or inputs[0].dim() != 4:
        shapes = [tuple(t.shape) for t in inputs]
        raise ValueError(
            f"Score-CAM masks one image tensor of shape (N, channels, height, width), got inputs of shape(s) "
            f"{shapes}; pass the image alone and any other model inputs as additional_forward_args"
        )
    return inputs[0]


def _rows_of(arg: Any, examples: Tensor, num_examples: int) -> Any:
    """An additional forward argument for the masked rows: per-example tensors are indexed, others passed as is."""
    if isinstance(arg, Tensor) and arg.dim() > 0 and arg.shape[0] == num_examples:
        return arg[examples.to(arg.device)]
    return arg


def _rows_of_target(target: TargetType, examples: Tensor, num_examples: int) -> TargetType:
    if isinstance(target, list):
        return [target[index] for index in examples.tolist()]
    if isinstance(target, Tensor):
        return int(target.item()) if target.numel() == 1 else target.flatten()[examples.to(target.device)]
    return target
