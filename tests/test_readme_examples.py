"""The README's Python examples run as written, in order, in one namespace (as a reader would paste them)."""
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 6, "the README lost its examples"
    monkeypatch.chdir(tmp_path)  # the Lightning example names a log folder
    namespace = {}
    for block in blocks:
        if "LayerScoreCam(" in block:
            continue  # 1280 masked forward passes on EfficientNet: exercised by tests/test_baselines.py instead
        exec(compile(block, str(README), "exec"), namespace)
    assert tuple(namespace["saliency"].shape) == (1, 1, 7, 7)  # quick start on EfficientNet-Lite0's head
    assert namespace["explainer"] in namespace["trainer"].callbacks  # the Lightning lines
    selection = namespace["qubo"].last_selections[0]
    assert selection.num_variables <= 16 and selection.channels.size >= 1
