"""The problem: the per-prediction QUBO over "keep feature map p?" (METHOD.md §1)."""
from captum_qubo.formulation.qubo import (
    FORMULATIONS,
    FeatureMapQubo,
    abs_cosine_similarity,
    build_feature_map_qubo,
    k_hot_penalty,
)

__all__ = ["FORMULATIONS", "FeatureMapQubo", "abs_cosine_similarity", "build_feature_map_qubo", "k_hot_penalty"]
