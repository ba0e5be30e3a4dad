"""QIXAI's analyses of a trained CNN, done properly: activation spectra and their von Neumann entropy, layer
similarity (linear CKA and QIXAI's cosine), feature-map mutual information (KSG, all pairs), Integrated
Gradients with its completeness check, pictures and a JSON/markdown report.

Function names equal to their module's name (``mutual_information``, ``integrated_gradients``) are bound
here eagerly, after their modules load, so ``from captum_qubo.analyses import mutual_information`` is the function.
"""
from captum_qubo.analyses.activations import collect_activations, pool_maps, resolve_layers
from captum_qubo.analyses.integrated_gradients import IntegratedGradientsResult, integrated_gradients
from captum_qubo.analyses.mutual_information import MutualInformation, ksg_matrix, mutual_information, pearson_matrix
from captum_qubo.analyses.pipeline import run_analyses
from captum_qubo.analyses.redundancy import compare_redundancy, mean_abs_cosine
from captum_qubo.analyses.report import AnalysisReport
from captum_qubo.analyses.similarity import gram_cosine, linear_cka, representation_cosine, similarity_matrix
from captum_qubo.analyses.spectrum import (
    ImageSpectra,
    LayerSpectrum,
    activation_spectrum,
    density_matrix,
    image_spectra,
    von_neumann_entropy,
)

__all__ = [
    "AnalysisReport",
    "ImageSpectra",
    "IntegratedGradientsResult",
    "LayerSpectrum",
    "MutualInformation",
    "activation_spectrum",
    "collect_activations",
    "compare_redundancy",
    "density_matrix",
    "gram_cosine",
    "image_spectra",
    "integrated_gradients",
    "ksg_matrix",
    "linear_cka",
    "mean_abs_cosine",
    "mutual_information",
    "pearson_matrix",
    "pool_maps",
    "representation_cosine",
    "resolve_layers",
    "run_analyses",
    "similarity_matrix",
    "von_neumann_entropy",
]
