"""Smoke run of benchmarks/compare_methods.py at a tiny size: report structure, and numbers that agree with
direct calls (Captum's LayerGradCam, the metrics, and a numpy Bhattacharyya matrix written here)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam

# The benchmark lives outside the package; make the repository root importable under any pytest invocation.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import compare_methods  # noqa: E402
from benchmarks._digits_experiment import run_digits_model, select_correct_per_class  # noqa: E402
from benchmarks._imagenet_experiment import PHOTOS, load_photo, run_imagenet  # noqa: E402
from benchmarks._report import compare, markdown_report, readme_results_block  # noqa: E402
from captum_qubo.attribution import QuboFeatureMapAttribution  # noqa: E402
from captum_qubo.attribution.options import QuboOptions  # noqa: E402
from captum_qubo.metrics import AverageDrop, DeletionAUC, GridPointingGame, build_grid_composites  # noqa: E402
from captum_qubo.zoo import load_digits_split, preprocess_image  # noqa: E402

PER_CLASS = 2
TILE_SIZE = 64  # pointing-game composites of 128² keep the smoke run short


def minmax_saliency(layer_map, size):
    """Grad-CAM map as the benchmark should score it: ReLU, bilinear to input size, min-max per image."""
    upsampled = LayerAttribution.interpolate(torch.relu(layer_map), size, "bilinear")
    flat = upsampled.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    return ((flat - low[:, None]) / (high - low)[:, None]).view_as(upsampled)


def bhattacharyya_matrix(selected: np.ndarray, classes: np.ndarray, num_classes: int = 10) -> np.ndarray:
    counts = np.stack([selected[classes == c].sum(0) for c in range(num_classes)]).astype(float)
    root = np.sqrt(counts / counts.sum(1, keepdims=True))
    return root @ root.T


@pytest.fixture(scope="module")
def digits_run(digits_model, tmp_path_factory):
    return run_digits_model(16, PER_CLASS, seed=0, figure_dir=tmp_path_factory.mktemp("figures"))


@pytest.fixture(scope="module")
def digits_images(digits_model):
    _, _, x_test, y_test = load_digits_split(seed=0)
    return select_correct_per_class(digits_model, x_test, y_test, PER_CLASS)


def test_digits_structure_and_qubo_selections(digits_run, digits_model, digits_images):
    images, labels = digits_images
    assert digits_run["num_images"] == 10 * PER_CLASS and Path(digits_run["figure"]).is_file()
    # The library default ("QUBO", "QUBO k-hot") and, since the default is not the paper's, the paper preset with
    # Grad-CAM top-K at its own K.
    assert set(digits_run["methods"]) == {"QUBO", "QUBO k-hot", "Grad-CAM", "Grad-CAM++", "Score-CAM", "Grad-CAM top-K",
                                          "QUBO paper preset", "Grad-CAM top-K (paper preset's K)"}
    paper = QuboFeatureMapAttribution(digits_model, digits_model.reduce, options=QuboOptions.preset("paper"),
                                      sampler="exact", seed=0)
    paper.attribute(images, target=labels)
    paper_selected = np.zeros((len(images), 16), dtype=bool)
    for row, selection in enumerate(paper.last_selections):
        paper_selected[row, selection.channels] = True
    np.testing.assert_allclose(digits_run["disentanglement"]["QUBO paper preset"]["matrix"],
                               bhattacharyya_matrix(paper_selected, labels.numpy()), atol=1e-9)
    assert digits_run["methods"]["QUBO paper preset"]["mean_selection_size"] == pytest.approx(
        paper_selected.sum(1).mean())
    # The QUBO's selections, recomputed directly and disentangled with a numpy BC matrix.
    explainer = QuboFeatureMapAttribution(digits_model, digits_model.reduce, sampler="exact", seed=0)
    explainer.attribute(images, target=labels)
    sizes = [s.num_selected for s in explainer.last_selections]
    assert digits_run["qubo_selection_sizes"] == sizes
    selected = np.zeros((len(images), 16), dtype=bool)
    for row, selection in enumerate(explainer.last_selections):
        selected[row, selection.channels] = True
    expected = bhattacharyya_matrix(selected, labels.numpy())
    np.testing.assert_allclose(digits_run["disentanglement"]["QUBO"]["matrix"], expected, atol=1e-9)
    off_diagonal = expected[~np.eye(10, dtype=bool)]
    assert digits_run["disentanglement"]["QUBO"]["mean_off_diagonal"] == pytest.approx(off_diagonal.mean())
    # k-hot: K is the rounded median size, and every image then selects exactly min(K, d) maps.
    assert digits_run["k_hot_k"] == max(1, int(np.floor(np.median(sizes) + 0.5)))
    assert digits_run["methods"]["QUBO k-hot"]["mean_selection_size"] == pytest.approx(
        np.minimum(digits_run["k_hot_k"], digits_run["qubo_num_variables"]).mean()
    )


def test_digits_baseline_numbers_match_direct_calls(digits_run, digits_model, digits_images):
    images, labels = digits_images
    layer_map = LayerGradCam(digits_model, digits_model.reduce).attribute(images, target=labels)
    saliency = minmax_saliency(layer_map, images.shape[2:])
    with torch.no_grad():
        base = torch.softmax(digits_model(images), 1).gather(1, labels[:, None]).squeeze(1)
        masked = torch.softmax(digits_model(images * saliency), 1).gather(1, labels[:, None]).squeeze(1)
    by_hand = 100 * ((base - masked).clamp(min=0) / base).mean().item()
    assert digits_run["methods"]["Grad-CAM"]["average_drop"] == pytest.approx(by_hand, rel=1e-4)
    assert digits_run["methods"]["Grad-CAM"]["increase_in_confidence"] == pytest.approx(
        100 * (masked > base).double().mean().item()
    )
    # Grad-CAM's selection: its K largest mean gradients (K = the QUBO's size), mean gradient = head weights.
    alpha = digits_model.head.weight.detach().view(10, 16, 64).mean(2)[labels]
    order = torch.argsort(alpha, dim=1, descending=True, stable=True).numpy()
    sizes = np.asarray(digits_run["qubo_selection_sizes"])
    selected = np.arange(16)[None, :] < sizes[:, None]
    top_k = np.zeros_like(selected)
    np.put_along_axis(top_k, order, selected, axis=1)
    np.testing.assert_allclose(
        digits_run["disentanglement"]["Grad-CAM top-K"]["matrix"], bhattacharyya_matrix(top_k, labels.numpy()),
        atol=1e-6,
    )


@pytest.fixture(scope="module")
def imagenet_run(efficientnet):
    return run_imagenet(photos=PHOTOS[:1], num_composites=1, deletion_steps=2, scorecam_images=0,
                        sa_kwargs={"num_reads": 1, "num_sweeps": 100}, tile_size=TILE_SIZE, warm_up=False)


def test_imagenet_numbers_match_direct_metric_calls(imagenet_run, efficientnet, efficientnet_layer, chelsea):
    assert imagenet_run["photos"][0]["name"] == "chelsea" and imagenet_run["photos"][0]["predicted"] in ("tiger cat", "Egyptian cat", "tabby")
    target = torch.tensor([imagenet_run["photos"][0]["class_index"]])
    saliency = minmax_saliency(LayerGradCam(efficientnet, efficientnet_layer).attribute(chelsea, target=target),
                               chelsea.shape[2:])
    summary = imagenet_run["summary"]["Grad-CAM"]
    drop, deletion = AverageDrop(), DeletionAUC(steps=2)
    with torch.no_grad():
        base = torch.softmax(efficientnet(chelsea), 1)[0, target]
        masked = torch.softmax(efficientnet(chelsea * saliency), 1)[0, target]
    drop.update(base, masked)
    deletion.update(efficientnet, chelsea, saliency, target)
    assert summary["average_drop"] == pytest.approx(drop.compute().item(), rel=1e-3, abs=1e-3)
    assert summary["deletion_auc"] == pytest.approx(deletion.compute().item(), rel=1e-3, abs=1e-4)

    # Pointing game on the same composite the benchmark built (same seed), Grad-CAM explained directly.
    tiles = torch.stack([preprocess_image(load_photo(*photo), TILE_SIZE) for photo in PHOTOS])
    composites = build_grid_composites(efficientnet, tiles, 1, (2, 2), 0.5, seed=0)
    inputs, targets, cells = composites.expand_per_cell()
    grid_map = LayerGradCam(efficientnet, efficientnet_layer).attribute(inputs, target=targets)
    pointing = GridPointingGame((2, 2))
    pointing.update(minmax_saliency(grid_map, inputs.shape[2:]), cells)
    assert summary["num_pointing"] == 4
    assert summary["pointing_game"] == pytest.approx(pointing.compute().item(), abs=1e-3)
    assert imagenet_run["summary"]["Score-CAM"]["num_images"] == 0  # not run at scorecam_images=0
    qubo = imagenet_run["summary"]["QUBO"]
    assert 1 <= qubo["mean_selection_sizes"] <= qubo["mean_num_variables"] <= 1280


def test_report_is_direction_aware_and_complete(digits_run, imagenet_run, tmp_path):
    assert compare(0.1, 0.2, higher_is_better=False) == "win"
    assert compare(0.1, 0.2, higher_is_better=True) == "loss"
    assert compare(0.3, 0.3, higher_is_better=True) == "tie"
    results = {
        "config": {},
        "digits": {"per_class": PER_CLASS, "seed": 0, "beta": 0.7, "sampler": "exact", "runs": [digits_run]},
        "imagenet": imagenet_run,
        "meta": {"command": "python -m benchmarks.compare_methods --quick", "finished_utc": "now", "wall_seconds": 1.0,
                 "seed": 0, "num_threads": 1, "machine": "test"},
    }
    report = markdown_report(results)
    for method in ("QUBO", "QUBO k-hot", "Grad-CAM", "Grad-CAM++", "Score-CAM", "Grad-CAM top-K", "QUBO paper preset",
                   "Grad-CAM top-K (paper preset's K)"):
        assert f"| {method} |" in report or f"| {method} (K=" in report
    assert "### QUBO paper preset" in report  # its own win/loss statements
    # The verdict on Average Drop against Grad-CAM follows the digits numbers (lower is better).
    ours, theirs = (digits_run["methods"][m]["average_drop"] for m in ("QUBO", "Grad-CAM"))
    verb = "wins against" if ours < theirs else "loses against" if ours > theirs else "ties with"
    sentence = next(line for line in report.splitlines()
                    if line.startswith("- Digits, Average Drop % (↓): QUBO") and "Grad-CAM at N_f=16 (" in line)
    clause = next(part for part in sentence.split("; ") if "Grad-CAM at N_f=16 (" in part)
    assert verb in clause
    assert "make benchmark" in readme_results_block(results)
    paths = compare_methods.write_outputs(results, tmp_path)
    assert json.loads(paths[1].read_text())["digits"]["runs"][0]["num_filters"] == 16
