"""Helpers shared by the dataset-engine tests: the settings they run and sample-by-sample comparison of folders."""
import socket

import numpy as np
import pytest

from captum_qubo.attribution.options import QuboOptions
from captum_qubo.integrations.dataset import ExplainSettings, load_maps, read_records

#: exact solutions (deterministic, so two runs can be compared sample by sample) on at most 10 maps, with the paper's
#: formulation named explicitly (the tests' expectations, e.g. "0.7 in the folder", are written for it).
SETTINGS = ExplainSettings(layer="reduce", methods=("qubo", "grad_cam"),
                           options=QuboOptions.preset("paper", sampler="exact", max_variables=10))
METHODS = ("qubo", "grad_cam")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def records_by_id(out):
    """{sample_id: row dict} of a run's trusted shards; fails on a duplicated id."""
    rows = read_records(out / "shards").to_pylist()
    ids = [row["sample_id"] for row in rows]
    assert len(ids) == len(set(ids)), "a sample was written twice"
    return {row["sample_id"]: row for row in rows}


def assert_same_runs(out_a, out_b, expected_ids):
    """Two output folders hold the same explanations sample by sample (selections, energies, maps)."""
    a, b = records_by_id(out_a), records_by_id(out_b)
    assert sorted(a) == sorted(b) == sorted(expected_ids)
    for sample_id, row in a.items():
        other = b[sample_id]
        for key in ("label", "target", "predicted", "qubo_channels", "qubo_num_variables", "grad_cam_channels",
                    "error"):
            assert row[key] == other[key], (sample_id, key)
        if row["error"] is not None:  # unreadable: nothing explained on either side (checked above)
            continue
        for key in ("qubo_energy", "base_score", "qubo_masked_score", "grad_cam_masked_score"):
            assert row[key] == pytest.approx(other[key], rel=1e-5, abs=1e-6), (sample_id, key)
        np.testing.assert_allclose(row["probabilities"], other["probabilities"], rtol=1e-5, atol=1e-6)
    readable = sorted(sample_id for sample_id, row in a.items() if row["error"] is None)
    for method in METHODS:
        maps_a, maps_b = load_maps(out_a / "shards", method), load_maps(out_b / "shards", method)
        assert sorted(maps_a) == sorted(maps_b) == readable
        for sample_id in maps_a:
            np.testing.assert_allclose(maps_a[sample_id], maps_b[sample_id], rtol=1e-5, atol=1e-6)
