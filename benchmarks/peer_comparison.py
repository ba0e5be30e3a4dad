"""Our Captum-interface CAM baselines side by side with the peer library pytorch-grad-cam (PyPI ``grad-cam``).

EfficientNet-Lite0 at 224², the default target layer (``efficientnet_target_layer``: 1280 head maps, 7×7),
scikit-image photos explained for their predicted class. Per method it reports the largest absolute difference
between the two normalised maps (ours goes through the peer's own post-processing, ``scale_cam_image``, as in
tests/test_peer_parity.py) and the median per-image latency of ``attribute()`` (ours, at layer resolution) and of
the peer's ``cam(...)`` call (which also upsamples to the input size), with 1 torch thread, one warm-up call
and ``--repeats`` timed calls per image (Score-CAM: ``--scorecam-repeats`` calls, the compared call
included, no separate warm-up). Our QuboFeatureMapAttribution (default sampler) is timed alike for
reference. Score-CAM runs one masked forward pass per map (~1280 per image: a minute or more on one thread),
so it uses only the first ``--scorecam-images`` photos.

The peer needs torchvision, which imports only beside torch 2.14.1, so this runs in the peers' venv:
    make test-peers   # once, builds .venv-peers
    .venv-peers/bin/python benchmarks/peer_comparison.py [--images chelsea coffee rocket astronaut]
        [--scorecam-images 1] [--repeats 3] [--scorecam-repeats 1]
Writes benchmarks/results/peer_comparison.md and peer_comparison.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import torch

try:
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
except ImportError as error:  # the main venv has no torchvision, hence no peer
    sys.exit(
        f"pytorch-grad-cam is not importable ({error}): run `make test-peers` once to build .venv-peers, "
        "then run this with .venv-peers/bin/python"
    )

from captum_qubo.attribution import QuboFeatureMapAttribution
from captum_qubo.baselines import LayerGradCamPlusPlus, LayerGradCamWithWeights, LayerScoreCam
from captum_qubo.zoo import efficientnet_target_layer, load_efficientnet_lite0, load_sample_image, preprocess_image

RESULTS = Path(__file__).resolve().parent / "results"
SCORE_CAM_BATCH = 64  # masked images per forward pass, the same for both libraries

# method label -> (our class, our attribute() kwargs, peer class); Score-CAM kwargs reproduce the peer's scoring
# (softmax over channels of the target logits) and its align_corners=True upsampling of the masks.
METHODS = {
    "Grad-CAM": (LayerGradCamWithWeights, {}, GradCAM),
    "Grad-CAM++": (LayerGradCamPlusPlus, {}, GradCAMPlusPlus),
    "Score-CAM": (
        LayerScoreCam,
        {"channel_scores": "logit_softmax", "align_corners": True, "internal_batch_size": SCORE_CAM_BATCH},
        ScoreCAM,
    ),
}


def timed(call: Callable[[], object]):
    """The call's result and its wall time in seconds."""
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def median_seconds(call: Callable[[], object], first_seconds: float, repeats: int, warm_up: bool) -> float:
    """Median wall time per call: ``repeats`` further calls when the first call was a warm-up, else the first
    call plus ``repeats - 1`` further calls."""
    times = [] if warm_up else [first_seconds]
    times += [timed(call)[1] for _ in range(repeats - len(times))]
    return statistics.median(times)


def normalised_like_peer(cam: torch.Tensor, size) -> np.ndarray:
    """Our (N, 1, h, w) map through the peer's post-processing: ReLU, scale_cam_image to input size, again."""
    per_layer = scale_cam_image(np.maximum(cam[:, 0].detach().numpy(), 0), size)
    return scale_cam_image(np.maximum(per_layer, 0))


def compare_method(label, model, layer, batches, targets, repeats, warm_up) -> dict:
    ours_class, kwargs, peer_class = METHODS[label]
    ours = ours_class(model, layer)
    peer = peer_class(model=model, target_layers=[layer])
    peer.batch_size = SCORE_CAM_BATCH
    per_image = {}
    try:
        for name, x in batches.items():
            target = targets[name]

            def run_ours():
                return ours.attribute(x, target=target, relu_attributions=True, **kwargs)

            def run_peer():
                return peer(input_tensor=x, targets=[ClassifierOutputTarget(target)])

            ours_map, ours_first = timed(run_ours)
            peer_map, peer_first = timed(run_peer)
            difference = np.abs(normalised_like_peer(ours_map, (x.shape[-1], x.shape[-2])) - peer_map).max()
            per_image[name] = {
                "max_abs_map_difference": float(difference),
                "ours_s": median_seconds(run_ours, ours_first, repeats, warm_up),
                "peer_s": median_seconds(run_peer, peer_first, repeats, warm_up),
            }
            print(f"  {label} {name}: {per_image[name]}", flush=True)
    finally:
        peer.activations_and_grads.release()  # remove the peer's hooks from the shared model
    return summarise(per_image)


def time_qubo(model, layer, batches, targets, repeats) -> dict:
    explainer = QuboFeatureMapAttribution(model, layer)
    per_image = {}
    for name, x in batches.items():
        call = lambda: explainer.attribute(x, target=targets[name])  # noqa: E731
        per_image[name] = {"ours_s": median_seconds(call, timed(call)[1], repeats, warm_up=True)}
    summary = summarise(per_image)
    summary["sampler"] = explainer.last_selections[0].sampler
    return summary


def summarise(per_image: Dict[str, dict]) -> dict:
    rows = list(per_image.values())
    summary = {"images": list(per_image), "per_image": per_image}
    for key in ("ours_s", "peer_s"):
        if key in rows[0]:
            summary[key] = statistics.median(row[key] for row in rows)
    if "max_abs_map_difference" in rows[0]:
        summary["max_abs_map_difference"] = max(row["max_abs_map_difference"] for row in rows)
    return summary


def markdown(results: Dict[str, dict], setting: str) -> str:
    lines = [
        f"Ours (captum_qubo.baselines, Captum interface) vs pytorch-grad-cam ({setting})",
        "",
        "| method | images | max abs difference of normalised maps | ours ms / image | peer ms / image | peer / ours |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, row in results.items():
        images = ", ".join(row["images"])
        if "peer_s" in row:
            lines.append(
                f"| {label} | {images} | {row['max_abs_map_difference']:.1e} | {row['ours_s'] * 1e3:.0f} | "
                f"{row['peer_s'] * 1e3:.0f} | {row['peer_s'] / row['ours_s']:.2f} |"
            )
        else:
            lines.append(f"| {label} (reference) | {images} | – | {row['ours_s'] * 1e3:.0f} | – | – |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", nargs="+", default=["chelsea", "coffee", "rocket", "astronaut"])
    parser.add_argument(
        "--scorecam-images", type=int, default=1, help="photos for Score-CAM (the first N of --images; 0 skips it)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per image after a warm-up call")
    parser.add_argument(
        "--scorecam-repeats", type=int, default=1, help="timed Score-CAM calls per image, the compared call included"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = load_efficientnet_lite0()
    layer = efficientnet_target_layer(model)
    batches = {name: preprocess_image(load_sample_image(name))[None] for name in args.images}
    with torch.no_grad():
        targets = {name: int(model(x).argmax()) for name, x in batches.items()}
    score_cam_batches = dict(list(batches.items())[: args.scorecam_images])

    start = time.perf_counter()
    results = {}
    for label in METHODS:
        # One Score-CAM call is ~1280 forward passes; the gradient methods before it have warmed the model up.
        if label == "Score-CAM" and score_cam_batches:
            results[label] = compare_method(
                label, model, layer, score_cam_batches, targets, args.scorecam_repeats, warm_up=False
            )
        elif label != "Score-CAM":
            results[label] = compare_method(label, model, layer, batches, targets, args.repeats, warm_up=True)
    qubo = time_qubo(model, layer, batches, targets, args.repeats)
    results[f"QuboFeatureMapAttribution ({qubo['sampler']})"] = qubo
    elapsed = time.perf_counter() - start

    setting = (
        f"EfficientNet-Lite0, 224², default target layer, median over images of the per-image median of "
        f"{args.repeats} calls after a warm-up; Score-CAM (one masked forward pass per map) on the first "
        f"{args.scorecam_images} photo(s) only, {args.scorecam_repeats} timed call(s) each without a separate warm-up; "
        f"torch {torch.__version__}, grad-cam {metadata.version('grad-cam')}, 1 thread, {platform.machine()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end, run {elapsed:.0f} s"
    )
    table = markdown(results, setting)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "peer_comparison.md").write_text(table)
    (RESULTS / "peer_comparison.json").write_text(
        json.dumps({"setting": setting, "targets": targets, "results": results}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
