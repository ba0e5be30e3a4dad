"""QuboExplanationCallback's pictures and loggers, and its memory over many epochs."""
import csv
import gc
import glob
import os

import numpy as np
import pytest
import lightning.pytorch as pl
import torch
from matplotlib import colormaps
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_callbacks import QuboExplanationCallback
from lightning_callbacks.digits_example import DIGITS_LAYER, DigitsClassifier, DigitsDataModule
from lightning_callbacks.figures import overlay_grid

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


class ImageListLogger(Logger):
    """A logger with W&B's ``log_image(key, images, step)`` signature that keeps what it receives."""

    def __init__(self):
        super().__init__()
        self.images = {}

    @property
    def name(self):
        return "images"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        pass

    def log_image(self, key, images, step=None):
        self.images[key] = images


def test_overlay_grid_blends_the_colour_map_over_the_greyscale_input():
    inputs = torch.zeros(2, 1, 4, 4)
    inputs[1, 0, :, 2:] = 1.0  # right half white
    saliency = torch.ones(2, 1, 4, 4)
    grid = overlay_grid(inputs, {"qubo": saliency}, cell=8, pad=1)
    assert grid.shape == (2 * 10, 2 * 10, 3) and grid.dtype == np.uint8
    hot = np.asarray(colormaps["inferno"](1.0)[:3])
    tile = 10 + 1  # row 1 (the method), past the padding
    assert np.array_equal(grid[tile, 1], np.round(255 * 0.5 * hot).astype(np.uint8))  # black input: half colour
    assert np.array_equal(grid[tile, 10 + 1 + 7], np.round(255 * (0.5 + 0.5 * hot)).astype(np.uint8))  # white
    assert np.array_equal(grid[1, 10 + 1 + 7], [255, 255, 255]) and np.array_equal(grid[1, 10 + 1], [0, 0, 0])


def test_scalars_reach_csv_and_tensorboard_and_pictures_reach_image_loggers(tmp_path, digits_model):
    module = DigitsClassifier()
    module.model.load_state_dict(digits_model.state_dict())
    loggers = [CSVLogger(tmp_path, name="csv"), TensorBoardLogger(tmp_path, name="tb"), ImageListLogger()]
    trainer = pl.Trainer(logger=loggers, callbacks=[QuboExplanationCallback(DIGITS_LAYER, num_samples=20,
                         sampler="exact", num_images=6)], enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(module, datamodule=DigitsDataModule())
    loggers[0].save()
    logged = {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("explain/")}
    assert len(logged) == 11  # 7 QUBO scalars, 4 Grad-CAM top-K ones (no sizes, count or solve time)

    with open(os.path.join(loggers[0].log_dir, "metrics.csv")) as handle:
        row = next(csv.DictReader(handle))
    assert {key: pytest.approx(float(row[key])) for key in logged} == logged

    events = EventAccumulator(glob.glob(os.path.join(loggers[1].log_dir, "events.*"))[0], size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == {"explain/overlays", "explain/bc_matrix"}
    assert set(logged) <= set(events.Tags()["scalars"])
    overlays = events.Images("explain/overlays")[0]
    assert (overlays.height, overlays.width) == (3 * 100, 6 * 100)  # input row + QUBO row + Grad-CAM row

    pictures = loggers[2].images
    assert set(pictures) == {"explain/overlays", "explain/bc_matrix"}
    assert all(p[0].dtype == np.uint8 and p[0].ndim == 3 and p[0].shape[2] == 3 for p in pictures.values())
    assert pictures["explain/overlays"][0].shape == (300, 600, 3)


class MemoryProbe(Callback):
    """After the explainer, at the given epochs: live Python objects, bytes held by live tensors, resident set size."""

    def __init__(self, epochs):
        self.epochs, self.samples = epochs, []

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch not in self.epochs:
            return
        gc.collect()
        objects = gc.get_objects()
        storages = {}
        for obj in objects:
            if isinstance(obj, torch.Tensor):
                storage = obj.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        self.samples.append({"objects": len(objects), "tensor_bytes": sum(storages.values()), "rss": rss})
        del objects


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the resident set size from /proc")
def test_no_memory_growth_over_22_epochs(tmp_path):
    probe = MemoryProbe(epochs={4, 21})
    explainer = QuboExplanationCallback(DIGITS_LAYER, num_samples=10, sampler="exact", images_every_n_epochs=5)
    trainer = pl.Trainer(max_epochs=22, callbacks=[explainer, probe], logger=TensorBoardLogger(tmp_path),
                         limit_val_batches=1, num_sanity_val_steps=0, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(DigitsClassifier(), DigitsDataModule(train_size=64))
    assert len(explainer.history) == 22
    early, late = probe.samples  # after warm-up and at the end: 17 explained epochs apart, 3 with pictures
    # One explained epoch holds ~80 kB of tensors (inputs, activations, maps); keeping any of it would show.
    assert late["tensor_bytes"] - early["tensor_bytes"] <= 1024
    # A kept BC-matrix figure alone is ~10,000 objects; the history legitimately grows by a few dicts per epoch and
    # Lightning/TensorBoard keep small bookkeeping (measured +150..+480 over these 17 epochs, load-dependent).
    assert late["objects"] - early["objects"] <= 2000
    assert late["rss"] - early["rss"] <= 32 * 2**20
