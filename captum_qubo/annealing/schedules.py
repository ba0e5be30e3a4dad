"""Annealing schedules A(s), B(s) for H(s) = A(s) H_D + B(s) H_P, s = t/τ ∈ [0, 1].

Three named schedules:

- ``"linear"``: A = 1 − s, B = s (the authors' default, METHOD.md §6).
- ``"quadratic"``: A = (1 − s)², B = s² (our reading of their "quadratic option").
- ``"dwave"``: a D-Wave-like shape tabulated from the published Advantage schedule (see
  :data:`DWAVE_ADVANTAGE_TABLE`), interpolated monotonically (PCHIP) and scaled so B(1) = 1.

Any pair of vectorised callables can be wrapped in :class:`Schedule` (e.g. for the
Landau–Zener sweep used in the tests).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import numpy as np
from scipy.interpolate import PchipInterpolator

# s, A(s)/h [GHz], B(s)/h [GHz]. An approximate, coarse rendering of the *shape* of D-Wave's
# published annealing schedule for Advantage systems (docs.dwavesys.com, "QPU-Specific Physical
# Properties: Advantage_system4.1", annealing-schedule figure and spreadsheet). The values were
# read off the published curves by eye (no download is possible here) and are accurate to roughly
# 10–20 %: A falls from ≈5 GHz to ~0 by s ≈ 0.8, B rises from ≈0.2 GHz to ≈6 GHz, and they
# cross near s ≈ 0.3. Use it for qualitative D-Wave-like behaviour, not to model a specific QPU.
DWAVE_ADVANTAGE_TABLE = np.array(
    [
        [0.00, 5.00, 0.20],
        [0.05, 4.30, 0.33],
        [0.10, 3.60, 0.50],
        [0.15, 2.95, 0.68],
        [0.20, 2.40, 0.90],
        [0.25, 1.90, 1.14],
        [0.30, 1.50, 1.40],
        [0.35, 1.15, 1.68],
        [0.40, 0.85, 1.98],
        [0.45, 0.62, 2.30],
        [0.50, 0.42, 2.65],
        [0.60, 0.17, 3.38],
        [0.70, 0.050, 4.10],
        [0.80, 0.012, 4.80],
        [0.90, 0.002, 5.42],
        [1.00, 0.000, 6.00],
    ]
)


@dataclass(frozen=True)
class Schedule:
    """A named pair of schedule functions, vectorised over s ∈ [0, 1].

    Attributes:
        name: label used in results and sampler info.
        A: driver strength A(s).
        B: problem strength B(s).
    """

    name: str
    A: Callable[[np.ndarray], np.ndarray]
    B: Callable[[np.ndarray], np.ndarray]

    def __call__(self, s):
        """(A(s), B(s)) as float arrays (floats for scalar s)."""
        s = np.asarray(s, dtype=np.float64)
        return np.asarray(self.A(s), dtype=np.float64), np.asarray(self.B(s), dtype=np.float64)

    def derivative(self, s: float, step: float = 1e-6) -> tuple:
        """(A'(s), B'(s)) by a central difference (one-sided at the ends of [0, 1])."""
        lo, hi = max(s - step, 0.0), min(s + step, 1.0)
        (a_lo, b_lo), (a_hi, b_hi) = self(lo), self(hi)
        return float((a_hi - a_lo) / (hi - lo)), float((b_hi - b_lo) / (hi - lo))


def _dwave_schedule() -> Schedule:
    s, a, b = DWAVE_ADVANTAGE_TABLE.T
    scale = b[-1]  # energies in units of B(1): τ is then measured in ħ / B(1)
    a_of_s, b_of_s = PchipInterpolator(s, a / scale), PchipInterpolator(s, b / scale)
    return Schedule("dwave", lambda x: np.clip(a_of_s(x), 0.0, None), b_of_s)


SCHEDULES = {
    "linear": Schedule("linear", lambda s: 1.0 - s, lambda s: s),
    "quadratic": Schedule("quadratic", lambda s: (1.0 - s) ** 2, lambda s: s**2),
    "dwave": _dwave_schedule(),
}


def get_schedule(schedule: Union[str, Schedule]) -> Schedule:
    """Resolve a schedule name (``linear``, ``quadratic``, ``dwave``) or pass a Schedule through."""
    if isinstance(schedule, Schedule):
        return schedule
    if schedule not in SCHEDULES:
        raise ValueError(
            f"unknown schedule {schedule!r}; choose one of {sorted(SCHEDULES)} or pass a Schedule(name, A, B)"
        )
    return SCHEDULES[schedule]
