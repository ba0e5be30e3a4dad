"""Solving the QUBO: the sampler registry, the exact enumerator and the D-Wave backends, side by side."""
from captum_qubo.solvers.exact import ExactMinimumSampler
from captum_qubo.solvers.registry import (
    LowestEnergySample,
    SamplerConfigurationError,
    available_samplers,
    check_sampler_ready,
    get_sampler,
    register_sampler,
    sample_lowest_energy,
)

__all__ = [
    "ExactMinimumSampler",
    "LowestEnergySample",
    "SamplerConfigurationError",
    "available_samplers",
    "check_sampler_ready",
    "get_sampler",
    "register_sampler",
    "sample_lowest_energy",
]
