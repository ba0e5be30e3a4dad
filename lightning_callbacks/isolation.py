"""Run explanation work inside a training run without changing the run.

Explaining needs gradients (Lightning validates under ``torch.inference_mode`` or ``no_grad``),
eval mode (BatchNorm must not update its running statistics) and full precision (mixed-precision
autocast would change the selections). Everything it switches is switched back, and the random
number generators are restored, so the training that follows is bit-for-bit the one that would have
run without the callback.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch.nn import Module

from captum_qubo.model_access import preserved_module_modes


@contextmanager
def preserved_random_state() -> Iterator[None]:
    """Restore the torch (CPU and initialised CUDA devices), numpy and Python ``random`` streams on exit."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda_devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


@contextmanager
def explanation_context(module: Module) -> Iterator[None]:
    """Eval mode, gradients on, no inference mode, no autocast, RNG restored: what explaining needs."""
    device_type = next((p.device.type for p in module.parameters()), "cpu")
    with preserved_random_state(), preserved_module_modes(module), torch.inference_mode(False), \
            torch.enable_grad(), torch.autocast(device_type=device_type, enabled=False):
        yield
