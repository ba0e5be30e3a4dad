"""The explainer's settings as command-line flags, turned into one validated :class:`QuboOptions`.

The flags mirror the :class:`~captum_qubo.attribution.options.QuboOptions` fields one to one (``--max-variables``
is ``max_variables``), and the validation is QuboOptions' own; its messages are reworded with the flag names.
"""
from __future__ import annotations

import argparse
import json
import re
from typing import Any

from captum_qubo.cli.errors import CliError

FIELDS = ("sampler", "sampler_kwargs", "formulation", "k", "beta", "seed", "max_variables", "importance",
          "pair_convention")
# Spelled out here so that building the parser (``--help``) imports no torch; a test checks them against the
# library's own (QuboOptions' defaults, IMPORTANCES, PAIR_CONVENTIONS).
DEFAULT_IMPORTANCE, DEFAULT_BETA = "contribution", 0.9
IMPORTANCE_CHOICES = ("gradient", "contribution", "gradient_x_activation", "contrastive")
PAIR_CONVENTION_CHOICES = ("half", "full_zero_diagonal", "full_unit_diagonal")


def add_qubo_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--sampler --sampler-kwargs --formulation --k --beta --seed --max-variables --importance
    --pair-convention`` (defaults: QuboOptions'; an omitted flag leaves the field at its default)."""
    group = parser.add_argument_group("explainer (QuboOptions)")
    group.add_argument("--sampler", default=None,
                       help="annealer backend: sa, tabu, exact, qpu ... (default: sa, or tabu for k_hot)")
    group.add_argument("--sampler-kwargs", type=_json_object, default=None, metavar="JSON",
                       help='keyword arguments for the sampler as JSON, e.g. \'{"num_reads": 20}\'')
    group.add_argument("--formulation", default="unconstrained", help="unconstrained (default) or k_hot")
    group.add_argument("--k", type=int, default=None, help="number of maps for --formulation k_hot")
    group.add_argument("--beta", type=float, default=None,
                       help=f"reward/redundancy trade-off β in [0, 1] (default {DEFAULT_BETA}; the paper's is 0.7)")
    group.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    group.add_argument("--max-variables", type=int, default=None,
                       help="keep only the most important maps as variables (for size-limited samplers)")
    group.add_argument("--importance", default=None, choices=IMPORTANCE_CHOICES,
                       help=f"what the QUBO rewards (default {DEFAULT_IMPORTANCE}; the paper's is gradient)")
    group.add_argument("--pair-convention", default=None, choices=PAIR_CONVENTION_CHOICES,
                       help="how the redundancy J enters the energy (default half)")


def qubo_options(args: argparse.Namespace) -> Any:
    """The :class:`QuboOptions` the flags describe; a :class:`CliError` in flag names when they are invalid."""
    from captum_qubo.attribution.options import QuboOptions
    from captum_qubo.solvers.registry import check_sampler_ready

    try:
        given = {field: getattr(args, field, None) for field in FIELDS}
        options = QuboOptions(**{field: value for field, value in given.items()
                                 if value is not None or field in ("sampler", "sampler_kwargs", "k",
                                                                   "max_variables")})
        check_sampler_ready(options.resolved_sampler)
    except (ValueError, TypeError) as error:
        raise CliError(flag_names(str(error))) from None
    return options


def flag_names(message: str) -> str:
    """Reword a QuboOptions message with flag names: ``max_variables=3`` → ``--max-variables=3``."""
    pattern = r"(?<![\w-])(" + "|".join(sorted(FIELDS, key=len, reverse=True)) + r")(?=[\s=,;.)]|$)"
    return re.sub(pattern, lambda match: "--" + match.group(1).replace("_", "-"), message)


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object such as '{{\"num_reads\": 20}}', got {text!r}")
    return value
