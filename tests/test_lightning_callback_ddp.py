"""QuboExplanationCallback under DDP: two CPU processes (gloo) log what one process logs on the same samples."""
import json
import socket

import pytest
import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from lightning_callbacks import QuboExplanationCallback
from lightning_callbacks.digits_example import DIGITS_LAYER, DigitsClassifier, DigitsDataModule

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ShareProbe(Callback):
    """After the explainer, on every rank: write how many samples this rank explained."""

    def __init__(self, directory):
        self.directory = directory

    def on_validation_epoch_end(self, trainer, pl_module):
        explainer = next(c for c in trainer.callbacks if isinstance(c, QuboExplanationCallback))
        explained = len(explainer._attribution.last_selections)
        (self.directory / f"rank{trainer.global_rank}.json").write_text(json.dumps(explained))


def explained_validation(module, directory, **trainer_options):
    # batch_size >= num_samples: one explanation batch, so last_selections holds all of a rank's samples.
    explainer = QuboExplanationCallback(DIGITS_LAYER, num_samples=21, sampler="exact", images_every_n_epochs=0,
                                        batch_size=64)
    trainer = pl.Trainer(callbacks=[explainer, ShareProbe(directory)], logger=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", **trainer_options)
    trainer.validate(module, datamodule=DigitsDataModule(), verbose=False)
    return {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("explain/")}


def test_two_ddp_processes_log_the_single_process_values(monkeypatch, digits_model, tmp_path):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))  # never a fixed port: xdist workers run side by side
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    module = DigitsClassifier()
    module.model.load_state_dict(digits_model.state_dict())

    (tmp_path / "single").mkdir()
    (tmp_path / "ddp").mkdir()
    single = explained_validation(module, tmp_path / "single", devices=1)
    sharded = explained_validation(module, tmp_path / "ddp", devices=2, strategy="ddp_spawn")

    shares = {path.name: json.loads(path.read_text()) for path in (tmp_path / "ddp").iterdir()}
    assert shares == {"rank0.json": 11, "rank1.json": 10}  # each rank explained its own share ...
    assert sharded["explain/qubo/num_samples"] == single["explain/qubo/num_samples"] == 21  # ... and they add up
    assert set(sharded) == set(single)
    for key, value in single.items():
        if not key.endswith("solve_seconds"):  # wall-clock time differs run to run
            assert sharded[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
