"""captum-qubo: explain CNN predictions by selecting feature maps with a QUBO solved by annealers."""
from captum_qubo.attribution import QuboFeatureMapAttribution, explanation_map
from captum_qubo.qubo import FeatureMapQubo, build_feature_map_qubo, k_hot_penalty
from captum_qubo.samplers import available_samplers, get_sampler, register_sampler
from captum_qubo.selection import FeatureMapSelection

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
