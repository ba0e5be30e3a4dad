"""``captum-qubo explain-dataset --strategy ddp``: Lightning re-runs the command in a second process; the shards of
both equal an in-process single-process run, and only rank zero prints and writes the report."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from captum_qubo.integrations.dataset import DigitsSource, explain_dataset, read_manifest
from dataset_helpers import SETTINGS, assert_same_runs, free_port

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning",
                                        "ignore::RuntimeWarning")
REPOSITORY = str(Path(__file__).resolve().parents[1])


def test_the_command_on_two_ddp_processes_writes_the_single_process_shards(tmp_path, digits_model):
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": REPOSITORY + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "captum_qubo", "explain-dataset", "--dataset", "digits", "--limit",
                           "40", "--sampler", "exact", "--max-variables", "10", "--importance", "gradient",
                           "--beta", "0.7", "--devices", "2", "--strategy", "ddp",  # = SETTINGS
                           "--batch-size", "10", "--no-progress", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("images/s") == 1 and "2 processes); 40 of 40 done" in done.stdout
    manifest = read_manifest(out)
    assert manifest["runs"][-1]["world_size"] == 2 and manifest["complete"]
    assert {name.split("-")[0] for name in manifest["shards"]} == {"rank000", "rank001"}
    assert json.loads((out / "report.json").read_text())["num_explained"] == 40

    single = tmp_path / "single"
    source = DigitsSource(limit=40)
    explain_dataset(digits_model, source, SETTINGS, single, batch_size=40)
    assert_same_runs(out, single, source.sample_ids)
