"""The digits CNN of :mod:`captum_qubo.zoo` as a LightningModule, with its data: the example model of the
callback's example script, overhead benchmark and tests (the paper's shape, trains in seconds on a CPU).

A LightningModule belongs to one Lightning namespace (a ``pytorch_lightning.Trainer`` rejects a
``lightning.pytorch.LightningModule``), so the classes exist once per installed namespace:
:func:`digits_modules` returns the pair for a namespace, and ``DigitsClassifier`` / ``DigitsDataModule`` are the
pair of the default one (``lightning.pytorch`` when installed, what Lightning's docs teach).

Run ``python -m lightning_callbacks.digits_example [--lightning pytorch_lightning]`` to train two epochs with the
callback and print what it logged.
"""
from __future__ import annotations

import argparse
from functools import lru_cache
from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from captum_qubo.zoo import DigitsCNN, load_digits_split
from lightning_callbacks.lightning_namespace import NAMESPACES, default_namespace, installed_namespaces, load_namespace

#: The layer to explain, as a dotted name inside :class:`DigitsClassifier`.
DIGITS_LAYER = "model.reduce"


class DigitsClassifierSteps:
    """:class:`~captum_qubo.zoo.DigitsCNN` trained with Adam and cross-entropy, logging validation accuracy.

    Mixed into a LightningModule of each namespace by :func:`digits_modules`.

    Args:
        num_filters: N_f of the explained reduce block.
        learning_rate: Adam's learning rate (1e-3 as in the paper).
        input_noise: standard deviation of Gaussian noise added to training images (0: none).
    """

    def __init__(self, num_filters: int = 16, learning_rate: float = 1e-3, input_noise: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = DigitsCNN(num_filters)

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        images, labels = batch
        if self.hparams.input_noise:
            images = images + self.hparams.input_noise * torch.randn_like(images)
        loss = nn.functional.cross_entropy(self(images), labels)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        images, labels = batch
        logits = self(images)
        self.log("val_loss", nn.functional.cross_entropy(logits, labels), sync_dist=True)
        self.log("val_acc", (logits.argmax(dim=1) == labels).float().mean(), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)


class DigitsDataSteps:
    """scikit-learn's digits split by :func:`~captum_qubo.zoo.load_digits_split` (70 % train, 30 % validation).

    Args:
        batch_size: training and validation batch size (64 as in the paper).
        seed: seed of the split.
        train_size: use only the first ``train_size`` training images (None: all), for short test epochs.
    """

    def __init__(self, batch_size: int = 64, seed: int = 0, train_size: Optional[int] = None) -> None:
        super().__init__()
        self.batch_size = batch_size
        x_train, y_train, x_val, y_val = load_digits_split(seed)
        self.train_set = TensorDataset(x_train[:train_size], y_train[:train_size])
        self.val_set = TensorDataset(x_val, y_val)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)


def digits_modules(lightning: Optional[str] = None) -> Tuple[type, type]:
    """(LightningModule class, LightningDataModule class) of the digits example for one namespace.

    Args:
        lightning: ``"lightning.pytorch"`` or ``"pytorch_lightning"``; None: the default namespace.

    Returns:
        The two classes; module-level names, so they pickle (``ddp_spawn``).
    """
    return _digits_modules(lightning or default_namespace().name)


@lru_cache(maxsize=None)
def _digits_modules(name: str) -> Tuple[type, type]:
    namespace = load_namespace(name)
    suffix = "" if namespace.name == default_namespace().name else "_" + namespace.name.replace(".", "_")
    classes = []
    for stem, steps, base in (("DigitsClassifier", DigitsClassifierSteps, namespace.LightningModule),
                              ("DigitsDataModule", DigitsDataSteps, namespace.module.LightningDataModule)):
        name = stem + suffix
        cls = type(name, (steps, base), {"__module__": __name__, "__qualname__": name, "__doc__": steps.__doc__})
        globals()[name] = cls  # pickle finds classes by module and name
        classes.append(cls)
    return classes[0], classes[1]


for _namespace in installed_namespaces():
    digits_modules(_namespace.name)
DigitsClassifier, DigitsDataModule = digits_modules()


def main(argv: Optional[list] = None) -> None:
    """Train the digits CNN for two epochs with the callback and print the explanation metrics it logged."""
    from lightning_callbacks.qubo_explanation import QuboExplanationCallback

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--lightning", choices=NAMESPACES, default=default_namespace().name)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    classifier, data = digits_modules(args.lightning)
    load_namespace(args.lightning).module.seed_everything(0, verbose=False)
    trainer = load_namespace(args.lightning).Trainer(
        max_epochs=args.epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        callbacks=[QuboExplanationCallback(DIGITS_LAYER, num_samples=32, sampler="exact", seed=0)],
    )
    trainer.fit(classifier(), datamodule=data(train_size=512))
    for name, value in sorted(trainer.callback_metrics.items()):
        print(f"{name:40s} {float(value):.4f}")


if __name__ == "__main__":
    main()
