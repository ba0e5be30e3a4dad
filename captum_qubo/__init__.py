"""captum-qubo: explain CNN predictions by selecting feature maps with a QUBO solved by annealers."""
from captum_qubo.qubo import FeatureMapQubo, build_feature_map_qubo, k_hot_penalty

__all__ = ["FeatureMapQubo", "build_feature_map_qubo", "k_hot_penalty"]
