"""Grad-CAM++ (Chattopadhay et al., 2018, arXiv 1710.11063) as a Captum LayerAttribution."""
from typing import Any, Dict, Optional, Tuple, Union

import torch
from captum._utils.typing import TargetType
from torch import Tensor

from captum_qubo.baselines._base import ChannelWeightedLayerCam
from captum_qubo.attribution.layer_evaluation import layer_gradients_and_activations

PYTORCH_GRAD_CAM_EPS = 1e-6


class LayerGradCamPlusPlus(ChannelWeightedLayerCam):
    r"""Grad-CAM++: map k weighted by Σ_ij α^k_ij ReLU(∂y_c/∂A^k_ij) with the paper's closed-form α.

    Call convention of Captum's ``LayerGradCam``: ``LayerGradCamPlusPlus(model, model.conv).attribute(x, target=c)``
    returns an (N, 1, H, W) map at layer resolution; ``last_channel_weights`` then holds the (N, C) weights.

    Args:
        forward_func (Callable): the model or any function returning (N, classes) scores.
        layer (torch.nn.Module): the layer whose (N, C, H, W) feature maps are weighted.
        device_ids (list[int], optional): as in Captum, for DataParallel models.
    """

    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = False,
        eps: float = PYTORCH_GRAD_CAM_EPS,
        grad_kwargs: Optional[Dict[str, Any]] = None,
    ) -> Tensor:
        r"""
        Args:
            inputs (Tensor or tuple[Tensor, ...]): model inputs, dimension 0 = examples.
            target (int, tuple, Tensor or list, optional): output indices to explain, as in Captum.
            additional_forward_args (Any, optional): extra arguments passed to ``forward_func`` after inputs.
            attribute_to_layer_input (bool): weigh the layer's input instead of its output.
            relu_attributions (bool): ReLU the map (the paper does; default False as in ``LayerGradCam``).
            eps (float): added to the denominator of α, as pytorch-grad-cam does (default 1e-6). eps=0 gives
                the paper's formula exactly, with α := 0 where its denominator is 0. The choice matters where
                gradients are small: on EfficientNet-Lite0's head (gradients ~1e-3, so g² ~ eps) the two differ
                by up to 12% in the weights and 0.16 in the normalised map (chelsea, coffee).
            grad_kwargs (dict, optional): extra keyword arguments for ``torch.autograd.grad``.

        Returns:
            Tensor: (N, 1, H, W) map Σ_k w_k A_k at layer resolution.
        """
        self.last_channel_weights = None  # never leave a stale result behind a failed call
        gradients, activations = layer_gradients_and_activations(
            self.forward_func,
            self.layer,
            inputs,
            target,
            additional_forward_args,
            self.device_ids,
            attribute_to_layer_input,
            grad_kwargs,
        )
        weights = grad_cam_plus_plus_weights(gradients, activations, eps)
        return self._finish(weights, activations, relu_attributions)


def grad_cam_plus_plus_weights(gradients: Tensor, activations: Tensor, eps: float = PYTORCH_GRAD_CAM_EPS) -> Tensor:
    r"""Grad-CAM++ channel weights from layer gradients g = ∂S_c/∂A and activations A, both (N, C, H, W).

    The paper takes Y_c = exp(S_c); for a piecewise-linear network the 2nd and 3rd derivatives of Y_c become
    powers of g and exp(S_c) cancels in (eq. 19)

        α^k_ij = g_ij² / (2 g_ij² + Σ_ab A^k_ab · g_ij³),   w_k = exp(S_c) Σ_ij α^k_ij ReLU(g_ij).

    The factor exp(S_c) is one positive number per example: it changes neither the ranking of the channels nor
    the normalised map, and overflows float32 for scores above ~88, so it is left out (as pytorch-grad-cam does).

    Returns:
        Tensor: (N, C) weights.
    """
    squared = gradients.pow(2)
    sum_activations = activations.sum(dim=(2, 3), keepdim=True)
    denominator = 2 * squared + sum_activations * squared * gradients + eps
    # Only positive gradients contribute (the ReLU); there α is finite unless eps=0 and the denominator vanishes.
    contributes = (gradients > 0) & (denominator != 0)
    alpha = torch.where(contributes, squared / torch.where(contributes, denominator, 1.0), 0.0)
    return (alpha * torch.relu(gradients)).sum(dim=(2, 3))
