"""The dataset engine's inputs: unreadable images, foreign output folders, both Lightning namespaces, the model."""
import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from captum_qubo.attribution import QuboFeatureMapAttribution
from captum_qubo.cli import main
from captum_qubo.integrations.dataset import (
    DigitsSource,
    ImageFolderSource,
    OutputFolderMismatch,
    explain_dataset,
    read_manifest,
)
from dataset_helpers import SETTINGS, assert_same_runs, records_by_id

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning",
                                        "ignore::RuntimeWarning")
EXACT = ["--sampler", "exact", "--max-variables", "10", "--importance", "gradient", "--beta", "0.7"]  # = SETTINGS


@pytest.fixture
def digit_folder(tmp_path):
    """12 real digits as 8-bit PNGs in class sub-folders 0/ 1/ 2/, and one file that is not an image."""
    digits = load_digits()
    root = tmp_path / "images"
    for label in range(3):
        (root / str(label)).mkdir(parents=True)
        for index in np.flatnonzero(digits.target == label)[:4]:
            Image.fromarray((digits.images[index] * 255 / 16).astype(np.uint8)).save(root / str(label) / f"{index}.png")
    (root / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return root


def test_an_unreadable_image_is_reported_in_the_manifest_and_skipped(digit_folder, tmp_path, capsys, digits_model):
    out = tmp_path / "out"
    status = main(["explain-dataset", "--images", str(digit_folder), "--model", "digits", *EXACT, "--out", str(out),
                   "--batch-size", "5", "--no-progress"])
    assert status == 1  # the run finished, with one image skipped
    captured = capsys.readouterr()
    assert "skipped 1/broken.png" in captured.err and "images/s" in captured.out
    manifest = read_manifest(out)
    assert [s["sample_id"] for s in manifest["skipped"]] == ["1/broken.png"]
    assert "cannot identify image file" in manifest["skipped"][0]["error"]
    assert manifest["complete"] and manifest["num_explained"] == 12 and manifest["num_done"] == 13
    records = records_by_id(out)
    assert {i: r["label"] for i, r in records.items() if r["error"] is None} == {
        i: int(i.split("/")[0]) for i in records if i != "1/broken.png"}
    assert records["1/broken.png"]["qubo_channels"] is None and records["1/broken.png"]["map_row"] is None
    assert json.loads((out / "report.json").read_text())["num_skipped"] == 1 and (out / "report.png").stat().st_size

    # One sample against a direct call of the explainer on the same preprocessed image.
    source = ImageFolderSource(digit_folder, 8, "none", channels=1)
    item = source[source.sample_ids.index("2/2.png")]
    direct = QuboFeatureMapAttribution(digits_model, digits_model.reduce, options=SETTINGS.options)
    predicted = int(digits_model(item["image"][None]).argmax())
    direct.attribute(item["image"][None], target=predicted)
    record = records[item["sample_id"]]
    assert record["predicted"] == predicted
    assert record["qubo_channels"] == direct.last_selections[0].channels.tolist()
    assert record["qubo_energy"] == pytest.approx(direct.last_selections[0].energy, rel=1e-6)

    # DataLoader worker processes decode the images instead: the same shards.
    explain_dataset(digits_model, source, SETTINGS, tmp_path / "workers", batch_size=5, num_workers=2)
    assert_same_runs(out, tmp_path / "workers", source.sample_ids)


def test_an_output_folder_of_another_configuration_is_refused(tmp_path, digits_model):
    out = tmp_path / "out"
    explain_dataset(digits_model, DigitsSource(limit=20), SETTINGS, out, batch_size=10)
    with pytest.raises(OutputFolderMismatch, match=r"explain\.options\.beta: 0\.5 now, 0\.7 in the folder"):
        explain_dataset(digits_model, DigitsSource(limit=20), SETTINGS.__class__(
            layer="reduce", methods=SETTINGS.methods, options=SETTINGS.options.replace(beta=0.5)), out)
    other_weights = copy.deepcopy(digits_model)
    with torch.no_grad():
        other_weights.head.bias[0] += 1.0
    with pytest.raises(OutputFolderMismatch, match=r"model\.state_sha256"):
        explain_dataset(other_weights, DigitsSource(limit=20), SETTINGS, out)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("not a dataset run")
    with pytest.raises(OutputFolderMismatch, match="not empty and has no manifest.json"):
        explain_dataset(digits_model, DigitsSource(limit=20), SETTINGS, tmp_path / "foreign")
    # The CLI says the same in its own words, before writing anything.
    assert main(["explain-dataset", "--dataset", "digits", "--limit", "20", *EXACT, "--beta", "0.5",
                 "--out", str(out), "--no-progress"]) == 2

    # The same configuration with a larger dataset only explains the new samples.
    grown = explain_dataset(digits_model, DigitsSource(limit=30), SETTINGS, out, batch_size=10)
    assert grown["runs"][-1]["samples_this_run"] == 10 and grown["complete"] and grown["num_done"] == 30


def test_pytorch_lightning_trainer_writes_what_lightning_pytorch_writes(tmp_path, digits_model):
    source = DigitsSource(limit=16)
    explain_dataset(digits_model, source, SETTINGS, tmp_path / "lp", batch_size=8, lightning="lightning.pytorch")
    explain_dataset(digits_model, source, SETTINGS, tmp_path / "pl", batch_size=8, lightning="pytorch_lightning")
    assert_same_runs(tmp_path / "lp", tmp_path / "pl", source.sample_ids)


def test_the_models_modes_grads_and_hooks_are_left_as_they_were(tmp_path, digits_model):
    model = copy.deepcopy(digits_model)
    model.train()
    model.reduce[2].eval()  # a mixed state must come back exactly, not as "all train"
    modes = {name: module.training for name, module in model.named_modules()}
    explain_dataset(model, DigitsSource(limit=8), SETTINGS, tmp_path / "out", batch_size=8)
    assert {name: module.training for name, module in model.named_modules()} == modes
    assert all(parameter.grad is None for parameter in model.parameters())
    assert not any(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                   for module in model.modules())


@pytest.mark.parametrize("argv, message", [
    (["--images", "nowhere"], "--images 'nowhere' is not a folder"),
    (["--dataset", "digits", "--methods", "qubo,lime"], "--methods 'qubo,lime'"),
    (["--dataset", "digits", "--devices", "two"], "--devices must be a positive number"),
    (["--dataset", "digits", "--max-variables", "0"], "--max-variables must be a positive integer"),
])
def test_bad_arguments_fail_before_the_model_loads(argv, message, tmp_path, capsys):
    assert main(["explain-dataset", *argv, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
