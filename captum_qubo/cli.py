"""Command line: ``captum-qubo explain`` and ``captum-qubo demo``.

``explain`` classifies a photo with EfficientNet-Lite0, explains the prediction (or ``--target``)
with :class:`~captum_qubo.attribution.QuboFeatureMapAttribution`, and writes ``<name>_qubo.png``
(input | QUBO explanation | Grad-CAM) and ``<name>_qubo.json`` (selection, energy, d, sampler,
sampler info, timings, predicted class) into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from captum.attr import LayerAttribution

from captum_qubo.analyses.command import add_analyze_parser, run_analyze
from captum_qubo.attribution.options import DEFAULT_SAMPLER
from captum_qubo.attribution.qubo_attribution import QuboFeatureMapAttribution
from captum_qubo.formulation.qubo import FORMULATIONS
from captum_qubo.solvers.registry import available_samplers, check_sampler_ready
from captum_qubo.attribution.selection import json_safe
from captum_qubo.visualization import explanation_figure, grad_cam_map, save_explanation_figure

MODELS = ("efficientnet-lite0",)
DEFAULT_OUT = "captum_qubo_out"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="captum-qubo",
        description="Explain CNN predictions by the feature maps a QUBO selects (solved by annealers).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    explain = commands.add_parser("explain", help="explain one image; writes a PNG and a JSON")
    source = explain.add_mutually_exclusive_group(required=True)
    source.add_argument("image", nargs="?", help="path to an RGB image file (PNG, JPEG ...)")
    source.add_argument("--sample", help="a scikit-image photo instead of a file: chelsea, coffee, rocket ...")
    _add_method_options(explain)

    demo = commands.add_parser("demo", help="explain the bundled chelsea photo with the default settings")
    demo.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    add_analyze_parser(commands)
    return parser


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODELS, default=MODELS[0], help="classifier to explain")
    parser.add_argument(
        "--sampler",
        default=None,
        help=f"annealer backend, one of {', '.join(available_samplers())} (default: sa, or tabu for k_hot)"
    )
    parser.add_argument(
        "--sampler-kwargs",
        type=json.loads,
        default=None,
        metavar="JSON",
        help='keyword arguments for the sampler as JSON, e.g. \'{"num_reads": 20}\'',
    )
    parser.add_argument("--formulation", choices=FORMULATIONS, default="unconstrained")
    parser.add_argument("--k", type=int, default=None, help="number of maps for --formulation k_hot")
    parser.add_argument("--beta", type=float, default=0.7, help="reward/redundancy trade-off β (default 0.7)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    parser.add_argument(
        "--max-variables", type=int, default=None, help="keep only the most important maps as variables"
    )
    parser.add_argument("--target", type=int, default=None, help="ImageNet class index (default: the prediction)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``captum-qubo`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "analyze":
        return run_analyze(args)
    if args.command == "demo":
        args = build_parser().parse_args(["explain", "--sample", "chelsea", "--out", args.out])
    try:
        png, report = explain(args)
    except (ValueError, TypeError, OSError) as error:
        print(f"captum-qubo: error: {error}", file=sys.stderr)
        return 2
    predicted = report["predicted"]
    print(f"{report['image']}: {predicted['class']} ({predicted['probability']:.1%}); explained target "
          f"{report['target']['class']} with {report['selection']['num_selected']} of "
          f"{report['selection']['num_variables']} maps")
    print(f"picture: {png}")
    print(f"details: {Path(png).with_suffix('.json')}")
    return 0


def explain(args: argparse.Namespace) -> tuple:
    """Run one explanation from parsed arguments; returns (PNG path, the JSON report dict)."""
    from captum_qubo.zoo import (
        efficientnet_target_layer,
        imagenet_class_names,
        load_efficientnet_lite0,
        load_sample_image,
        preprocess_image,
    )

    classes = imagenet_class_names()
    if args.target is not None and not 0 <= args.target < len(classes):
        raise ValueError(f"--target {args.target} is not an ImageNet class index; use 0..{len(classes) - 1}")
    args.sampler = args.sampler or DEFAULT_SAMPLER[args.formulation]
    check_sampler_ready(args.sampler)
    name, image = (args.sample, load_sample_image(args.sample)) if args.sample else _read_image(args.image)
    inputs = preprocess_image(image)[None]
    model = load_efficientnet_lite0()
    layer = efficientnet_target_layer(model)
    explainer = QuboFeatureMapAttribution(
        model,
        layer,
        sampler=args.sampler,
        sampler_kwargs=args.sampler_kwargs,
        formulation=args.formulation,
        k=args.k,
        beta=args.beta,
        seed=args.seed,
        max_variables=args.max_variables,
    )
    with torch.no_grad():
        probabilities = model(inputs).softmax(dim=1)[0]
    predicted = int(probabilities.argmax())
    target = predicted if args.target is None else args.target
    qubo_map = explainer.attribute(inputs, target=target)
    selection = explainer.last_selections[0]
    qubo_upsampled = LayerAttribution.interpolate(qubo_map, tuple(inputs.shape[-2:]), "bilinear")
    grad_cam = grad_cam_map(model, layer, inputs, target)

    shown = (inputs[0].permute(1, 2, 0).numpy() * 0.5 + 0.5).clip(0.0, 1.0)
    title = f"{name}: predicted {classes[predicted]} ({float(probabilities[predicted]):.1%})"
    if target != predicted:
        title += f"; explaining {classes[target]}"
    figure = explanation_figure(
        shown, qubo_upsampled[0], grad_cam[0], title, _qubo_caption(args.sampler, selection)
    )
    out = Path(args.out)
    png = save_explanation_figure(figure, out / f"{name}_qubo.png")
    report = _report(args, explainer, name, classes, probabilities, predicted, target, tuple(qubo_map.shape[2:]))
    json_path = out / f"{name}_qubo.json"
    json_path.write_text(json.dumps(report, indent=2))
    return png, report


def _report(args, explainer, name, classes, probabilities, predicted, target, map_shape) -> Dict[str, Any]:
    selection = explainer.last_selections[0]
    return {
        "image": name,
        "model": args.model,
        "layer": {"name": "_bn1.activation", "map_shape": list(map_shape), "num_maps": int(selection.importance.size)},
        "predicted": {"index": predicted, "class": classes[predicted], "probability": float(probabilities[predicted])},
        "target": {"index": target, "class": classes[target], "probability": float(probabilities[target])},
        "settings": json_safe(
            {
                "sampler": args.sampler,
                "sampler_kwargs": explainer.sampler_kwargs,
                "formulation": args.formulation,
                "k": args.k,
                "beta": args.beta,
                "seed": args.seed,
                "max_variables": args.max_variables,
            }
        ),
        "selection": selection.to_dict(),
        "energies": {
            "selection": selection.energy,
            "grad_cam_top_k": grad_cam_top_k_energy(selection),
        },
    }


def grad_cam_top_k_energy(selection) -> Optional[float]:
    """QUBO energy of Grad-CAM's own choice of the same number of maps (largest α), for comparison.

    None when nothing was selected. The QUBO's selection has at most this energy when the solver
    found the minimum, since the top-K state is one of the states it minimises over.
    """
    qubo, size = selection.qubo, selection.num_selected
    if size == 0:
        return None
    state = np.zeros(qubo.num_variables)
    state[np.argsort(-qubo.h, kind="stable")[:size]] = 1.0
    return float(qubo.energies(state))


def _qubo_caption(sampler: str, selection) -> str:
    channels = ", ".join(str(int(c)) for c in selection.channels[:8])
    more = ", ..." if selection.num_selected > 8 else ""
    return f"QUBO ({sampler}): {selection.num_selected} of {selection.num_variables} maps\n[{channels}{more}]"


def _read_image(path: str) -> tuple:
    """(file stem, RGB uint8 array) of an image file; a clear error for a missing or non-RGB file."""
    from PIL import Image

    file = Path(path)
    if not file.is_file():
        raise ValueError(f"image file {path!r} not found; pass an existing file or use --sample chelsea")
    with Image.open(file) as opened:
        return file.stem, np.array(opened.convert("RGB"))
