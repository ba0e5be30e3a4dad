"""RepresentationAnalysisCallback in real Lightning runs on the digits CNN: logged values, isolation, errors."""

import numpy as np
import pytest
import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from sklearn.decomposition import PCA

from lightning_callbacks.digits_example import DigitsClassifier, DigitsDataModule
from lightning_callbacks.representation_analysis import RepresentationAnalysisCallback
from lightning_callbacks.validation_samples import stratified_indices
from test_lightning_callback import RandomAugmentedDigits, training_state  # tests/ is on sys.path

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

LAYERS = ["model.features.3", "model.reduce"]


def make_trainer(**overrides) -> pl.Trainer:
    options = dict(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, num_sanity_val_steps=0)
    options.update(overrides)
    return pl.Trainer(**options)


def test_logged_values_equal_sklearn_pca_and_the_cka_formula(digits_model):
    module = DigitsClassifier()
    module.model.load_state_dict(digits_model.state_dict())
    data = DigitsDataModule()
    analyser = RepresentationAnalysisCallback(LAYERS, num_samples=120, mutual_information=True)
    trainer = make_trainer(callbacks=[analyser], limit_val_batches=1)
    trainer.validate(module, datamodule=data, verbose=False)
    logged = {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("representation/")}

    x_val, y_val = data.val_set.tensors
    indices = stratified_indices(y_val.numpy(), 120, 0)
    assert analyser.sample_indices == indices.tolist()
    with torch.no_grad():  # the layers by composition, no hooks
        features = digits_model.features(x_val[indices])
        pooled = {"model.features.3": features.mean(dim=(2, 3)).double().numpy(),
                  "model.reduce": digits_model.reduce(features).mean(dim=(2, 3)).double().numpy()}
    for name, x in pooled.items():
        ratios = PCA().fit(x).explained_variance_ratio_
        assert logged[f"representation/{name}/effective_rank"] == pytest.approx(np.exp(-(ratios * np.log(ratios)).sum()), rel=1e-5)
        assert logged[f"representation/{name}/components_90"] == np.argmax(np.cumsum(ratios) >= 0.9) + 1
        assert 0 <= logged[f"representation/{name}/mi_mean"] <= logged[f"representation/{name}/mi_max"]
    a, b = (x - x.mean(0) for x in pooled.values())
    cka = np.linalg.norm(b.T @ a) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))
    assert logged["representation/cka/model.features.3__model.reduce"] == pytest.approx(cka, rel=1e-5)
    assert len(analyser.history) == 1


class Probe(Callback):
    """Snapshots everything the analyser could change, just before and just after it runs."""

    def __init__(self, role, shared):
        self.role, self.shared = role, shared

    def on_validation_epoch_end(self, trainer, pl_module):
        if self.role == "before":
            pl_module.model.reduce.train()  # a user's module may be partly in train mode
            for p in pl_module.parameters():
                p.grad = torch.full_like(p, 0.5)
            self.shared["state"] = training_state(pl_module)
            return
        if training_state(pl_module) != self.shared["state"]:
            self.shared["changed"] = True
        pl_module.model.reduce.eval()
        for p in pl_module.parameters():
            p.grad = None


class ConsumesRandomness(Callback):
    def on_validation_epoch_end(self, trainer, pl_module):
        np.random.rand()


def train(callbacks):
    pl.seed_everything(0, verbose=False)
    module = RandomAugmentedDigits()
    make_trainer(max_epochs=2, callbacks=callbacks, limit_val_batches=2).fit(module, DigitsDataModule(train_size=256))
    return {name: tensor.clone() for name, tensor in module.state_dict().items()}


def test_training_is_bit_identical_with_the_callback_and_nothing_leaks():
    reference = train([])
    shared = {}
    analyser = RepresentationAnalysisCallback(LAYERS, num_samples=64, mutual_information=True)
    weights = train([Probe("before", shared), analyser, Probe("after", shared)])
    assert len(analyser.history) == 2
    assert "changed" not in shared
    assert all(torch.equal(weights[name], reference[name]) for name in reference)
    control = train([ConsumesRandomness()])  # the comparison can fail: a callback drawing one number shows
    assert not all(torch.equal(control[name], reference[name]) for name in reference)


def test_a_misspelt_layer_fails_at_setup_and_history_is_checkpointed():
    trainer = make_trainer(callbacks=[RepresentationAnalysisCallback(["model.reduc"])])
    with pytest.raises(ValueError, match=r"Closest names: 'model\.reduce'"):
        trainer.fit(DigitsClassifier(), DigitsDataModule(train_size=64))
    assert trainer.global_step == 0
    analyser = RepresentationAnalysisCallback("model.reduce", num_samples=30, every_n_epochs=2)
    make_trainer(max_epochs=2, callbacks=[analyser], limit_val_batches=1).fit(DigitsClassifier(),
                                                                               DigitsDataModule(train_size=64))
    assert [record["epoch"] for record in analyser.history] == [1]
    restored = RepresentationAnalysisCallback("model.reduce", num_samples=30)
    restored.load_state_dict(analyser.state_dict())
    assert restored.sample_indices == analyser.sample_indices and restored.history == analyser.history
