"""Shared plumbing of the channel-weighted CAM baselines (Grad-CAM, Grad-CAM++, Score-CAM).

All three explain a prediction as L = Σ_k w_k A_k over the feature maps A_k of one conv layer; they differ only
in the channel weights w. This module holds what they share, in pytorch-grad-cam's spirit of "one base, each
variant overrides the weights": the weighted sum and the record of the weights. The validated pass through
Captum's layer helpers is shared with the QUBO method (``captum_qubo.attribution.layer_evaluation``).
"""
from typing import Callable, List, Optional

import torch
from captum.attr import LayerAttribution
from torch import Tensor
from torch.nn import Module


def weighted_activation_map(weights: Tensor, activations: Tensor, relu_attributions: bool) -> Tensor:
    """L = Σ_k w_k A_k as (N, 1, H, W), optionally ReLU-ed (as Grad-CAM / Grad-CAM++ / Score-CAM papers do)."""
    cam = torch.einsum("nc,nchw->nhw", weights.to(activations.dtype), activations).unsqueeze(1)
    return torch.relu(cam) if relu_attributions else cam


class ChannelWeightedLayerCam(LayerAttribution):
    """Base of the CAMs added here: subclasses compute channel weights; the map is their weighted sum.

    After ``attribute()``, ``last_channel_weights`` holds the (N, C) weights that made the map, so "the top-K maps
    by the method's own weights" is defined for every method (same convention as
    ``QuboFeatureMapAttribution.last_channel_weights``).
    """

    def __init__(self, forward_func: Callable[..., Tensor], layer: Module, device_ids: Optional[List[int]] = None):
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        self.last_channel_weights: Optional[Tensor] = None

    def _finish(self, weights: Tensor, activations: Tensor, relu_attributions: bool) -> Tensor:
        self.last_channel_weights = weights.detach()
        return weighted_activation_map(weights, activations, relu_attributions)
