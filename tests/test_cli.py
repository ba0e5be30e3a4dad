"""The captum-qubo command line: the files it writes agree with a direct attribute() call."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from captum_qubo.attribution import QuboFeatureMapAttribution
from captum_qubo.cli import main
from captum_qubo.visualization import explanation_figure, save_explanation_figure
from captum_qubo.zoo import imagenet_class_names, load_sample_image

SA_ARGS = ["--sampler", "sa", "--sampler-kwargs", '{"num_reads": 3, "num_sweeps": 300}', "--seed", "5"]


@pytest.fixture(scope="module")
def chelsea_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain")
    status = main(["explain", "--sample", "chelsea", *SA_ARGS, "--out", str(out)])
    return status, out


def test_explain_writes_a_picture_and_a_consistent_report(chelsea_run, efficientnet, efficientnet_layer, chelsea):
    status, out = chelsea_run
    assert status == 0
    with Image.open(out / "chelsea_qubo.png") as picture:
        picture.verify()
    with Image.open(out / "chelsea_qubo.png") as picture:
        assert picture.format == "PNG" and picture.width > 2 * picture.height  # three panels side by side
        pixels = np.asarray(picture.convert("RGB"))
    assert pixels.std() > 10  # not a blank canvas

    report = json.loads((out / "chelsea_qubo.json").read_text())
    with torch.no_grad():
        probabilities = efficientnet(chelsea).softmax(1)[0]
    predicted = int(probabilities.argmax())
    assert report["predicted"]["index"] == predicted
    assert report["predicted"]["class"] == imagenet_class_names()[predicted] in ("tiger cat", "Egyptian cat", "tabby")
    assert report["predicted"]["probability"] == pytest.approx(float(probabilities[predicted]), rel=1e-5)
    assert report["target"]["index"] == predicted

    explainer = QuboFeatureMapAttribution(
        efficientnet, efficientnet_layer, sampler="sa", sampler_kwargs={"num_reads": 3, "num_sweeps": 300}, seed=5
    )
    explainer.attribute(chelsea, target=predicted)
    direct = explainer.last_selections[0]
    selection = report["selection"]
    assert selection["channels"] == [int(c) for c in direct.channels]
    assert selection["num_selected"] == len(selection["channels"])
    assert selection["num_variables"] == direct.num_variables
    assert selection["energy"] == pytest.approx(direct.energy, abs=1e-6)
    assert selection["sampler"] == "sa" and selection["formulation"] == "unconstrained"
    assert set(selection["timings"]) == {"forward_backward", "build", "solve"}
    assert "timing" in selection["sampler_info"]
    assert report["settings"]["sampler_kwargs"] == {"num_reads": 3, "num_sweeps": 300}
    assert report["layer"]["num_maps"] == 1280 and report["layer"]["map_shape"] == [7, 7]

    # Grad-CAM's own top-K maps (largest α) scored on the same QUBO.
    top_k = np.argsort(-direct.importance)[: direct.num_selected]
    top_k_energy = float(direct.qubo.energies(np.isin(direct.qubo.kept, top_k)))
    assert report["energies"]["grad_cam_top_k"] == pytest.approx(top_k_energy, abs=1e-9)
    assert report["energies"]["selection"] == selection["energy"]
    assert report["energies"]["selection"] <= top_k_energy + 1e-9


def test_image_file_gives_the_same_selection_as_the_sample(chelsea_run, tmp_path):
    _, out = chelsea_run
    Image.fromarray(load_sample_image("chelsea")).save(tmp_path / "my_cat.png")
    assert main(["explain", str(tmp_path / "my_cat.png"), *SA_ARGS, "--out", str(tmp_path)]) == 0
    from_file = json.loads((tmp_path / "my_cat_qubo.json").read_text())
    from_sample = json.loads((out / "chelsea_qubo.json").read_text())
    assert from_file["image"] == "my_cat"
    assert from_file["selection"]["channels"] == from_sample["selection"]["channels"]


def test_demo_prints_where_the_picture_is(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert f"picture: {tmp_path / 'chelsea_qubo.png'}" in printed
    assert (tmp_path / "chelsea_qubo.png").is_file() and (tmp_path / "chelsea_qubo.json").is_file()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["explain", "missing.png"], "not found"),
        (["explain", "--sample", "chelsea", "--target", "1000"], "not an ImageNet class index"),
        (["explain", "--sample", "chelsea", "--formulation", "k_hot"], "needs a positive integer k"),
        (["explain", "--sample", "chelsea", "--sampler", "annealer-9000"], "unknown sampler"),
    ],
)
def test_bad_arguments_exit_with_a_message(arguments, message, tmp_path, capsys):
    assert main([*arguments, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_figure_says_when_the_explanation_is_empty(tmp_path):
    image = load_sample_image("chelsea")[:64, :64]
    heat = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    figure = explanation_figure(image, np.zeros((64, 64)), heat, "a title")
    panels = figure.axes
    assert "empty" in panels[1].get_title() and panels[2].get_title() == "Grad-CAM"
    path = save_explanation_figure(figure, tmp_path / "nested" / "figure.png")
    with Image.open(path) as picture:
        assert picture.format == "PNG"


def test_image_and_sample_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "cat.png", "--sample", "chelsea"])
    assert "not allowed with" in capsys.readouterr().err
