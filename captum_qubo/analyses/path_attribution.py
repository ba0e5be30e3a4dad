"""Integrated Gradients through Captum, on the inputs or on a layer's feature maps, with the completeness check.

Captum's ``IntegratedGradients`` / ``LayerIntegratedGradients`` do the integration; this module runs them in
eval mode without touching parameter ``.grad``, and reports the convergence delta: IG's attributions sum to
F(x) − F(baseline) exactly in the limit of many steps, so δ = Σ attributions − (F(x) − F(baseline)) measures
how well the integral was resolved, and δ / |F(x) − F(baseline)| is the relative error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from torch import Tensor
from torch.nn import Module

from captum_qubo.analyses.activations import resolve_layers
from captum_qubo.model_access import preserved_module_modes


@dataclass
class IntegratedGradientsResult:
    """Attributions and their completeness check.

    Attributions:
        attributions: like the inputs (input IG) or like the layer output (layer IG), detached, CPU.
        delta: (N,) Captum's convergence delta, Σ attributions − (F(x) − F(baseline)).
        output_difference: (N,) F(x) − F(baseline) for the explained targets.
        n_steps, method: the integration settings.
    """

    attributions: Tensor
    delta: Tensor
    output_difference: Tensor
    n_steps: int
    method: str

    @property
    def relative_delta(self) -> Tensor:
        """|δ| / max(|F(x) − F(baseline)|, 1e-12), per input."""
        return self.delta.abs() / self.output_difference.abs().clamp_min(1e-12)

    def map_totals(self) -> Tensor:
        """Σ over all but the first two dimensions: per map totals (N, C) of layer attributions."""
        return self.attributions.flatten(2).sum(dim=2) if self.attributions.ndim > 2 else self.attributions

    def to_dict(self) -> dict:
        return {"n_steps": self.n_steps, "method": self.method, "num_inputs": int(self.delta.numel()),
                "max_abs_delta": float(self.delta.abs().max()),
                "max_relative_delta": float(self.relative_delta.max()),
                "mean_output_difference": float(self.output_difference.mean())}


def integrated_gradients(
    model: Module,
    inputs: Tensor,
    target: Union[int, Tensor],
    baselines: Optional[Union[float, Tensor]] = None,
    layer: Optional[Union[str, Module]] = None,
    n_steps: int = 64,
    method: str = "gausslegendre",
    internal_batch_size: Optional[int] = None,
) -> IntegratedGradientsResult:
    """Integrated Gradients of the ``target`` logits, on the inputs or on ``layer``'s output.

    Args:
        model: maps (N, ...) inputs to (N, classes) outputs.
        inputs: (N, ...) inputs.
        target: a class index or (N,) indices.
        baselines: the reference input (default zeros: black, or mid-grey for [-1, 1] inputs).
        layer: None for input attributions, else a submodule or its dotted name: the attributions are then
            over that layer's output (``LayerIntegratedGradients``), e.g. one total per feature map.
        n_steps, method: Captum's integration settings.
        internal_batch_size: Captum's batching of the interpolated inputs (bounds memory).

    Returns:
        An :class:`IntegratedGradientsResult`.
    """
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    parameters = list(model.parameters())
    grads = [p.grad for p in parameters]
    if layer is None:
        explainer = IntegratedGradients(model)
    else:
        explainer = LayerIntegratedGradients(model, list(resolve_layers(model, [layer]).values())[0])
    baselines = torch.zeros_like(inputs) if baselines is None else baselines
    target_tensor = torch.as_tensor(target).expand(inputs.shape[0]) if np.ndim(target) == 0 else torch.as_tensor(target)
    with preserved_module_modes(model), torch.enable_grad():
        attributions, delta = explainer.attribute(inputs, baselines=baselines, target=target, n_steps=n_steps,
                                                  method=method, internal_batch_size=internal_batch_size,
                                                  return_convergence_delta=True)
        with torch.no_grad():
            baseline_inputs = baselines if isinstance(baselines, Tensor) else torch.full_like(inputs, baselines)
            rows = torch.arange(inputs.shape[0])
            difference = model(inputs)[rows, target_tensor] - model(baseline_inputs)[rows, target_tensor]
    for parameter, grad in zip(parameters, grads):
        parameter.grad = grad
    return IntegratedGradientsResult(attributions.detach().cpu(), delta.detach().cpu().reshape(-1),
                                     difference.detach().cpu(), n_steps, method)
