"""QuboOptions: the one way to configure the QUBO explainer, validated once.

Every entry point — :class:`~captum_qubo.attribution.QuboFeatureMapAttribution`, the CLI, the Lightning
callbacks, the Quantus adapter and the dataset writer — builds a :class:`QuboOptions` and hands it on, so a
setting means the same thing everywhere and a bad value fails with the same message wherever it was given.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Union

import dimod

from captum_qubo.formulation.importance import IMPORTANCES
from captum_qubo.formulation.qubo import FORMULATIONS, PAIR_CONVENTIONS
from captum_qubo.solvers.registry import sampler_defaults

SamplerSpec = Union[str, dimod.Sampler, Callable[[], dimod.Sampler]]

DEFAULT_SAMPLER = {"unconstrained": "dense-tabu", "k_hot": "dense-tabu"}

#: Named settings for :meth:`QuboOptions.preset`. ``"paper"``: Venturelli et al. exactly (METHOD.md §1): the
#: gradient importance α, |cos| redundancy, β = 0.7, unconstrained, the ½ Σ_{p≠q} pair convention of its formula.
PRESETS: Dict[str, Dict[str, Any]] = {
    "paper": {"importance": "gradient", "beta": 0.7, "formulation": "unconstrained", "k": None,
              "pair_convention": "half"},
}


@dataclass(frozen=True)
class QuboOptions:
    """How the QUBO explainer selects feature maps.

    Attributes:
        sampler: a name registered in :mod:`captum_qubo.solvers` (``"sa"``, ``"exact"``, ``"tabu"``,
            ``"qpu"`` ...), a ``dimod.Sampler`` instance or a zero-argument factory. None picks the default
            for the formulation (:data:`DEFAULT_SAMPLER`).
        sampler_kwargs: keyword arguments for every ``sampler.sample`` call (``num_reads`` ...), merged over
            the registry defaults of a named sampler (:func:`~captum_qubo.solvers.registry.sampler_defaults`). A ``seed`` here
            takes precedence over :attr:`seed`.
        formulation: ``"unconstrained"`` (selection size emerges from reward vs redundancy) or ``"k_hot"``
            (exactly ``k`` maps).
        k: number of maps for ``"k_hot"``; must be None otherwise.
        beta: reward/redundancy trade-off β in [0, 1]; default 0.9 (the formulation study's choice, with
            ``importance="contribution"``); 0.7 is the paper's.
        seed: seed for samplers that accept one. Every sample of every call uses it, so an image's
            selection does not depend on the call or its position in the batch. None: fresh randomness.
        max_variables: keep only the ``max_variables`` maps with the largest positive importance as
            variables (for size-limited solvers: ``exact`` ≤ 24, QPU embeddings). None keeps all.
        importance: what the QUBO rewards and pre-filters on (:mod:`captum_qubo.formulation.importance`):
            ``"gradient"`` (the paper's α), ``"contribution"`` (α_k·Σ_ij f_k,ij, image-specific; the default),
            ``"gradient_x_activation"`` or ``"contrastive"`` (the contribution to the margin z_c − z_r over the
            runner-up class r). The explanation map is built from α of the explained score on the selected
            maps: ∂z_c/∂f, or ∂(z_c − z_r)/∂f for ``"contrastive"``.
        pair_convention: how the redundancy J enters the energy (:data:`~captum_qubo.formulation.qubo.PAIR_CONVENTIONS`):
            ``"half"`` (½ Σ_{p≠q}, default), ``"full_zero_diagonal"`` or ``"full_unit_diagonal"``.

    Build one directly, or from keyword arguments with :meth:`from_kwargs`, or a named setting with
    :meth:`preset` (``QuboOptions.preset("paper")``); change one with :meth:`replace`.

    The defaults (contribution importance, β = 0.9, unconstrained, ``half``) are the configuration that the
    formulation study (``benchmarks/formulation_study.py``, README "Results") chose on its tuning split: on held-out
    data it selects maps with higher sufficiency than Grad-CAM's top-K at the same K, but more class-entangled ones
    (higher BC); it does not reach the study's target. ``QuboOptions.preset("paper")`` is the paper's formulation.
    """

    sampler: Optional[SamplerSpec] = None
    sampler_kwargs: Optional[Mapping[str, Any]] = field(default_factory=dict)
    formulation: str = "unconstrained"
    k: Optional[int] = None
    beta: float = 0.9
    seed: Optional[int] = 0
    max_variables: Optional[int] = None
    importance: str = "contribution"
    pair_convention: str = "half"

    def __post_init__(self) -> None:
        if self.formulation not in FORMULATIONS:
            raise ValueError(f"formulation must be one of {FORMULATIONS}, got {self.formulation!r}")
        if self.formulation == "k_hot" and (not _is_int(self.k) or self.k < 1):
            raise ValueError(f"formulation='k_hot' needs a positive integer k, got k={self.k!r}")
        if self.formulation == "unconstrained" and self.k is not None:
            raise ValueError("k is only used by formulation='k_hot'; drop k or pass formulation='k_hot'")
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {self.beta!r}")
        if self.seed is not None and not _is_int(self.seed):
            raise ValueError(f"seed must be an integer or None, got {self.seed!r}")
        if self.max_variables is not None and (not _is_int(self.max_variables) or self.max_variables < 1):
            raise ValueError(f"max_variables must be a positive integer or None, got {self.max_variables!r}")
        if self.k is not None and self.max_variables is not None and self.k > self.max_variables:
            raise ValueError(
                f"k={self.k} exceeds max_variables={self.max_variables}; raise max_variables or lower k"
            )
        if self.importance not in IMPORTANCES:
            raise ValueError(f"importance must be one of {IMPORTANCES}, got {self.importance!r}")
        if self.pair_convention not in PAIR_CONVENTIONS:
            raise ValueError(f"pair_convention must be one of {PAIR_CONVENTIONS}, got {self.pair_convention!r}")
        if self.sampler_kwargs is None:
            object.__setattr__(self, "sampler_kwargs", {})
        if not isinstance(self.sampler_kwargs, Mapping):
            raise TypeError(f"sampler_kwargs must be a mapping, got {type(self.sampler_kwargs).__name__}")
        object.__setattr__(self, "beta", float(self.beta))
        object.__setattr__(self, "sampler_kwargs", dict(self.sampler_kwargs))

    @classmethod
    def from_kwargs(cls, options: Optional["QuboOptions"] = None, **changes: Any) -> "QuboOptions":
        """``options`` (default: all defaults) with the given fields changed; unknown names are a TypeError."""
        base = options if options is not None else cls()
        if not isinstance(base, QuboOptions):
            raise TypeError(f"options must be a QuboOptions, got {type(base).__name__}")
        return base.replace(**changes) if changes else base

    @classmethod
    def preset(cls, name: str, **changes: Any) -> "QuboOptions":
        """A named setting (:data:`PRESETS`), optionally with further fields changed (sampler, seed ...).

        Args:
            name: ``"paper"`` reproduces the paper's formulation exactly.
            **changes: other fields, applied over the preset.

        Raises:
            ValueError: unknown preset name.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; the presets are {sorted(PRESETS)}")
        return cls(**PRESETS[name]).replace(**changes) if changes else cls(**PRESETS[name])

    def replace(self, **changes: Any) -> "QuboOptions":
        """A copy with some fields changed (validated again)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(
                f"unknown explainer option(s) {unknown}; the options are "
                f"{[f.name for f in dataclasses.fields(self)]}"
            )
        return dataclasses.replace(self, **changes)

    @property
    def resolved_sampler(self) -> SamplerSpec:
        """The sampler spec in force: :attr:`sampler`, or the formulation's default."""
        return self.sampler if self.sampler is not None else DEFAULT_SAMPLER[self.formulation]

    @property
    def resolved_sampler_kwargs(self) -> Dict[str, Any]:
        """Registry defaults of the sampler in force, overridden by :attr:`sampler_kwargs`, without ``seed``."""
        merged = {**sampler_defaults(self.resolved_sampler), **self.sampler_kwargs}
        merged.pop("seed", None)
        return merged

    @property
    def resolved_seed(self) -> Optional[int]:
        """The seed in force: one in :attr:`sampler_kwargs` takes precedence over :attr:`seed`."""
        return self.sampler_kwargs.get("seed", self.seed)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-friendly description (a sampler object is named by its class)."""
        sampler = self.resolved_sampler
        return {
            "sampler": sampler if isinstance(sampler, str) else getattr(sampler, "__name__", type(sampler).__name__),
            "sampler_kwargs": self.resolved_sampler_kwargs,
            "formulation": self.formulation,
            "k": self.k,
            "beta": self.beta,
            "seed": self.resolved_seed,
            "max_variables": self.max_variables,
            "importance": self.importance,
            "pair_convention": self.pair_convention,
        }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
