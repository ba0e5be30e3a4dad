"""The callback with real Trainers of both Lightning namespaces, installed side by side."""
import importlib
import pickle

import pytest
import torch

from lightning_callbacks import QuboExplanationCallback
from lightning_callbacks.digits_example import DIGITS_LAYER, digits_modules
from lightning_callbacks.figures import takes_images
from lightning_callbacks.lightning_namespace import LightningCallback, default_namespace, load_namespace, namespace_of

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

NAMESPACES = ("lightning.pytorch", "pytorch_lightning")
TRAINER_OPTIONS = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


def modules_for(name, digits_model):
    classifier, data = digits_modules(name)
    module = classifier()
    module.model.load_state_dict(digits_model.state_dict())
    return module, data(train_size=128)


def test_both_namespaces_are_installed_and_distinct():
    lightning, classic = (importlib.import_module(name) for name in NAMESPACES)
    assert lightning.Callback is not classic.Callback and lightning.Trainer is not classic.Trainer
    assert default_namespace().name == "lightning.pytorch"  # what Lightning's docs teach comes first
    explainer = QuboExplanationCallback(DIGITS_LAYER)
    assert isinstance(explainer, lightning.Callback) and isinstance(explainer, classic.Callback)


@pytest.fixture(scope="module")
def validated(digits_model):
    """Logged metrics of one `trainer.validate` per namespace (Lightning validates under inference_mode)."""
    results = {}
    for name in NAMESPACES:
        module, data = modules_for(name, digits_model)
        explainer = QuboExplanationCallback(DIGITS_LAYER, num_samples=20, sampler="exact", seed=0)
        trainer = load_namespace(name).Trainer(callbacks=[explainer], **TRAINER_OPTIONS)
        (metrics,) = trainer.validate(module, datamodule=data, verbose=False)
        results[name] = (metrics, explainer)
    return results


@pytest.mark.parametrize("name", NAMESPACES)
def test_validate_with_each_namespace_logs_the_explanations(validated, name):
    metrics, explainer = validated[name]
    assert explainer.lightning.name == name
    assert metrics["explain/qubo/num_samples"] == 20
    assert 0.0 <= metrics["explain/qubo/bc_mean_off_diagonal"] <= 1.0
    assert len(explainer.history) == 1


def test_both_namespaces_log_the_same_values(validated):
    first, second = (validated[name][0] for name in NAMESPACES)
    assert first.keys() == second.keys()
    for key in (key for key in first if "seconds" not in key):  # wall-clock times differ run to run
        assert first[key] == pytest.approx(second[key], abs=1e-6), key


@pytest.mark.parametrize("name", NAMESPACES)
def test_fit_with_each_namespace(digits_model, name):
    module, data = modules_for(name, digits_model)
    before = {key: value.clone() for key, value in module.state_dict().items()}
    explainer = QuboExplanationCallback(DIGITS_LAYER, num_samples=10, sampler="exact", baseline=False)
    trainer = load_namespace(name).Trainer(callbacks=[explainer], max_epochs=1, limit_train_batches=2,
                                           limit_val_batches=1, num_sanity_val_steps=0, **TRAINER_OPTIONS)
    trainer.fit(module, datamodule=data)
    assert trainer.state.finished and len(explainer.history) == 1
    assert "explain/qubo/average_drop" in trainer.callback_metrics
    assert any(not torch.equal(before[key], value) for key, value in module.state_dict().items())  # it trained


def test_a_callback_pinned_to_one_namespace_refuses_the_other_trainer(digits_model):
    module, data = modules_for("lightning.pytorch", digits_model)
    explainer = QuboExplanationCallback(DIGITS_LAYER, num_samples=10, sampler="exact", lightning="pytorch_lightning")
    trainer = load_namespace("lightning.pytorch").Trainer(callbacks=[explainer], max_epochs=1, **TRAINER_OPTIONS)
    with pytest.raises(TypeError, match=r"built for pytorch_lightning but runs in a lightning\.pytorch\.Trainer.*"
                                        r"lightning='lightning.pytorch'"):
        trainer.fit(module, datamodule=data)
    assert trainer.global_step == 0  # refused at setup, before any training step


def test_a_callback_of_only_one_namespace_is_refused_by_the_other():
    classic = load_namespace("pytorch_lightning")

    class OnlyClassic(classic.Callback):
        lightning_pin = None
        built_for = LightningCallback.built_for
        bind = LightningCallback.bind

    trainer = load_namespace("lightning.pytorch").Trainer(**TRAINER_OPTIONS)
    with pytest.raises(TypeError, match="OnlyClassic was built for pytorch_lightning but runs in a lightning.pytorch"):
        OnlyClassic().bind(trainer)
    assert OnlyClassic().bind(classic.Trainer(**TRAINER_OPTIONS)).name == "pytorch_lightning"


def test_a_bound_callback_still_pickles(validated):
    _, explainer = validated["lightning.pytorch"]
    copy = pickle.loads(pickle.dumps(explainer))
    assert copy.lightning is explainer.lightning and copy.history == explainer.history


def test_bad_namespace_arguments():
    with pytest.raises(ValueError, match="unknown Lightning namespace 'lightning'"):
        QuboExplanationCallback(DIGITS_LAYER, lightning="lightning")
    with pytest.raises(TypeError, match="needs a Lightning Trainer.*got builtins.object"):
        QuboExplanationCallback(DIGITS_LAYER).bind(object())
    with pytest.raises(TypeError, match="unknown explainer option.*num_sample"):
        QuboExplanationCallback(DIGITS_LAYER, num_sample=3)
    assert namespace_of(object()) is None


@pytest.mark.parametrize("name", NAMESPACES)
def test_tensorboard_loggers_of_both_namespaces_take_images(tmp_path, name):
    loggers = importlib.import_module(f"{name}.loggers")
    assert takes_images(loggers.TensorBoardLogger(tmp_path))
    assert not takes_images(loggers.CSVLogger(tmp_path))
