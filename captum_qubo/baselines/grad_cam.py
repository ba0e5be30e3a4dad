"""Grad-CAM as Captum's own ``LayerGradCam``, plus the channel weights it uses (mean gradients)."""
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from captum._utils.typing import TargetType
from captum.attr import LayerGradCam
from torch import Tensor
from torch.nn import Module

from captum_qubo.attribution.layer_evaluation import layer_gradients_and_activations


class LayerGradCamWithWeights(LayerGradCam):
    r"""Captum's ``LayerGradCam``, recording its channel weights in ``last_channel_weights``.

    Grad-CAM weighs map k by w_k = (1/HW) Σ_ij ∂y_c/∂A^k_ij. ``LayerGradCam`` computes these inside
    ``attribute`` and returns only the map, so they cannot be read off without re-implementing it. We chose a
    thin subclass that computes the weights in a separate pass (Captum's
    ``compute_layer_gradients_and_eval``) and then calls ``LayerGradCam.attribute`` unchanged: the map stays
    Captum's own code, at the price of a second forward/backward pass. For latency comparisons, time plain
    ``LayerGradCam``. The first pass also validates inputs (NaN), target (range) and layer (4-D) with clear
    errors before Captum runs.

    Args:
        forward_func (Callable): the model or any function returning (N, classes) scores.
        layer (torch.nn.Module): the layer whose (N, C, H, W) feature maps are weighted.
        device_ids (list[int], optional): as in Captum, for DataParallel models.
    """

    def __init__(self, forward_func: Callable[..., Tensor], layer: Module, device_ids: Optional[List[int]] = None):
        super().__init__(forward_func, layer, device_ids)
        self.last_channel_weights: Optional[Tensor] = None

    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = False,
        attr_dim_summation: bool = True,
        grad_kwargs: Optional[Dict[str, Any]] = None,
    ) -> Tensor:
        r"""Grad-CAM map from ``LayerGradCam.attribute`` (same arguments); sets ``last_channel_weights``.

        Returns:
            Tensor: (N, 1, H, W) at layer resolution, exactly what ``LayerGradCam.attribute`` returns.
        """
        self.last_channel_weights = None  # never leave a stale result behind a failed call
        gradients, _ = layer_gradients_and_activations(
            self.forward_func,
            self.layer,
            inputs,
            target,
            additional_forward_args,
            self.device_ids,
            attribute_to_layer_input,
            grad_kwargs,
        )
        self.last_channel_weights = grad_cam_weights(gradients)
        return super().attribute(
            inputs,
            target=target,
            additional_forward_args=additional_forward_args,
            attribute_to_layer_input=attribute_to_layer_input,
            relu_attributions=relu_attributions,
            attr_dim_summation=attr_dim_summation,
            grad_kwargs=grad_kwargs,
        )


def grad_cam_weights(gradients: Tensor) -> Tensor:
    """Grad-CAM channel weights: the spatial mean of the layer gradients, (N, C, H, W) -> (N, C)."""
    return gradients.mean(dim=(2, 3))
