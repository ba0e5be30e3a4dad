"""``captum-qubo analyze``: QIXAI's analyses of a bundled model, written as pictures, markdown and JSON.

The parser is plain argparse (no torch import), so ``captum-qubo --help`` stays fast; torch and the models
are imported only when the command runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

MODEL_CHOICES = ("efficientnet-lite0", "digits")
DEFAULT_OUT = "captum_qubo_analyses"


def _names(text: str) -> list:
    return [name.strip() for name in text.split(",") if name.strip()]


def _pair(text: str) -> tuple:
    names = _names(text)
    if len(names) != 2:
        raise argparse.ArgumentTypeError(f"expected two layer names separated by a comma, got {text!r}")
    return tuple(names)


def add_analyze_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``analyze`` command to ``subparsers`` (from ``parser.add_subparsers()``); returns its parser."""
    parser = subparsers.add_parser(
        "analyze",
        help="activation spectra, layer similarity, feature-map MI and IG of a model; writes PNGs, markdown, JSON",
        description="QIXAI's analyses done properly: PCA spectra and von Neumann entropy per layer, linear CKA "
                    "and QIXAI's cosine between layers, all-pairs KSG mutual information between feature maps "
                    "(compared with the QUBO's |cos| redundancy), Integrated Gradients with its completeness check.",
    )
    parser.add_argument("--model", choices=MODEL_CHOICES, default=MODEL_CHOICES[0], help="model to analyse")
    parser.add_argument("--layers", type=_names, default=None, metavar="A,B,...",
                        help="comma-separated dotted layer names (default: a layer per stage, then the head)")
    parser.add_argument("--images", type=int, default=None, metavar="N",
                        help="number of inputs: bundled photos and their flips/crops for efficientnet-lite0 "
                             "(default 64, at most 128), the digits test split for digits (default 540)")
    parser.add_argument("--mi-layers", type=_names, default=None, metavar="A,B",
                        help="layers whose feature maps get all-pairs MI (default: the last layer)")
    parser.add_argument("--mi-between", type=_pair, action="append", default=None, metavar="A,B",
                        help="a layer pair for between-layer MI (repeatable; default: the model's own pair)")
    parser.add_argument("--ig-images", type=int, default=4, metavar="N", help="inputs explained by IG (0: none)")
    parser.add_argument("--ig-steps", type=int, default=64, metavar="N", help="IG integration steps (default 64)")
    parser.add_argument("--null-maps", type=int, default=300, metavar="N",
                        help="maps in the permutation null that within-layer MI is judged against (0: none)")
    parser.add_argument("--k", type=int, default=3, help="neighbours of the KSG estimator (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the MI tie-breaking jitter (default 0)")
    parser.add_argument("--memory-mb", type=float, default=256.0, help="bound on one MI block's tensors (MiB)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.set_defaults(handler=run_analyze)
    parser.set_defaults(run=run_analyze)
    return parser


def run_analyze(args: argparse.Namespace) -> int:
    """Run ``analyze`` from parsed arguments; prints where the report went; returns the exit status."""
    try:
        report, out = _analyze(args)
    except (ValueError, TypeError, OSError) as error:
        print(f"captum-qubo analyze: error: {error}", file=sys.stderr)
        return 2
    head = list(report.layers)[-1]
    spectrum = report.layers[head]["spectrum"]
    print(f"{report.model}, {report.num_inputs} inputs: {head} needs {spectrum['components']['90%']} of "
          f"{spectrum['num_features']} components for 90% of its variance (effective rank "
          f"{spectrum['effective_rank']:.1f})")
    pair = report.similarity["most_similar"][0] if report.similarity["most_similar"] else None
    if pair:
        print(f"most similar layers (CKA): {pair['a']} and {pair['b']} ({pair['similarity']:.3f})")
    print(f"report: {out / 'report.md'}")
    print(f"data:   {out / 'report.json'}")
    return 0


def _analyze(args: argparse.Namespace):
    import torch

    from captum_qubo.analyses.activations import resolve_layers
    from captum_qubo.analyses.inputs import MODELS, display_images, input_groups
    from captum_qubo.analyses.pipeline import run_analyses

    load, default_layers, build_inputs, default_count, default_pair = MODELS[args.model]
    layers = args.layers or list(default_layers)
    mi_layers = args.mi_layers or [layers[-1]]
    between = args.mi_between
    if between is None:
        between = [default_pair] if args.layers is None else ([tuple(layers[-2:])] if len(layers) > 1 else [])
    unknown = sorted(({name for pair in between for name in pair} | set(mi_layers)) - set(layers))
    if unknown:
        raise ValueError(f"--mi-layers/--mi-between name layers not in --layers: {', '.join(unknown)}; "
                         "add them to --layers")
    if args.ig_images < 0:
        raise ValueError(f"--ig-images must be >= 0, got {args.ig_images}")
    inputs, names = build_inputs(args.images if args.images is not None else default_count)
    torch.manual_seed(args.seed)
    model = load()
    resolve_layers(model, layers)  # a misspelt layer fails here, before any work, with the closest names
    out = Path(args.out)
    report, _ = run_analyses(model, layers, inputs, args.model, out, pictures=display_images(args.model, inputs),
                             mi_layers=mi_layers, mi_between=between, ig_inputs=min(args.ig_images, len(inputs)),
                             ig_steps=args.ig_steps, null_columns=args.null_maps,
                             null_groups=input_groups(args.model, names),
                             k=args.k, seed=args.seed, memory_mb=args.memory_mb, progress=not args.no_progress)
    return report, out
