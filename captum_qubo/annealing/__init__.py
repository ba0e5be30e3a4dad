"""State-vector quantum-annealing physics for the feature-map QUBO (METHOD.md §6).

H(s) = A(s) H_D + B(s) H_P applied matrix-free; lowest levels and an adaptive minimum gap;
a 4th-order, error-controlled evolution; the Landau–Zener estimate; the authors' slow method as
a reference; and :class:`QuantumAnnealingSimulator`, a dimod sampler (``"qa-sim"``).
"""
from captum_qubo.annealing.evolution import EvolutionResult, evolve, propagate, success_probability
from captum_qubo.annealing.hamiltonian import AnnealingHamiltonian, bqm_energies
from captum_qubo.annealing.landau_zener import landau_zener_success
from captum_qubo.annealing.reference import reference_anneal
from captum_qubo.annealing.schedules import Schedule, get_schedule
from captum_qubo.annealing.simulator import QuantumAnnealingSimulator
from captum_qubo.annealing.levels import lowest_levels
from captum_qubo.annealing.spectrum import GapProfile, minimum_gap

__all__ = [
    "AnnealingHamiltonian",
    "EvolutionResult",
    "GapProfile",
    "QuantumAnnealingSimulator",
    "Schedule",
    "bqm_energies",
    "evolve",
    "get_schedule",
    "landau_zener_success",
    "lowest_levels",
    "minimum_gap",
    "propagate",
    "reference_anneal",
    "success_probability",
]
