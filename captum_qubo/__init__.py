"""captum-qubo: explain CNN predictions by selecting feature maps with a QUBO solved by annealers.

Names are imported on first use (PEP 562), so ``import captum_qubo`` — and the command line's ``--help`` — do not
pay for torch and Captum until something needs them.
"""
import importlib
from typing import Any, List

__version__ = "0.1.0"

_EXPORTS = {
    "FeatureMapQubo": "captum_qubo.formulation.qubo",
    "FeatureMapSelection": "captum_qubo.attribution.selection",
    "QuboFeatureMapAttribution": "captum_qubo.attribution.qubo_attribution",
    "QuboOptions": "captum_qubo.attribution.options",
    "available_samplers": "captum_qubo.solvers.registry",
    "build_feature_map_qubo": "captum_qubo.formulation.qubo",
    "explanation_map": "captum_qubo.attribution.qubo_attribution",
    "get_sampler": "captum_qubo.solvers.registry",
    "k_hot_penalty": "captum_qubo.formulation.qubo",
    "register_sampler": "captum_qubo.solvers.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        try:  # a subpackage used as an attribute (captum_qubo.zoo after a bare `import captum_qubo`)
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(list(globals()) + __all__)
