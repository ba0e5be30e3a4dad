"""The record of one prediction's feature-map selection: which maps the QUBO kept, and how.

:class:`~captum_qubo.attribution.QuboFeatureMapAttribution` stores one
:class:`FeatureMapSelection` per sample in ``last_selections`` so the selection, its energy, the
sampler's own report and the time spent can be read back without recomputing anything.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Dict, Optional

import numpy as np

from captum_qubo.formulation.qubo import FeatureMapQubo


@dataclass
class FeatureMapSelection:
    """One sample's QUBO selection.

    Attributes:
        channels: (s,) int layer channel indices of the selected maps, ascending.
        importance: (C,) the importance the QUBO rewards, for every channel of the layer (the Grad-CAM weights α
            under ``importance="gradient"``; α_k·Σ_ij f_k,ij under the default ``"contribution"`` ...).
        energy: QUBO energy of the selected state (0.0 for an empty problem).
        num_variables: d, the number of binary variables (maps that entered the QUBO).
        sampler: name (or class name) of the sampler that solved the QUBO.
        info: the sampler's ``SampleSet.info`` (timing, embedding, ...) as returned.
        timings: seconds spent, keys ``forward_backward`` (this sample's share of the batch's
            forward + backward pass), ``build`` (QUBO construction) and ``solve`` (sampler call).
        qubo_factory: builds the :class:`~captum_qubo.formulation.qubo.FeatureMapQubo` that was
            solved; read it as :attr:`qubo` (built on first access: the batched solver never needs it).
        target: the output index explained for this sample (None when the model needs none).
        alpha: (C,) the Grad-CAM weights α of the explained score for every channel (what the map is built
            from, whatever the importance); None when not recorded.
        runner_up: with ``importance="contrastive"``, the class r of the margin z_c − z_r (the highest-scoring
            class other than the target in the explained forward pass); None otherwise.
    """

    channels: np.ndarray
    importance: np.ndarray
    energy: float
    num_variables: int
    sampler: str
    info: Dict[str, Any]
    timings: Dict[str, float]
    qubo_factory: Callable[[], FeatureMapQubo] = field(repr=False)
    target: Optional[Any] = None
    alpha: Optional[np.ndarray] = field(default=None, repr=False)
    runner_up: Optional[int] = None

    @cached_property
    def qubo(self) -> FeatureMapQubo:
        """The sample's QUBO (d×d; built on first access)."""
        return self.qubo_factory()

    @property
    def num_selected(self) -> int:
        return int(self.channels.size)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-serialisable summary (no QUBO matrices; sampler info made JSON-safe)."""
        summary = {
            "channels": [int(c) for c in self.channels],
            "num_selected": self.num_selected,
            "num_variables": self.num_variables,
            "importance_of_selected": [float(self.importance[c]) for c in self.channels],
            "energy": float(self.energy),
            "formulation": self.qubo.formulation,
            "k": self.qubo.k,
            "beta": self.qubo.beta,
            "penalty": self.qubo.penalty,
            "sampler": self.sampler,
            "sampler_info": json_safe(self.info),
            "timings": {name: float(seconds) for name, seconds in self.timings.items()},
            "target": json_safe(self.target),
        }
        if self.runner_up is not None:
            summary["runner_up"] = int(self.runner_up)
        return summary


def json_safe(value: Any) -> Any:
    """Recursively turn numpy/torch values and other objects into JSON types.

    Numbers and strings pass through (non-finite floats become strings, which JSON lacks),
    arrays and tensors become lists, mappings and sequences recurse, anything else becomes its
    ``repr`` so nothing a sampler reports can make serialisation fail.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else str(float(value))
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(item) for item in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return json_safe(value.tolist())
    return repr(value)
