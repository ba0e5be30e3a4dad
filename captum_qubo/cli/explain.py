"""``captum-qubo explain``: explain many images with any model in one run; ``captum-qubo demo``.

Everything that can be checked without the model is checked first (images exist, options valid, sampler ready,
device usable, outputs free), so a typo fails in a second, not after loading a network. Images are explained one
after the other under a progress bar; one that cannot be read is reported and skipped while the rest finish, and
a summary table closes the run (exit status 0, or 1 when some image failed).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from captum_qubo.cli.errors import CliError
from captum_qubo.cli.qubo_arguments import add_qubo_arguments, qubo_options

DEFAULT_OUT = "captum_qubo_out"
DEFAULT_MODEL = "efficientnet-lite0"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
PREPROCESSING = ("efficientnet", "imagenet", "none")


def add_explain_parser(subparsers: Any) -> None:
    """The ``explain`` subcommand."""
    explain = subparsers.add_parser(
        "explain", help="explain images (files, folders, sample photos); a PNG and a JSON per image",
        description="Explain each image's prediction with the QUBO feature-map selection and Grad-CAM. Writes "
                    "<name>_qubo.png and <name>_qubo.json per image into --out and prints a summary table.",
    )
    explain.add_argument("images", nargs="*", metavar="IMAGE", help="image files, or folders of images")
    explain.add_argument("--sample", action="append", default=[], metavar="NAME",
                         help="a scikit-image photo (chelsea, coffee, rocket, astronaut); repeatable")
    model = explain.add_argument_group("model")
    model.add_argument("--model", default=DEFAULT_MODEL,
                       help=f"a zoo model ({DEFAULT_MODEL}) or package.module:factory returning an nn.Module")
    model.add_argument("--weights", default=None, metavar="FILE", help="a state_dict file to load into --model")
    model.add_argument("--layer", default=None,
                       help="dotted name of the layer to explain (default: the zoo model's; required otherwise)")
    model.add_argument("--preprocessing", choices=PREPROCESSING, default=None,
                       help="input normalisation after resize + centre crop (default: the zoo model's, else imagenet)")
    model.add_argument("--image-size", type=int, default=None, help="crop size (default: the zoo model's, else 224)")
    model.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ... (default cpu)")
    add_qubo_arguments(explain)
    explain.add_argument("--target", type=int, default=None, help="class index to explain (default: the prediction)")
    _add_output_arguments(explain)
    explain.add_argument("--no-progress", action="store_true", help="no progress bar")
    explain.set_defaults(run=run_explain)


def add_demo_parser(subparsers: Any) -> None:
    """The ``demo`` subcommand: the bundled chelsea photo with the default settings (its own files are replaced)."""
    demo = subparsers.add_parser("demo", help="explain the bundled chelsea photo with the default settings")
    demo.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    demo.set_defaults(run=lambda args: run_explain(_parse_explain(["--sample", "chelsea", "--out", args.out,
                                                                   "--overwrite"])))


def _parse_explain(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="captum-qubo")
    add_explain_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["explain", *argv])


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (otherwise refused)")


def run_explain(args: argparse.Namespace) -> int:
    """Check the arguments, load the model, explain every image, print the summary; returns the exit status."""
    sources = image_sources(args.images, args.sample)
    options = qubo_options(args)
    device = _check_device(args.device)
    setup = _model_setup(args)
    outputs = _check_outputs(sources, Path(args.out), args.overwrite)
    from tqdm import tqdm

    from captum_qubo.cli.explain_image import ImageExplainer
    from captum_qubo.model_access import find_layer
    from captum_qubo.zoo.models import load_model

    try:
        loaded = load_model(args.model, args.weights, device, argument="--model")
        layer = find_layer(loaded.model, setup["layer"], argument="--layer")
    except ValueError as error:
        raise CliError(str(error)) from None
    explainer = ImageExplainer(loaded, setup["layer"], layer, options, setup["preprocessing"], setup["image_size"],
                               args.target)
    rows = []
    progress = tqdm(sources, desc="explaining", unit="image", disable=args.no_progress, file=sys.stderr)
    for (name, load), (png, report) in zip(progress, outputs):
        progress.set_postfix_str(name)
        try:
            rows.append(explainer.explain(name, load(), png, report))
        except (ValueError, OSError, RuntimeError) as error:  # report, skip, and let the other images finish
            progress.write(f"captum-qubo explain: skipped {name}: {error}", file=sys.stderr)
            rows.append({"image": name, "error": str(error)})
    progress.close()
    print(summary_table(rows))
    failed = sum("error" in row for row in rows)
    print(f"{len(rows) - failed} of {len(rows)} images explained; outputs in {args.out}")
    return 1 if failed else 0


def image_sources(paths: List[str], samples: List[str]) -> List[Tuple[str, Callable[[], Any]]]:
    """(name, loader) for every image file (folders expanded, sorted) and sample photo; CliError if none or missing."""
    from captum_qubo.zoo.images import SAMPLE_IMAGES, load_sample_image, read_image

    sources = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise CliError(f"IMAGE folder {raw!r} has no image files ({', '.join(IMAGE_SUFFIXES)})")
            sources += [(file.stem, lambda file=file: read_image(file)) for file in files]
        elif path.is_file():
            sources.append((path.stem, lambda path=path: read_image(path)))
        else:
            raise CliError(f"IMAGE {raw!r} not found; pass image files or folders, or --sample chelsea")
    for name in samples:
        if name not in SAMPLE_IMAGES:
            raise CliError(f"--sample {name!r} is not a bundled photo; use one of {', '.join(SAMPLE_IMAGES)}")
        sources.append((name, lambda name=name: load_sample_image(name)))
    if not sources:
        raise CliError("nothing to explain: give image files or folders (IMAGE ...) or --sample NAME")
    names = [name for name, _ in sources]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise CliError(f"several images are named {', '.join(repeated)}; their outputs would collide in --out. "
                       "Rename them or explain them in separate runs")
    return sources


def _check_device(device: str) -> str:
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise CliError(f"--device {device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and (not torch.cuda.is_available()
                                  or (parsed.index or 0) >= torch.cuda.device_count()):
        raise CliError(f"--device {device}: no such CUDA device here ({torch.cuda.device_count()} visible); "
                       "use --device cpu")
    if parsed.type not in ("cpu", "cuda"):
        raise CliError(f"--device {device!r}: only cpu and cuda devices are supported")
    return str(parsed)


def _model_setup(args: argparse.Namespace) -> Dict[str, Any]:
    """Layer, preprocessing and size from the flags and the zoo defaults, checked before the model loads."""
    from captum_qubo.zoo.models import ZOO_MODELS, check_model_spec

    try:
        check_model_spec(args.model, args.weights, argument="--model")
    except ValueError as error:
        raise CliError(str(error)) from None
    zoo = ZOO_MODELS.get(args.model)
    if zoo is None and args.layer is None:
        raise CliError(f"--layer is required with --model {args.model}: name the layer to explain "
                       "(a dotted name from model.named_modules(), e.g. layer4)")
    size = args.image_size if args.image_size is not None else (zoo.image_size if zoo else 224)
    if size < 1:
        raise CliError(f"--image-size must be a positive integer, got {size}")
    if args.target is not None and args.target < 0:
        raise CliError(f"--target must be a class index >= 0, got {args.target}")
    if zoo is not None and zoo.class_names is not None and args.target is not None:
        count = len(zoo.class_names())
        if args.target >= count:
            raise CliError(f"--target {args.target} is not a class index of {args.model}; use 0..{count - 1}")
    return {"layer": args.layer or zoo.layer, "image_size": size,
            "preprocessing": args.preprocessing or (zoo.preprocessing if zoo else "imagenet")}


def _check_outputs(sources: List[Tuple[str, Any]], out: Path, overwrite: bool) -> List[Tuple[Path, Path]]:
    outputs = [(out / f"{name}_qubo.png", out / f"{name}_qubo.json") for name, _ in sources]
    existing = [str(path) for pair in outputs for path in pair if path.exists()]
    if existing and not overwrite:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise CliError(f"{shown} already exist; pass --overwrite to replace them or choose another --out")
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {str(out)!r} is a file, not a folder")
    return outputs


def summary_table(rows: List[Dict[str, Any]]) -> str:
    """One line per image: prediction, explained target, maps selected of d, energy, solve time, or the error."""
    header = ("image", "prediction", "p", "target", "maps", "energy", "solve s")
    lines = []
    for row in rows:
        if "error" in row:
            lines.append((row["image"], "FAILED: " + row["error"][:70], "", "", "", "", ""))
        else:
            lines.append((row["image"], row["predicted"], f"{row['probability']:.3f}", row["target"],
                          f"{row['num_selected']}/{row['num_variables']}", f"{row['energy']:.4f}",
                          f"{row['solve_seconds']:.2f}"))
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    render = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, lines)])
