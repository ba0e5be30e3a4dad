"""captum-qubo: explain CNN predictions by selecting feature maps with a QUBO solved by annealers."""
from captum_qubo.attribution.qubo_attribution import QuboFeatureMapAttribution, explanation_map
from captum_qubo.formulation.qubo import FeatureMapQubo, build_feature_map_qubo, k_hot_penalty
from captum_qubo.solvers.registry import available_samplers, get_sampler, register_sampler
from captum_qubo.attribution.selection import FeatureMapSelection

__version__ = "0.1.0"

__all__ = [
    "FeatureMapQubo",
    "FeatureMapSelection",
    "QuboFeatureMapAttribution",
    "available_samplers",
    "build_feature_map_qubo",
    "explanation_map",
    "get_sampler",
    "k_hot_penalty",
    "register_sampler",
]
