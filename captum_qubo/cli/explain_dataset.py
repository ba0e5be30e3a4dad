"""``captum-qubo explain-dataset``: a whole dataset through Lightning's ``Trainer.predict``, then its report.

Sharded (every rank writes its own Parquet + npz shards), resumable (a rerun into the same ``--out`` explains only
what is missing; another configuration is refused) and distributed by Lightning's own flags: ``--devices``,
``--num-nodes``, ``--strategy``, ``--accelerator``. Under ``--strategy ddp`` Lightning starts the other ranks by
re-running this very command, so only rank zero prints the throughput and writes the report.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from captum_qubo.cli.errors import CliError
from captum_qubo.cli.explain import PREPROCESSING
from captum_qubo.cli.qubo_arguments import add_qubo_arguments, qubo_options

DATASETS = ("digits",)
DEFAULT_METHODS = "qubo,grad_cam"


def add_explain_dataset_parser(subparsers: Any) -> None:
    """The ``explain-dataset`` subcommand."""
    parser = subparsers.add_parser(
        "explain-dataset", help="explain a whole dataset on Lightning (sharded, resumable, multi-process) + report",
        description="Explain every image of a folder or bundled dataset with the QUBO selection and CAM baselines "
                    "through Lightning's Trainer.predict, writing Parquet + npz shards per rank into --out, then a "
                    "dataset report (class-overlap matrix, selection frequencies, Average Drop, Increase in "
                    "Confidence). Rerunning with the same --out resumes.",
    )
    data = parser.add_argument_group("data (one of)").add_mutually_exclusive_group(required=True)
    data.add_argument("--images", metavar="DIR", help="a folder of images (class sub-folders give labels)")
    data.add_argument("--dataset", choices=DATASETS, help="a dataset that ships in a package (digits: scikit-learn)")
    parser.add_argument("--limit", type=int, default=None, help="--dataset only: the first N images")
    model = parser.add_argument_group("model")
    model.add_argument("--model", default=None,
                       help="a zoo model (digits, efficientnet-lite0) or package.module:factory; default: digits for "
                            "--dataset digits, efficientnet-lite0 for --images")
    model.add_argument("--weights", default=None, metavar="FILE", help="a state_dict file to load into --model")
    model.add_argument("--layer", default=None, help="dotted name of the layer (default: the zoo model's)")
    model.add_argument("--preprocessing", choices=PREPROCESSING, default=None,
                       help="--images normalisation (default: the zoo model's, else imagenet)")
    model.add_argument("--image-size", type=int, default=None, help="--images crop size (default: the zoo model's)")
    explain = parser.add_argument_group("explanations")
    explain.add_argument("--methods", default=DEFAULT_METHODS,
                         help="comma-separated: qubo, grad_cam, grad_cam_plus_plus, score_cam "
                              f"(default {DEFAULT_METHODS})")
    explain.add_argument("--target", choices=("predicted", "label"), default="predicted",
                         help="explain the predicted class (default) or the true label")
    explain.add_argument("--cam-k", type=int, default=5, help="top-K of the CAM baselines without qubo (default 5)")
    add_qubo_arguments(parser)
    engine = parser.add_argument_group("Lightning (as for lightning.pytorch.Trainer)")
    engine.add_argument("--accelerator", default="cpu", help="cpu (default), gpu, auto")
    engine.add_argument("--devices", default="1", help="devices per node: a number or auto (default 1)")
    engine.add_argument("--num-nodes", type=int, default=1, help="machines (default 1)")
    engine.add_argument("--strategy", default="auto", help="auto (default), ddp, ddp_spawn ...")
    engine.add_argument("--batch-size", type=int, default=32, help="samples per batch and per shard (default 32)")
    engine.add_argument("--num-workers", type=int, default=0, help="DataLoader workers per rank (default 0)")
    parser.add_argument("--out", required=True, help="output folder (shards, manifest, report); reruns resume it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-report", action="store_true", help="only write shards and manifest")
    parser.set_defaults(run=run_explain_dataset)


def _check_arguments(args: argparse.Namespace) -> dict:
    """Everything that can be checked before the model loads; returns the resolved model settings."""
    from captum_qubo.integrations.dataset.methods import METHODS
    from captum_qubo.zoo.models import ZOO_MODELS, check_model_spec

    spec = args.model or ("digits" if args.dataset == "digits" else "efficientnet-lite0")
    try:
        check_model_spec(spec, args.weights, argument="--model")
    except ValueError as error:
        raise CliError(str(error)) from None
    zoo = ZOO_MODELS.get(spec)
    if zoo is None and args.layer is None:
        raise CliError(f"--layer is required with --model {spec}: name the layer to explain "
                       "(a dotted name from model.named_modules(), e.g. layer4)")
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown or len(set(methods)) != len(methods):
        raise CliError(f"--methods {args.methods!r}: give distinct names from {', '.join(METHODS)}")
    if args.limit is not None and (args.images or args.limit < 1):
        raise CliError("--limit takes a positive number and only applies to --dataset"
                       if args.images is None else "--limit only applies to --dataset; for --images use a folder")
    if args.images is not None and not Path(args.images).is_dir():
        raise CliError(f"--images {args.images!r} is not a folder")
    for flag, value in (("--batch-size", args.batch_size), ("--num-nodes", args.num_nodes), ("--cam-k", args.cam_k)):
        if value < 1:
            raise CliError(f"{flag} must be a positive integer, got {value}")
    if args.num_workers < 0:
        raise CliError(f"--num-workers must be >= 0, got {args.num_workers}")
    devices = args.devices if args.devices == "auto" else _positive(args.devices)
    size = args.image_size or (zoo.image_size if zoo else 224)
    return {"spec": spec, "layer": args.layer or zoo.layer, "methods": methods, "devices": devices,
            "image_size": size, "channels": zoo.input_channels if zoo else 3,
            "preprocessing": args.preprocessing or (zoo.preprocessing if zoo else "imagenet")}


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise CliError(f"--devices must be a positive number or auto, got {text!r}")
    return int(text)


def run_explain_dataset(args: argparse.Namespace) -> int:
    """Check, load, explain what is missing from --out, print the throughput and report; returns the exit status."""
    setup = _check_arguments(args)
    options = qubo_options(args)
    from captum_qubo.integrations.dataset import (
        DigitsSource,
        ExplainSettings,
        ImageFolderSource,
        OutputFolderMismatch,
        explain_dataset,
    )
    from captum_qubo.integrations.dataset.report import dataset_report, report_markdown, write_report
    from captum_qubo.model_access import find_layer
    from captum_qubo.zoo.models import load_model

    try:
        source = (DigitsSource(args.limit) if args.dataset == "digits" else
                  ImageFolderSource(Path(args.images), setup["image_size"], setup["preprocessing"], setup["channels"]))
        loaded = load_model(setup["spec"], args.weights, "cpu", argument="--model")
        find_layer(loaded.model, setup["layer"], argument="--layer")
        settings = ExplainSettings(layer=setup["layer"], methods=setup["methods"], options=options,
                                   target=args.target, cam_k=args.cam_k)
        manifest = explain_dataset(loaded.model, source, settings, Path(args.out), devices=setup["devices"],
                                   num_nodes=args.num_nodes, strategy=args.strategy, accelerator=args.accelerator,
                                   batch_size=args.batch_size, num_workers=args.num_workers,
                                   progress=not args.no_progress)
    except OutputFolderMismatch as error:
        raise CliError(f"--out: {error}") from None
    except ValueError as error:
        raise CliError(str(error)) from None
    if manifest is None:  # another rank of strategy="ddp": rank zero reports
        return 0
    print(throughput_line(manifest))
    for skipped in manifest["skipped"]:
        print(f"captum-qubo explain-dataset: skipped {skipped['sample_id']}: {skipped['error']}", file=sys.stderr)
    if not args.no_report and manifest["num_explained"]:
        report = dataset_report(Path(args.out), loaded.class_names)
        paths = write_report(Path(args.out), report)
        print(report_markdown(report))
        print(f"report: {paths['md']}, {paths['json']}, {paths['png']}")
    return 1 if manifest["skipped"] else 0


def throughput_line(manifest: dict) -> str:
    """``explained 150 new samples in 9.8 s (15.3 images/s, 2 processes); 200 of 200 done`` (or nothing to do)."""
    run = manifest["runs"][-1] if manifest.get("runs") else {}
    done = f"{manifest['num_done']} of {manifest['num_samples']} done"
    if not run.get("samples_this_run") or not run.get("seconds"):
        return f"nothing left to explain; {done}"
    rate = run["samples_this_run"] / run["seconds"]
    return (f"explained {run['samples_this_run']} new samples in {run['seconds']:.1f} s ({rate:.1f} images/s, "
            f"{run['world_size']} process{'es' if run['world_size'] > 1 else ''}); {done}")
