"""The dataset engine on 201 real digits: 2-process DDP (gloo) equals one process; a killed run resumes exactly."""
import json

import numpy as np
import pytest
from lightning.pytorch.callbacks import Callback

from captum_qubo.integrations.dataset import (
    DigitsSource,
    completed_ids,
    explain_dataset,
    read_manifest,
    scan_shards,
)
from captum_qubo.integrations.dataset.shards import shard_name, write_shard
from dataset_helpers import SETTINGS, assert_same_runs, free_port, records_by_id

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning",
                                        "ignore::RuntimeWarning")

NUM_IMAGES = 201  # odd: a sampler that pads ranks to equal length (DistributedSampler) would repeat one
BATCH = 25


@pytest.fixture(scope="module")
def source():
    return DigitsSource(limit=NUM_IMAGES)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, digits_model, source):
    """One process, one uninterrupted run: the reference every other run is compared with."""
    out = tmp_path_factory.mktemp("single") / "out"
    manifest = explain_dataset(digits_model, source, SETTINGS, out, devices=1, batch_size=BATCH)
    assert manifest["complete"] and manifest["num_explained"] == NUM_IMAGES
    return out


def test_two_ddp_processes_write_the_single_process_explanations(monkeypatch, tmp_path, digits_model, source,
                                                                 uninterrupted):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))  # never a fixed port: other runs share the machine
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "ddp"
    explain_dataset(digits_model, source, SETTINGS, out, devices=2, strategy="ddp_spawn", batch_size=BATCH)

    manifest = read_manifest(out)
    assert manifest["runs"][-1]["world_size"] == 2
    assert manifest["complete"] and manifest["num_done"] == NUM_IMAGES and manifest["duplicates"] == []
    ranks = {name.split("-")[0] for name in manifest["shards"]}
    assert ranks == {"rank000", "rank001"}  # both processes wrote shards ...
    per_rank = {rank: sum(records_by_id(out)[i]["shard"].startswith(rank) for i in records_by_id(out))
                for rank in ranks}
    assert per_rank == {"rank000": 101, "rank001": 100}  # ... each its own share, none repeated
    assert_same_runs(out, uninterrupted, source.sample_ids)  # and their union is the single-process run


class CrashAfter(Callback):
    """Raises at the end of the k-th predict batch (after the writer, which runs first, wrote it)."""

    def __init__(self, batches: int) -> None:
        self.batches = batches

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx + 1 == self.batches:
            raise RuntimeError(f"simulated crash after {self.batches} batches")


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path, digits_model, source, uninterrupted):
    out = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        explain_dataset(digits_model, source, SETTINGS, out, batch_size=BATCH, callbacks=[CrashAfter(3)])
    assert len(completed_ids(out / "shards")) == 3 * BATCH
    assert not read_manifest(out).get("complete")

    manifest = explain_dataset(digits_model, source, SETTINGS, out, batch_size=BATCH)
    assert manifest["complete"] and manifest["runs"][-1]["samples_this_run"] == NUM_IMAGES - 3 * BATCH
    assert_same_runs(out, uninterrupted, source.sample_ids)
    again = explain_dataset(digits_model, source, SETTINGS, out, batch_size=BATCH)  # nothing left: no new shard
    assert again["shards"] == manifest["shards"]


def test_a_write_interrupted_between_maps_and_commit_is_not_trusted(tmp_path, digits_model, source, uninterrupted):
    # Copy three of the reference's shards, then leave behind what a crash at each step of a write leaves:
    # a temporary file, maps without their Parquet commit, and a Parquet whose maps changed after the commit.
    out = tmp_path / "leftovers"
    (out / "shards").mkdir(parents=True)
    (out / "manifest.json").write_text((uninterrupted / "manifest.json").read_text())
    reference = sorted((uninterrupted / "shards").glob("*.parquet"))
    for path in reference[:3]:
        for suffix in (".parquet", ".npz"):
            (out / "shards" / path.with_suffix(suffix).name).write_bytes(path.with_suffix(suffix).read_bytes())
    orphan, tampered = reference[3], reference[4]
    (out / "shards" / orphan.with_suffix(".npz").name).write_bytes(orphan.with_suffix(".npz").read_bytes())
    (out / "shards" / tampered.name).write_bytes(tampered.read_bytes())
    (out / "shards" / tampered.with_suffix(".npz").name).write_bytes(b"half a zip")
    (out / "shards" / f"{orphan.stem}.parquet.tmp-123-abcd").write_bytes(b"PAR1 cut short")

    scan = scan_shards(out / "shards")
    assert [p.name for p in scan.trusted] == [p.name for p in reference[:3]]
    assert {p.name for p, _ in scan.untrusted} == {orphan.with_suffix(".npz").name, tampered.name,
                                                   tampered.with_suffix(".npz").name,
                                                   f"{orphan.stem}.parquet.tmp-123-abcd"}
    trusted_ids = set(completed_ids(out / "shards"))
    assert len(trusted_ids) == 3 * BATCH

    manifest = explain_dataset(digits_model, source, SETTINGS, out, batch_size=BATCH)
    assert manifest["complete"] and len(manifest["runs"][-1]["removed_leftovers"]) == 4
    assert not scan_shards(out / "shards").untrusted
    assert_same_runs(out, uninterrupted, source.sample_ids)


def test_shard_names_follow_the_ids_and_writes_leave_no_temporary(tmp_path):
    ids = ["a", "b"]
    assert shard_name(1, ids) == shard_name(1, list(ids)) != shard_name(1, ["a", "c"])
    columns = {"sample_id": ids, "error": [None, "OSError: broken"], "map_row": [0, None], "qubo_energy": [1.0, None]}
    write_shard(tmp_path, shard_name(0, ids), columns, {"qubo": np.ones((1, 2, 2))})
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{shard_name(0, ids)}.npz", f"{shard_name(0, ids)}.parquet"]
    assert json.loads(json.dumps(completed_ids(tmp_path))) == ids


def test_the_report_matches_the_metrics_computed_by_hand_from_direct_calls(uninterrupted, digits_model, source):
    # The reference: every image explained in one direct call, frequencies and Bhattacharyya overlaps by hand.
    import torch

    from captum_qubo.attribution import QuboFeatureMapAttribution
    from captum_qubo.integrations.dataset.report import dataset_report

    images = torch.stack([source[i]["image"] for i in range(NUM_IMAGES)])
    with torch.no_grad():
        probabilities = torch.softmax(digits_model(images), dim=1)
    predicted = probabilities.argmax(dim=1)
    direct = QuboFeatureMapAttribution(digits_model, digits_model.reduce, options=SETTINGS.options)
    maps = direct.attribute(images, target=predicted)
    counts = np.zeros((10, 16))
    for selection, label in zip(direct.last_selections, predicted.tolist()):
        counts[label, selection.channels] += 1
    shares = counts / counts.sum(axis=1, keepdims=True)
    overlap = np.sqrt(shares) @ np.sqrt(shares).T
    off_diagonal = overlap[~np.eye(10, dtype=bool)]
    with torch.no_grad():
        masked = torch.softmax(digits_model(images * maps), dim=1)  # 8×8 maps at the input's resolution
    base = probabilities.gather(1, predicted[:, None]).squeeze(1)
    kept = masked.gather(1, predicted[:, None]).squeeze(1)
    average_drop = 100 * float(((base - kept).clamp(min=0) / base).mean())

    qubo = dataset_report(uninterrupted)["methods"]["qubo"]
    np.testing.assert_allclose(np.array(qubo["bhattacharyya"]), overlap, atol=1e-9)
    assert qubo["mean_off_diagonal"] == pytest.approx(off_diagonal.mean(), abs=1e-9)
    assert qubo["max_off_diagonal"] == pytest.approx(off_diagonal.max(), abs=1e-9)
    np.testing.assert_allclose(np.array(qubo["selection_frequency"]), counts / np.bincount(predicted, minlength=10)
                               [:, None], atol=1e-12)
    assert qubo["mean_selection_size"] == pytest.approx(counts.sum() / NUM_IMAGES)
    assert qubo["average_drop"] == pytest.approx(average_drop, rel=1e-4)
    assert qubo["increase_in_confidence"] == pytest.approx(100 * float((kept > base).float().mean()), abs=1e-9)
