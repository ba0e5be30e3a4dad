"""Landau–Zener estimate of the success probability from the minimum gap.

Near an isolated avoided crossing the two levels behave like the two-level model
H(t) = [[v t / 2, Δ/2], [Δ/2, −v t / 2]] with gap sqrt((v t)² + Δ²). Sweeping t from −∞ to +∞
leaves the system in the excited (diabatic) branch with probability
P = exp(−2π (Δ/2)² / v) (Landau 1932, Zener 1932; ħ = 1). In an anneal s = t/τ, so the
diabatic levels separate at rate v_s/τ in time, where v_s = |d(E_a − E_b)/ds| is read off the
gap profile (Δ(s)² ≈ Δ_min² + v_s² (s − s_min)²). Hence

    F_LZ = 1 − exp(−π Δ_min² τ / (2 v_s)).

It is an estimate: the sweep is finite, other levels take part, and crossings that are not
two-level (e.g. Δ_min at s = 1, set by the classical gap) are outside the model.
"""
from __future__ import annotations

import numpy as np


def landau_zener_success(delta_min, gap_speed, tau):
    """F_LZ = 1 − exp(−π Δ_min² τ / (2 v_s)), vectorised; NaN where v_s is not finite.

    Args:
        delta_min: minimum gap Δ_min.
        gap_speed: v_s = |d(E_a − E_b)/ds| of the crossing diabatic levels (per unit s).
        tau: annealing time.

    Returns:
        Estimated probability of ending in the ground state.
    """
    delta_min, gap_speed, tau = (np.asarray(x, dtype=np.float64) for x in (delta_min, gap_speed, tau))
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = -np.expm1(-np.pi * delta_min**2 * tau / (2.0 * gap_speed))
    return np.where(np.isfinite(gap_speed) & (gap_speed > 0), estimate, np.nan)
