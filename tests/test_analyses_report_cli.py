"""``captum-qubo analyze`` end to end on the digits CNN, and the report's JSON/markdown."""
import json

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from captum_qubo.analyses import AnalysisReport
from captum_qubo.analyses.command import DEFAULT_OUT
from captum_qubo.cli import build_parser, main


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze")
    status = main(["analyze", "--model", "digits", "--images", "150", "--layers", "features.3,reduce.1,reduce",
                   "--mi-between", "features.3,reduce", "--ig-images", "2", "--no-progress", "--out", str(out)])
    return status, out


def test_analyze_writes_pictures_markdown_and_json_with_the_right_numbers(analysed, digits_model, digits_data):
    status, out = analysed
    assert status == 0
    report = json.loads((out / "report.json").read_text())
    assert report["num_inputs"] == 150 and list(report["layers"]) == ["features.3", "reduce.1", "reduce"]
    _, _, x_test, _ = digits_data
    with torch.no_grad():
        pooled = digits_model.reduce(digits_model.features(x_test[:150])).mean(dim=(2, 3)).double().numpy()
    ratios = PCA().fit(pooled).explained_variance_ratio_
    spectrum = report["layers"]["reduce"]["spectrum"]
    np.testing.assert_allclose(spectrum["explained_variance_ratio"], ratios, atol=1e-6)
    assert spectrum["components"]["90%"] == np.argmax(np.cumsum(ratios) >= 0.9) + 1
    assert set(report["mutual_information"]) == {"reduce", "features.3 ↔ reduce"}
    assert report["mutual_information"]["features.3 ↔ reduce"]["num_pairs"] == 32 * 16
    assert report["redundancy"]["reduce"]["num_pairs"] == 120
    assert report["integrated_gradients"]["input"]["num_inputs"] == 2
    for name in report["figures"].values():
        assert (out / name).stat().st_size > 5000  # a real PNG
    markdown = (out / "report.md").read_text()
    assert "| reduce | 16 |" in markdown and "Linear CKA" in markdown and "![spectra](spectra.png)" in markdown
    assert not list(out.glob(".*.tmp"))  # written atomically, no partial files left


def test_the_report_round_trips_through_json(analysed):
    _, out = analysed
    data = json.loads((out / "report.json").read_text())
    assert AnalysisReport.from_dict(data).to_dict() == data


def test_errors_are_reported_with_the_fix(analysed, tmp_path, capsys):
    assert main(["analyze", "--model", "digits", "--layers", "reduc", "--out", str(tmp_path)]) == 2
    assert "Closest names: 'reduce'" in capsys.readouterr().err
    assert main(["analyze", "--model", "digits", "--layers", "reduce", "--mi-layers", "features.3",
                 "--out", str(tmp_path)]) == 2
    assert "add them to --layers" in capsys.readouterr().err
    assert main(["analyze", "--model", "efficientnet-lite0", "--images", "500", "--out", str(tmp_path)]) == 2
    assert "bundled photos" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_parser_knows_analyze():
    args = build_parser().parse_args(["analyze"])
    assert args.model == "efficientnet-lite0" and args.out == DEFAULT_OUT and args.layers is None


def test_the_cli_module_loads_without_torch_and_every_exported_name_resolves():
    import subprocess
    import sys

    # captum_qubo/__init__ itself imports torch, so stand in an empty parent package: the analyses package and
    # its CLI module alone must not pull torch in (a fast `captum-qubo --help` depends on it)
    probe = (
        "import sys, types\n"
        "from pathlib import Path\n"
        "root = Path('captum_qubo')\n"
        "parent = types.ModuleType('captum_qubo'); parent.__path__ = [str(root)]; sys.modules['captum_qubo'] = parent\n"
        "import captum_qubo.analyses.command as command\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert result.stdout.strip() == "False"
    import captum_qubo.analyses as analyses

    for name in analyses.__all__:
        assert callable(getattr(analyses, name)), name
    from captum_qubo.analyses import integrated_gradients, mutual_information

    assert callable(mutual_information) and callable(integrated_gradients)  # functions, not modules


def test_efficientnet_inputs_are_the_bundled_photos_then_their_flips_and_crops():
    from captum_qubo.analyses.inputs import BUNDLED_PHOTOS, efficientnet_inputs, input_groups

    inputs, names = efficientnet_inputs(40)
    assert inputs.shape == (40, 3, 224, 224) and float(inputs.min()) >= -1.0 and float(inputs.max()) <= 1.0
    assert names[:16] == list(BUNDLED_PHOTOS) and names[16] == "chelsea/flip" and names[32].startswith("chelsea/crop")
    torch.testing.assert_close(inputs[16], inputs[0].flip(-1), atol=1e-4, rtol=0)  # a mirror image, nothing else
    assert input_groups("efficientnet-lite0", names[:32])[16] == "chelsea" and input_groups("digits", names) is None
    assert input_groups("efficientnet-lite0", names) is None  # 40 = 16 photos with 2 or 3 variants: no swap


def test_analyze_on_efficientnet_lite0_end_to_end(tmp_path):
    status = main(["analyze", "--model", "efficientnet-lite0", "--images", "32", "--layers",
                   "_blocks.2,_blocks.15,_bn1.activation", "--mi-layers", "_blocks.15", "--mi-between", "_blocks.2,_bn1.activation", "--ig-images", "0", "--null-maps", "40", "--no-progress",
                   "--out", str(tmp_path)])
    assert status == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["layers"]["_bn1.activation"]["shape"] == [1280, 7, 7]
    assert report["mutual_information"]["_blocks.15"]["num_pairs"] == 320 * 319 // 2
    assert report["mutual_information"]["_blocks.15"]["null"]["grouped"]  # photo variants move together
    assert report["mutual_information"]["_blocks.2 ↔ _bn1.activation"]["num_pairs"] == 24 * 1280
    assert report["integrated_gradients"] == {} and "integrated_gradients" not in report["figures"]
