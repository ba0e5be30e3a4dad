"""QuboExplanationCallback in real Lightning runs on the digits CNN: logged values, isolation, errors, checkpoints."""
import functools
import random

import numpy as np
import pytest
import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from captum_qubo.attribution import QuboFeatureMapAttribution
from captum_qubo.attribution.options import QuboOptions
from captum_qubo.solvers.registry import SamplerConfigurationError
from lightning_callbacks import QuboExplanationCallback
from lightning_callbacks.digits_example import DIGITS_LAYER, DigitsClassifier, DigitsDataModule
from lightning_callbacks.validation_samples import stratified_indices

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

NUM_SAMPLES = 30
QUBO_KEYS = ["bc_mean_off_diagonal", "bc_max_off_diagonal", "average_drop", "increase_in_confidence",
             "mean_selected_maps", "num_samples"]


def make_trainer(**overrides) -> pl.Trainer:
    options = dict(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, num_sanity_val_steps=0)
    options.update(overrides)
    return pl.Trainer(**options)


def callback(**overrides) -> QuboExplanationCallback:
    options = dict(layer=DIGITS_LAYER, num_samples=NUM_SAMPLES, sampler="exact", seed=0)
    options.update(overrides)
    return QuboExplanationCallback(**options)


@pytest.fixture
def trained_module(digits_model):
    """A DigitsClassifier carrying the cached, trained digits CNN weights (the fixture model stays untouched)."""
    module = DigitsClassifier()
    module.model.load_state_dict(digits_model.state_dict())
    return module


# --- the fixed sample choice ----------------------------------------------------------------------------------


def test_stratified_indices_spread_classes_evenly_and_follow_the_seed():
    labels = np.repeat(np.arange(5), [40, 3, 40, 40, 17])
    chosen = stratified_indices(labels, 30, seed=1)
    counts = np.bincount(labels[chosen], minlength=5)
    assert len(set(chosen.tolist())) == 30 and chosen.min() >= 0 and chosen.max() < labels.size
    assert counts[1] == 3  # the small class is exhausted, the rest share what is left evenly
    assert counts[[0, 2, 3, 4]].max() - counts[[0, 2, 3, 4]].min() <= 1
    assert np.array_equal(chosen, stratified_indices(labels, 30, seed=1))
    assert not np.array_equal(chosen, stratified_indices(labels, 30, seed=2))
    with pytest.raises(ValueError, match="num_samples"):
        stratified_indices(labels, labels.size + 1, seed=0)


# --- logged values against an independent computation ---------------------------------------------------------


def bhattacharyya_off_diagonal(selected_sets, classes, num_classes, num_channels):
    counts = np.zeros((num_classes, num_channels))
    for channels, cls in zip(selected_sets, classes):
        counts[cls, list(channels)] += 1
    present = counts.sum(axis=1) > 0
    roots = np.sqrt(counts[present] / counts[present].sum(axis=1, keepdims=True))
    matrix = roots @ roots.T
    pairs = matrix[~np.eye(len(matrix), dtype=bool)]
    return pairs.mean(), pairs.max()


def faithfulness(model, inputs, layer_maps, targets):
    saliency = F.interpolate(layer_maps, size=inputs.shape[2:], mode="bilinear", align_corners=False)
    with torch.no_grad():
        base = torch.softmax(model(inputs).double(), 1)[torch.arange(len(targets)), targets]
        masked = torch.softmax(model(inputs * saliency).double(), 1)[torch.arange(len(targets)), targets]
    drop = (100 * (base - masked).clamp(min=0) / base).mean().item()
    return drop, 100 * (masked > base).double().mean().item()


def test_logged_values_equal_an_independent_computation_on_the_chosen_samples(trained_module, digits_data):
    data = DigitsDataModule()
    # The paper's formulation, named: the reference below takes Grad-CAM's weights α from the QUBO's importance.
    paper = QuboOptions.preset("paper")
    explainer = callback(batch_size=7, options=paper)  # 5 explanation batches; the reference explains all 30 at once
    trainer = make_trainer(callbacks=[explainer])
    trainer.validate(trained_module, datamodule=data)  # inference_mode=True, Lightning's default
    logged = {key: value.item() for key, value in trainer.callback_metrics.items()}

    _, _, x_val, y_val = digits_data
    index = torch.as_tensor(explainer.sample_indices)
    assert np.bincount(y_val[index].numpy(), minlength=10).tolist() == [NUM_SAMPLES // 10] * 10
    inputs, labels = x_val[index], y_val[index]
    network = trained_module.model.eval()  # the bare CNN, outside Lightning (validate() handed train mode back)
    attribution = QuboFeatureMapAttribution(network, network.reduce, options=paper, sampler="exact")
    layer_maps = attribution.attribute(inputs, target=labels)
    sets = [s.channels for s in attribution.last_selections]
    sizes = np.array([len(s) for s in sets])
    # Grad-CAM's weights are the QUBO's α; its top-K keeps the K largest, K = the QUBO's selection size.
    weights = np.stack([s.importance for s in attribution.last_selections])
    top_sets = [np.argsort(-w, kind="stable")[:k] for w, k in zip(weights, sizes)]
    top_weights = torch.zeros_like(attribution.last_channel_weights)
    for row, channels in enumerate(top_sets):
        top_weights[row, channels] = torch.as_tensor(weights[row, channels], dtype=top_weights.dtype)
    activations = network.reduce(network.features(inputs)).detach()
    top_maps = torch.relu(top_weights[:, :, None, None] * activations).sum(1, keepdim=True)
    low, high = top_maps.amin((2, 3), keepdim=True), top_maps.amax((2, 3), keepdim=True)
    top_maps = (top_maps - low) / (high - low)

    for method, chosen, maps in (("qubo", sets, layer_maps), ("gradcam_topk", top_sets, top_maps)):
        mean_bc, max_bc = bhattacharyya_off_diagonal(chosen, labels.tolist(), 10, 16)
        drop, increase = faithfulness(network, inputs, maps, labels)
        expected = {"bc_mean_off_diagonal": mean_bc, "bc_max_off_diagonal": max_bc, "average_drop": drop,
                    "increase_in_confidence": increase, "mean_selected_maps": sizes.mean(),
                    "num_samples": NUM_SAMPLES}
        if method == "gradcam_topk":  # cut to the QUBO's sizes: its sizes and count would repeat the QUBO's
            for key in ("mean_selected_maps", "num_samples"):
                del expected[key]
            assert not [key for key in logged if key.startswith("explain/gradcam_topk/")
                        and key.split("/")[-1] not in expected]
        for key, value in expected.items():
            assert logged[f"explain/{method}/{key}"] == pytest.approx(value, rel=1e-5, abs=1e-6), (method, key)
    assert 0 < logged["explain/qubo/mean_solve_seconds"] < 10
    assert len(explainer.history) == 1


# --- training is unchanged --------------------------------------------------------------------------------------


class RandomAugmentedDigits(DigitsClassifier):
    """Training draws from all three global streams (torch, numpy, Python), so consuming any changes the weights."""

    def training_step(self, batch, batch_idx):
        images, labels = batch
        images = images * (1.0 + 0.05 * float(np.random.randn())) + 0.05 * torch.randn_like(images)
        if random.random() < 0.5:
            images = images.flip(-1)
        return F.cross_entropy(self(images), labels)


def module_hooks(module):
    return [(name, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
             len(m._backward_pre_hooks)) for name, m in module.named_modules()]


def training_state(pl_module) -> dict:
    """Everything an explaining callback could change, each as a comparable string (tensors by value)."""
    return {key: repr(value) for key, value in {
        "grads": [None if p.grad is None else p.grad.tolist() for p in pl_module.parameters()],
        "buffers": [b.tolist() for b in pl_module.buffers()],
        "modes": [m.training for m in pl_module.modules()],
        "hooks": module_hooks(pl_module),
        "global_hooks": len(torch.nn.modules.module._global_forward_hooks),
        "torch_rng": torch.get_rng_state().tolist(),
        "numpy_rng": [np.asarray(x).tolist() for x in np.random.get_state()],
        "python_rng": random.getstate(),
        "grad_enabled": torch.is_grad_enabled(),
        "inference_mode": torch.is_inference_mode_enabled(),
    }.items()}


class IsolationProbe(Callback):
    """Placed just before ("before") and after ("after") the explainer to see exactly what its hook changes.

    The "before" probe also switches the reduce block to train mode, as a user's module might be: the explainer
    must still explain in eval mode (BatchNorm statistics untouched) and hand train mode back.
    """

    def __init__(self, role, shared):
        self.role, self.shared = role, shared

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        if self.role == "before":
            pl_module.model.reduce.train()
            self.shared["state"] = training_state(pl_module)
            return
        before, after = self.shared["state"], training_state(pl_module)
        self.shared.setdefault("changed", []).extend(key for key in before if before[key] != after[key])
        pl_module.model.reduce.eval()


class ConsumesRandomness(Callback):
    """Negative control: a callback that draws one number from torch's global stream each validation epoch."""

    def on_validation_epoch_end(self, trainer, pl_module):
        torch.rand(1)


@functools.lru_cache(maxsize=None)
def reference_weights(inference_mode):
    """Weights of the seeded run without any extra callback (trained once per mode, per test process)."""
    return train_weights([], inference_mode)


def train_weights(extra_callbacks, inference_mode):
    pl.seed_everything(0, verbose=False)
    module = RandomAugmentedDigits()
    trainer = make_trainer(max_epochs=2, callbacks=extra_callbacks, inference_mode=inference_mode,
                           limit_val_batches=2)
    trainer.fit(module, datamodule=DigitsDataModule(train_size=384))
    return {name: tensor.clone() for name, tensor in module.state_dict().items()}


@pytest.mark.parametrize("inference_mode", [True, False])
def test_training_ends_with_the_same_weights_and_the_hook_changes_nothing(inference_mode):
    reference = reference_weights(inference_mode)
    shared = {}
    explainer = callback(sampler="sa", num_samples=20)
    weights = train_weights([IsolationProbe("before", shared), explainer, IsolationProbe("after", shared)],
                            inference_mode)
    assert len(explainer.history) == 2  # it did explain, every epoch
    assert shared.get("changed", []) == []
    assert weights.keys() == reference.keys()
    assert all(torch.equal(weights[name], reference[name]) for name in reference)
    assert module_hooks(DigitsClassifier()) == [(n, 0, 0, 0, 0) for n, _ in DigitsClassifier().named_modules()]


def test_the_same_weights_check_detects_a_callback_that_consumes_randomness():
    reference = reference_weights(inference_mode=True)
    weights = train_weights([ConsumesRandomness()], inference_mode=True)
    assert not all(torch.equal(weights[name], reference[name]) for name in reference)


# --- Lightning options ------------------------------------------------------------------------------------------


def test_second_val_dataloader_limit_val_batches_and_bf16_mixed_explain_in_float32(trained_module, digits_data):
    _, _, x_val, y_val = digits_data
    low_digits = y_val < 5
    loaders = [DataLoader(TensorDataset(x_val, y_val), batch_size=8),
               DataLoader(TensorDataset(x_val[low_digits], y_val[low_digits]), batch_size=8)]
    logged = {}
    for precision in ("32-true", "bf16-mixed"):
        explainer = callback(dataloader_idx=1, num_samples=20)
        trainer = make_trainer(callbacks=[explainer], limit_val_batches=1, precision=precision)
        trainer.validate(trained_module, dataloaders=loaders)
        logged[precision] = {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("explain/")}
        chosen_labels = y_val[low_digits][torch.as_tensor(explainer.sample_indices)]
        assert np.bincount(chosen_labels.numpy(), minlength=5).tolist() == [4] * 5  # from loader 1, all of it
    assert logged["32-true"]["explain/qubo/num_samples"] == 20  # limit_val_batches (8 images) does not cap it
    for key in logged["32-true"]:
        if not key.endswith("solve_seconds"):
            assert logged["bf16-mixed"][key] == logged["32-true"][key], key


def test_every_n_epochs_and_the_checkpoint_keeps_samples_and_history(tmp_path):
    data = DigitsDataModule(train_size=64)
    first = callback(num_samples=20, every_n_epochs=2)
    pl.seed_everything(0, verbose=False)
    saver = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
    make_trainer(max_epochs=4, callbacks=[first, saver], enable_checkpointing=True, limit_val_batches=1).fit(DigitsClassifier(), data)
    assert [record["epoch"] for record in first.history] == [1, 3]

    resumed = callback(num_samples=20, every_n_epochs=2, seed=7)  # a new seed would choose other samples
    make_trainer(max_epochs=6, callbacks=[resumed], enable_checkpointing=True, default_root_dir=tmp_path,
                 limit_val_batches=1).fit(
        DigitsClassifier(), data, ckpt_path=str(tmp_path / "last.ckpt"))
    assert resumed.sample_indices == first.sample_indices
    assert resumed.history[:2] == first.history
    assert [record["epoch"] for record in resumed.history] == [1, 3, 5]

    restored = callback(num_samples=20)
    restored.load_state_dict(first.state_dict())
    assert restored.sample_indices == first.sample_indices and restored.history == first.history
    restored.history[0]["epoch"] = -1
    assert first.history[0]["epoch"] == 1  # a copy, not shared


# --- fail early, at setup ---------------------------------------------------------------------------------------


class TrainOnlyDigits(pl.LightningDataModule):
    def train_dataloader(self):
        return DigitsDataModule(train_size=64).train_dataloader()


def expect_setup_error(exception, match, explainer, data=None, **trainer_options):
    module = DigitsClassifier()
    trainer = make_trainer(callbacks=[explainer], **trainer_options)
    with pytest.raises(exception, match=match):
        trainer.fit(module, datamodule=data or DigitsDataModule(train_size=64))
    assert trainer.global_step == 0  # nothing was trained


def test_a_misspelt_layer_fails_at_setup_naming_the_closest_layers():
    expect_setup_error(ValueError, r"'model\.reduc' not found.*Closest names: 'model\.reduce'", callback(layer="model.reduc"))


def test_a_layer_module_outside_the_model_fails_at_setup():
    expect_setup_error(ValueError, "not a submodule", callback(layer=torch.nn.Conv2d(1, 1, 1)))


def test_no_validation_data_fails_at_setup():
    expect_setup_error(ValueError, "no validation data", callback(), data=TrainOnlyDigits())


def test_disabled_validation_fails_at_setup():
    expect_setup_error(ValueError, "limit_val_batches=0", callback(), limit_val_batches=0)


def test_qpu_without_credentials_fails_at_setup(monkeypatch, tmp_path):
    for variable in ("DWAVE_API_TOKEN", "DWAVE_CONFIG_FILE", "DWAVE_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    expect_setup_error(SamplerConfigurationError, "API token", callback(sampler="qpu"))


def test_a_sampler_that_errors_fails_at_setup():
    expect_setup_error(RuntimeError, "could not explain.*num_sweeps", callback(sampler="sa", sampler_kwargs={"num_sweeps": -1}))
