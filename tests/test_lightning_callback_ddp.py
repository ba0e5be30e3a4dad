"""QuboExplanationCallback under DDP: two CPU processes (gloo) log what one process logs on the same samples."""
import socket

import pytest
import pytorch_lightning as pl

from lightning_callbacks import QuboExplanationCallback
from lightning_callbacks.digits_example import DIGITS_LAYER, DigitsClassifier, DigitsDataModule

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def explained_validation(module, **trainer_options):
    explainer = QuboExplanationCallback(DIGITS_LAYER, num_samples=21, sampler="exact", images_every_n_epochs=0)
    trainer = pl.Trainer(callbacks=[explainer], logger=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", **trainer_options)
    trainer.validate(module, datamodule=DigitsDataModule(), verbose=False)
    return {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("explain/")}


def test_two_ddp_processes_log_the_single_process_values(monkeypatch, digits_model):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))  # never a fixed port: xdist workers run side by side
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    module = DigitsClassifier()
    module.model.load_state_dict(digits_model.state_dict())

    single = explained_validation(module, devices=1)
    sharded = explained_validation(module, devices=2, strategy="ddp_spawn")

    assert sharded["explain/qubo/num_samples"] == single["explain/qubo/num_samples"] == 21  # 11 + 10, no overlap
    assert set(sharded) == set(single)
    for key, value in single.items():
        if not key.endswith("solve_seconds"):  # wall-clock time differs run to run
            assert sharded[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
