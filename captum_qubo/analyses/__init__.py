"""QIXAI's analyses of a trained CNN, done properly: activation spectra and their von Neumann entropy, layer
similarity (linear CKA and QIXAI's cosine), feature-map mutual information (KSG, all pairs), Integrated
Gradients with its completeness check, pictures and a JSON/markdown report.

Names are imported on first use, so ``captum_qubo.analyses.command`` (the CLI) loads without torch.
"""
from importlib import import_module

_SOURCES = {
    "activations": ("collect_activations", "pool_maps", "resolve_layers"),
    "integrated_gradients": ("IntegratedGradientsResult", "integrated_gradients"),
    "mutual_information": ("MutualInformation", "ksg_matrix", "mutual_information", "pearson_matrix"),
    "pipeline": ("run_analyses",),
    "redundancy": ("compare_redundancy", "mean_abs_cosine"),
    "report": ("AnalysisReport",),
    "similarity": ("gram_cosine", "linear_cka", "representation_cosine", "similarity_matrix"),
    "spectrum": ("ImageSpectra", "LayerSpectrum", "activation_spectrum", "density_matrix", "image_spectra",
                 "von_neumann_entropy"),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'captum_qubo.analyses' has no attribute {name!r}")
    value = getattr(import_module(f"captum_qubo.analyses.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value
