"""QIXAI's analyses of a trained CNN, done properly: activation spectra and their von Neumann entropy, layer
similarity (linear CKA and QIXAI's cosine), feature-map mutual information (KSG, all pairs), Integrated
Gradients with its completeness check, pictures and a JSON/markdown report.

One idea per module: ``activations``, ``spectrum``, ``similarity``, ``map_information`` (mutual information),
``redundancy`` (the QUBO's |cos| against MI), ``path_attribution`` (Integrated Gradients), ``figures``,
``report``, ``pipeline`` (all of them on one model), ``inputs`` (the bundled models' inputs), ``command`` (CLI).
The names below are imported on first use, so ``captum_qubo.analyses.command`` (the CLI parser) loads no torch.
No exported name equals a module name, which is what keeps the lazy lookup unambiguous.
"""
from importlib import import_module

_SOURCES = {
    "activations": ("collect_activations", "pool_maps", "resolve_layers"),
    "map_information": ("MutualInformation", "ksg_matrix", "mutual_information", "pearson_matrix",
                        "permutation_null"),
    "path_attribution": ("IntegratedGradientsResult", "integrated_gradients"),
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


def __dir__():
    return sorted(set(globals()) | set(__all__))
