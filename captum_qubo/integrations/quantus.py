"""Quantus adapter: our explainers as a Quantus ``explain_func``.

Quantus calls ``explain_func(model=model, inputs=x_batch, targets=y_batch, **explain_func_kwargs)`` with numpy
arrays and wants a numpy array of attributions at the input's resolution back. Randomisation tests (MPRT) call it
with a deep copy of the model, so the layer is given by its dotted name and looked up on the model of each call,
never bound to one model object::

    import quantus
    from captum_qubo import QuboOptions
    from captum_qubo.integrations.quantus import explain

    metric = quantus.MPRT(disable_warnings=True)
    scores = metric(model=model, x_batch=x, y_batch=y, explain_func=explain,
                    explain_func_kwargs={"layer": "reduce", "method": "qubo", "options": QuboOptions(sampler="exact")})

numpy ≥ 2: Quantus 0.6's area-under-curve helper calls ``np.trapz`` (removed in numpy 2.4), so ``PixelFlipping``
(AUC outputs), ``RegionPerturbation``, ``Selectivity`` and ``IROF`` raise ``AttributeError`` there, and
``Continuity`` uses ``np.NaN`` (removed in numpy 2.0). :func:`numpy2_auc_shim` swaps in ``np.trapezoid`` for the
duration of a ``with`` block (restored after) for the AUC metrics; the other metrics need nothing.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, Optional, Union

import numpy as np
import torch
from captum.attr import LayerAttribution
from torch import Tensor
from torch.nn import Module

from captum_qubo.attribution.options import QuboOptions
from captum_qubo.model_access import find_layer, preserved_module_modes

#: Methods ``explain`` runs, by the name given as ``method``.
METHODS = ("qubo", "grad_cam", "grad_cam_plus_plus", "score_cam")


def explain(
    model: Module,
    inputs: Union[np.ndarray, Tensor],
    targets: Union[np.ndarray, Tensor, int],
    layer: Optional[str] = None,
    method: str = "qubo",
    options: Optional[QuboOptions] = None,
    device: Optional[Union[str, torch.device]] = None,
    relu_attributions: bool = True,
    **option_fields: Any,
) -> np.ndarray:
    """Explain ``model``'s outputs ``targets`` on ``inputs`` with one of our methods, Quantus-style.

    Args:
        model: the network Quantus passes (the original or its randomised deep copy); explained in eval mode,
                    its train/eval modes and parameters' ``.grad`` are left as they were.
        inputs: (N, C, H, W) numpy array (or tensor) of inputs.
        targets: (N,) class indices (or one int for all).
        layer: dotted name of the convolutional layer in ``model`` (``"reduce"``, ``"layer4"`` ...); required.
        method: one of :data:`METHODS`; ``"qubo"`` is :class:`~captum_qubo.attribution.QuboFeatureMapAttribution`,
                    the others the Grad-CAM family of :mod:`captum_qubo.baselines` with ReLU applied.
        options: how the QUBO selects maps (only for ``method="qubo"``); see
                    :class:`~captum_qubo.attribution.options.QuboOptions`.
        device: where to run (Quantus passes its ``device`` argument here). The model must already be there;
                    None: the device of the model's parameters.
        relu_attributions: for the Grad-CAM family, ReLU the map as their papers do (default). False keeps the
                    signed map, which is never all zero (Quantus refuses an all-zero batch, as ReLU-ed Grad-CAM can
                    give on a randomised model in MPRT). The QUBO map is non-negative by construction.
        **option_fields: :class:`QuboOptions` fields as keywords (``sampler="exact"`` ...), over ``options``.

    Returns:
        float32 numpy array (N, 1, H, W) at the inputs' resolution (bilinear upsampling of the layer map).
    """
    if layer is None:
        raise ValueError('explain needs layer=, the dotted name of the layer to explain, e.g. '
                         'explain_func_kwargs={"layer": "reduce"}')
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "qubo" and relu_attributions is not True:
        raise ValueError("relu_attributions=False applies to the Grad-CAM family only; the QUBO map is "
                         "non-negative by construction")
    if method != "qubo" and (options is not None or option_fields):
        raise ValueError(f"QUBO options ({sorted(option_fields) or 'options='}) only apply to method='qubo', "
                         f"not {method!r}; drop them")
    qubo_options = QuboOptions.from_kwargs(options, **option_fields) if method == "qubo" else None
    run_on = _model_device(model, device)
    batch = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, Tensor) else inputs)
    if batch.ndim != 4:
        raise ValueError(f"inputs must be a (N, C, H, W) batch, got shape {tuple(batch.shape)}")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    batch = batch.to(run_on, dtype)
    target = _targets(targets, batch.shape[0], run_on)
    with preserved_module_modes(model):
        explainer = _explainer(method, model, find_layer(model, layer), qubo_options)
        extra = {} if method == "qubo" else {"relu_attributions": relu_attributions}
        layer_maps = explainer.attribute(batch, target=target, **extra)
    upsampled = LayerAttribution.interpolate(layer_maps.detach(), tuple(batch.shape[2:]), "bilinear")
    return upsampled.float().cpu().numpy()


def _model_device(model: Module, device: Optional[Union[str, torch.device]]) -> torch.device:
    """The device to run on: the model's; a requested ``device`` that differs is an error, not a silent move."""
    parameter = next(iter(model.parameters()), None)
    on = parameter.device if parameter is not None else torch.device("cpu")
    if device is None:
        return on
    wanted = torch.device(device)
    if wanted.type != on.type or (wanted.index is not None and wanted.index != on.index):
        raise ValueError(
            f"device={str(device)!r} but the model's parameters are on {on}; move the model first "
            f"(model.to({str(device)!r})) or pass device={str(on)!r}"
        )
    return on


def _targets(targets: Union[np.ndarray, Tensor, int], num_samples: int, device: torch.device) -> Tensor:
    values = torch.as_tensor(np.asarray(targets) if not isinstance(targets, Tensor) else targets).reshape(-1)
    if values.is_floating_point() and not torch.equal(values, values.round()):
        raise ValueError(f"targets must be class indices, got non-integer values {values[:5].tolist()}")
    if values.numel() == 1:
        values = values.expand(num_samples)
    if values.numel() != num_samples:
        raise ValueError(f"targets needs one class per input: {num_samples} inputs, {values.numel()} targets")
    return values.long().to(device)


def _explainer(method: str, model: Module, layer: Module, options: Optional[QuboOptions]) -> Any:
    from captum_qubo import baselines
    from captum_qubo.attribution.qubo_attribution import QuboFeatureMapAttribution

    if method == "qubo":
        return QuboFeatureMapAttribution(model, layer, options=options)
    classes: Dict[str, Callable] = {"grad_cam": baselines.LayerGradCamWithWeights,
                                    "grad_cam_plus_plus": baselines.LayerGradCamPlusPlus,
                                    "score_cam": baselines.LayerScoreCam}
    return classes[method](model, layer)


@contextmanager
def numpy2_auc_shim() -> Iterator[None]:
    """Let Quantus 0.6's AUC metrics run on numpy ≥ 2.4 (``np.trapz`` removed) inside the ``with`` block.

    Replaces ``quantus.helpers.utils.calculate_auc`` by the same trapezoid rule through ``np.trapezoid`` and puts
    the original back on exit. numpy itself is not patched. A no-op where ``np.trapz`` still exists.
    """
    from quantus.helpers import utils

    if hasattr(np, "trapz"):
        yield
        return
    original = utils.calculate_auc

    def calculate_auc(values: np.ndarray, dx: int = 1, batched: bool = False) -> np.ndarray:
        return np.trapezoid(np.array(values), dx=dx, axis=1 if batched else -1)

    utils.calculate_auc = calculate_auc
    try:
        yield
    finally:
        utils.calculate_auc = original
