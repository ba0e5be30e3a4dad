"""The captum-qubo command line: many images and any model in one run, outputs agree with direct calls."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captum_qubo.attribution import QuboFeatureMapAttribution
from captum_qubo.attribution.options import QuboOptions
from captum_qubo.cli import main
from captum_qubo.zoo import imagenet_class_names, load_sample_image
from captum_qubo.zoo.images import preprocess_image

SA_ARGS = ["--sampler", "sa", "--sampler-kwargs", '{"num_reads": 3, "num_sweeps": 300}', "--seed", "5"]
PAPER_ARGS = ["--importance", "gradient", "--beta", "0.7"]
REPOSITORY = str(Path(__file__).resolve().parents[1])
CAT_CLASSES = ("tiger cat", "Egyptian cat", "tabby")  # neck and neck for chelsea

TINY_MODELS = '''
import os
import torch
from torch import nn

def tiny():
    """A small seeded CNN for 32x32 RGB inputs; records each build so tests can tell whether it was loaded."""
    with open(os.environ["TINY_MODEL_BUILDS"], "a") as log:
        log.write("built\\n")
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 5))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model

def not_a_model():
    return 42
'''
TINY = ["--model", "tiny_models:tiny", "--layer", "1", "--image-size", "32", "--sampler", "exact", "--no-progress"]


@pytest.fixture
def tiny_models(tmp_path, monkeypatch):
    """A real importable module with a model factory (package.module:factory), and the log of its builds."""
    (tmp_path / "tiny_models.py").write_text(TINY_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    builds = tmp_path / "builds.log"
    monkeypatch.setenv("TINY_MODEL_BUILDS", str(builds))
    sys.modules.pop("tiny_models", None)
    yield builds
    sys.modules.pop("tiny_models", None)


def mixed_folder(folder):
    """JPEG with EXIF rotation, 16-bit PNG, RGBA, greyscale, a broken file and a non-image."""
    folder.mkdir()
    photo = load_sample_image("chelsea")[:120, :200]
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise: portrait
    Image.fromarray(photo).save(folder / "rotated.jpg", exif=exif)
    Image.fromarray((np.arange(48 * 40).reshape(48, 40) * 34).astype(np.uint16)).save(folder / "deep.png")
    rgba = np.dstack([photo[:64, :64], np.full((64, 64), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    Image.fromarray(photo[:50, :70, 1]).save(folder / "grey.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n-- truncated --")
    (folder / "notes.txt").write_text("not an image, ignored")
    return folder


def test_a_folder_of_mixed_images_with_a_custom_model(tmp_path, tiny_models, capsys):
    folder = mixed_folder(tmp_path / "images")
    out = tmp_path / "out"
    with_progress = [argument for argument in TINY if argument != "--no-progress"]
    assert main(["explain", str(folder), *with_progress, "--preprocessing", "imagenet", "--out", str(out)]) == 1
    captured = capsys.readouterr()  # one image failed: exit status 1
    assert "explaining" in captured.err and "5/5" in captured.err  # the progress bar
    assert "skipped broken" in captured.err and "cannot read" in captured.err
    assert "4 of 5 images explained" in captured.out
    table = captured.out.splitlines()
    assert table[0].split()[:3] == ["image", "prediction", "p"]
    assert any(line.startswith("broken") and "FAILED" in line for line in table)
    written = sorted(path.name for path in out.iterdir())
    assert written == sorted(f"{n}_qubo.{s}" for n in ("alpha", "deep", "grey", "rotated") for s in ("json", "png"))

    reports = {n: json.loads((out / f"{n}_qubo.json").read_text()) for n in ("alpha", "deep", "grey", "rotated")}
    assert reports["rotated"]["image_shape"] == [200, 120, 3]  # EXIF applied: upright portrait
    assert reports["deep"]["image_shape"] == [48, 40, 3]
    import tiny_models

    model = tiny_models.tiny().eval()
    for name, report in reports.items():
        assert report["model"] == "tiny_models:tiny" and report["layer"]["name"] == "1"
        assert report["preprocessing"] == {"normalization": "imagenet", "size": 32}
        assert report["settings"]["sampler"] == "exact"
    # The greyscale photo through the library's own reading and preprocessing, explained directly.
    grey = np.asarray(Image.open(folder / "grey.png"), dtype=np.float32) / 255.0
    inputs = preprocess_image(grey, 32, normalization="imagenet")[None]
    with torch.no_grad():
        probabilities = model(inputs).softmax(1)[0]
    assert reports["grey"]["predicted"]["index"] == int(probabilities.argmax())
    assert reports["grey"]["predicted"]["probability"] == pytest.approx(float(probabilities.max()), rel=1e-5)
    explainer = QuboFeatureMapAttribution(model, model[1], sampler="exact")
    explainer.attribute(inputs, target=int(probabilities.argmax()))
    assert reports["grey"]["selection"]["channels"] == explainer.last_selections[0].channels.tolist()


def test_outputs_are_not_overwritten_without_the_flag(tmp_path, tiny_models, capsys):
    image = tmp_path / "cat.png"
    Image.fromarray(load_sample_image("chelsea")[:64, :64]).save(image)
    out = tmp_path / "out"
    assert main(["explain", str(image), *TINY, "--out", str(out)]) == 0
    before = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    builds = tiny_models.read_text().count("built")
    assert main(["explain", str(image), *TINY, "--out", str(out)]) == 2
    assert "already exist; pass --overwrite" in capsys.readouterr().err
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == before
    assert tiny_models.read_text().count("built") == builds  # refused before the model was built
    assert main(["explain", str(image), *TINY, "--out", str(out), "--overwrite"]) == 0


def test_weights_are_loaded_into_the_factory_model(tmp_path, tiny_models):
    import tiny_models as module

    model = module.tiny()
    with torch.no_grad():
        model[3].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 50.0, 0.0]))  # class 3 wins whatever the image
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    image = tmp_path / "cat.png"
    Image.fromarray(load_sample_image("coffee")[:64, :64]).save(image)
    out = tmp_path / "out"
    assert main(["explain", str(image), *TINY, "--weights", str(tmp_path / "weights.pt"), "--out", str(out)]) == 0
    assert json.loads((out / "cat_qubo.json").read_text())["predicted"]["index"] == 3
    torch.save({"head.weight": torch.zeros(1)}, tmp_path / "wrong.pt")
    assert main(["explain", str(image), *TINY, "--weights", str(tmp_path / "wrong.pt"), "--out", str(out),
                 "--overwrite"]) == 2


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["missing.png"], "IMAGE 'missing.png' not found"),
        ([], "nothing to explain"),
        (["--sample", "chelsea", "--sample", "cheshire"], "--sample 'cheshire' is not a bundled photo"),
        (["--sample", "chelsea", "--formulation", "k_hot"], "--formulation='k_hot' needs a positive integer --k"),
        (["--sample", "chelsea", "--beta", "2"], "--beta must lie in [0, 1]"),
        (["--sample", "chelsea", "--max-variables", "0"], "--max-variables must be a positive integer"),
        (["--sample", "chelsea", "--sampler", "annealer-9000"], "unknown --sampler 'annealer-9000'"),
        (["--sample", "chelsea", "--device", "cuda:7"], "--device cuda:7: no such CUDA device"),
        (["--sample", "chelsea", "--device", "toaster"], "--device 'toaster' is not a torch device"),
        (["--sample", "chelsea", "--model", "resnet"], "--model 'resnet' is neither a zoo model"),
        (["--sample", "chelsea", "--model", "tiny_models:tiny"], "--layer is required with --model"),
        (["--sample", "chelsea", "--weights", "nope.pt"], "weights file 'nope.pt' not found"),
        (["--sample", "chelsea", "--target", "1000"], "--target 1000 is not a class index of efficientnet-lite0"),
        (["--sample", "chelsea", *TINY[:-1], "--layer", "2.conv"], "--layer '2.conv' not found"),
        (["--sample", "chelsea", "--model", "tiny_models:not_a_model", "--layer", "1"], "not a torch.nn.Module"),
    ],
)
def test_bad_arguments_exit_with_a_message_in_flag_names(arguments, message, tmp_path, tiny_models, capsys):
    assert main(["explain", *arguments, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    if "--layer '2.conv'" not in message and "not a torch.nn.Module" not in message:
        assert not tiny_models.exists()  # checked before any model was built


def test_help_and_version_answer_without_importing_torch():
    code = ("import sys, time; start = time.perf_counter(); from captum_qubo.cli import build_parser; "
            "build_parser().format_help(); print(time.perf_counter() - start, 'torch' in sys.modules)")
    seconds, torch_loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                           env={**os.environ, "PYTHONPATH": REPOSITORY}).stdout.split()
    assert torch_loaded == "False" and float(seconds) < 1.0
    version = subprocess.run([sys.executable, "-m", "captum_qubo", "--version"], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": REPOSITORY})
    assert version.returncode == 0 and version.stdout.strip() == "captum-qubo 0.1.0"


def test_subcommands_are_pluggable():
    from captum_qubo import cli

    def add_hello_parser(subparsers):
        subparsers.add_parser("hello").set_defaults(run=lambda args: 7)

    original = cli.SUBCOMMANDS
    cli.SUBCOMMANDS = (*original, add_hello_parser)
    try:
        assert cli.main(["hello"]) == 7
    finally:
        cli.SUBCOMMANDS = original


@pytest.fixture(scope="module")
def chelsea_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain")
    # The paper's formulation, named: the report is checked against α (the importance under "gradient").
    status = main(["explain", "--sample", "chelsea", *SA_ARGS, *PAPER_ARGS, "--out", str(out), "--no-progress"])
    return status, out


def test_efficientnet_report_agrees_with_a_direct_attribute_call(chelsea_run, efficientnet, efficientnet_layer,
                                                                 chelsea):
    status, out = chelsea_run
    assert status == 0
    with Image.open(out / "chelsea_qubo.png") as picture:
        assert picture.format == "PNG" and picture.width >= 2000 and picture.width > 2 * picture.height
        assert np.asarray(picture.convert("RGB")).std() > 10  # not a blank canvas
    report = json.loads((out / "chelsea_qubo.json").read_text())
    with torch.no_grad():
        probabilities = efficientnet(chelsea).softmax(1)[0]
    predicted = int(probabilities.argmax())
    assert report["predicted"]["index"] == report["target"]["index"] == predicted
    assert report["predicted"]["class"] == imagenet_class_names()[predicted] in CAT_CLASSES
    assert report["predicted"]["probability"] == pytest.approx(float(probabilities[predicted]), rel=1e-5)
    assert report["layer"] == {"name": "_bn1.activation", "map_shape": [7, 7], "num_maps": 1280}

    explainer = QuboFeatureMapAttribution(
        efficientnet, efficientnet_layer, options=QuboOptions.preset("paper"), sampler="sa",
        sampler_kwargs={"num_reads": 3, "num_sweeps": 300}, seed=5
    )
    explainer.attribute(chelsea, target=predicted)
    direct = explainer.last_selections[0]
    selection = report["selection"]
    assert selection["channels"] == [int(c) for c in direct.channels]
    assert selection["energy"] == pytest.approx(direct.energy, abs=1e-6)
    assert report["settings"]["sampler_kwargs"] == {"num_reads": 3, "num_sweeps": 300}
    assert report["settings"]["seed"] == 5
    shares = [entry["share"] for entry in report["top_maps"]]
    assert sorted(entry["channel"] for entry in report["top_maps"]) == sorted(selection["channels"])
    assert sum(shares) == pytest.approx(1.0) and shares == sorted(shares, reverse=True)
    top_k = np.argsort(-direct.importance)[: direct.num_selected]
    top_k_energy = float(direct.qubo.energies(np.isin(direct.qubo.kept, top_k)))
    assert report["energies"]["grad_cam_top_k"] == pytest.approx(top_k_energy, abs=1e-9)
    assert report["energies"]["selection"] <= top_k_energy + 1e-9


def test_demo_replaces_its_own_outputs(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert main(["demo", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "1 of 1 images explained" in printed
    assert (tmp_path / "chelsea_qubo.png").is_file() and (tmp_path / "chelsea_qubo.json").is_file()
