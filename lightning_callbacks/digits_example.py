"""The digits CNN of :mod:`captum_qubo.zoo` as a LightningModule, with its data: the example model of the
callback's example script, overhead benchmark and tests (the paper's shape, trains in seconds on a CPU).
"""
from __future__ import annotations

from typing import Optional

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from captum_qubo.zoo import DigitsCNN, load_digits_split

#: The layer to explain, as a dotted name inside :class:`DigitsClassifier`.
DIGITS_LAYER = "model.reduce"


class DigitsClassifier(pl.LightningModule):
    """:class:`~captum_qubo.zoo.DigitsCNN` trained with Adam and cross-entropy, logging validation accuracy.

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


class DigitsDataModule(pl.LightningDataModule):
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
