"""The explainer: Captum's layer pass, the QUBO attribution and the record of each selection."""
from captum_qubo.attribution.qubo_attribution import QuboFeatureMapAttribution, explanation_map
from captum_qubo.attribution.selection import FeatureMapSelection

__all__ = ["FeatureMapSelection", "QuboFeatureMapAttribution", "explanation_map"]
