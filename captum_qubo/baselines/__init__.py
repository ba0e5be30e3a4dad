"""Baseline CAM methods in Captum's interface, each exposing ``last_channel_weights`` (N, C) after ``attribute()``.

- Grad-CAM: Captum's own ``LayerGradCam`` (``LayerGradCamWithWeights`` records its weights).
- Grad-CAM++: ``LayerGradCamPlusPlus``.
- Score-CAM: ``LayerScoreCam``.
"""
from captum_qubo.baselines.grad_cam import LayerGradCamWithWeights, grad_cam_weights
from captum_qubo.baselines.grad_cam_plus_plus import LayerGradCamPlusPlus, grad_cam_plus_plus_weights
from captum_qubo.baselines.score_cam import LayerScoreCam

__all__ = [
    "LayerGradCamPlusPlus",
    "LayerGradCamWithWeights",
    "LayerScoreCam",
    "grad_cam_plus_plus_weights",
    "grad_cam_weights",
]
