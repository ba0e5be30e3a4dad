"""The paper's model shape on data that ships offline: conv features → "reduce" conv to N_f maps → linear head.

METHOD.md §3: their model is ResNet-18 (frozen, to layer3) → Conv3×3(256→N_f)+ReLU+BN → Linear(N_f·196→10),
trained with Adam 1e-3, batch 64, 20 epochs. STL-10 cannot be downloaded here, so the stand-in keeps the shape
on scikit-learn's 8×8 digits: a small conv feature extractor, the same reduce block, the same linear head.
As in the paper, the explained layer (``model.reduce``) feeds the linear head directly, so the importance α
is the same for every image of a class and only the redundancy J varies per image.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import nn

CHECKPOINT_VERSION = 1
HEADS = ("flatten", "gap")


class DigitsCNN(nn.Module):
    """Digits classifier with the paper's shape.

    Args:
        num_filters: N_f, the number of feature maps of the explained ``reduce`` block (16, 24, 32 in the paper).
        head: ``"flatten"`` (the paper's Linear(N_f·64 → 10) on the flattened maps) or ``"gap"`` (global average
            pooling, then Linear(N_f → 10): another architecture, used as held-out data by the formulation study).
    """

    def __init__(self, num_filters: int = 16, head: str = "flatten") -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.num_filters, self.head_kind = num_filters, head
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU()
        )
        self.reduce = nn.Sequential(nn.Conv2d(32, num_filters, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(num_filters))
        self.head = nn.Linear(num_filters * 8 * 8 if head == "flatten" else num_filters, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.reduce(self.features(images))
        return self.head(maps.flatten(1) if self.head_kind == "flatten" else maps.mean(dim=(2, 3)))


def load_digits_split(seed: int = 0, test_fraction: float = 0.3) -> Tuple[torch.Tensor, ...]:
    """``sklearn.datasets.load_digits`` as (x_train, y_train, x_test, y_test), stratified and seeded.

    Images are float32 (N, 1, 8, 8) in [0, 1]; labels are int64 digits 0-9.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[:, None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return (
        torch.from_numpy(x_train),
        torch.from_numpy(y_train).long(),
        torch.from_numpy(x_test),
        torch.from_numpy(y_test).long(),
    )


def default_cache_dir() -> Path:
    """$CAPTUM_QUBO_CACHE, else ~/.cache/captum_qubo (never inside the repository)."""
    return Path(os.environ.get("CAPTUM_QUBO_CACHE", Path.home() / ".cache" / "captum_qubo"))


def _fit(model: DigitsCNN, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for batch in order.split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.eval()


def train_digits_cnn(
    num_filters: int = 16,
    seed: int = 0,
    epochs: int = 20,
    cache_dir: Optional[os.PathLike] = None,
    head: str = "flatten",
) -> DigitsCNN:
    """Train (or load from the cache) the digits CNN; returns it in eval mode.

    Training takes seconds on a CPU and is seeded without touching the global RNG: the same arguments give the
    same weights. The checkpoint is written atomically, so parallel test workers can share the cache.

    Args:
        num_filters: N_f of the reduce block.
        seed: seeds initialisation and batch order.
        epochs: passes over the training split (20, as in the paper).
        cache_dir: where checkpoints live; default :func:`default_cache_dir`.
        head: ``"flatten"`` (the paper's shape) or ``"gap"`` (:class:`DigitsCNN`); trained on the split of ``seed``.
    """
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    kind = "" if head == "flatten" else f"_{head}"
    path = directory / f"digits_cnn_v{CHECKPOINT_VERSION}{kind}_nf{num_filters}_seed{seed}_ep{epochs}.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsCNN(num_filters, head)
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()
    x_train, y_train, _, _ = load_digits_split(seed)
    _fit(model, x_train, y_train, epochs, seed)
    directory.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(model.state_dict(), partial)
    os.replace(partial, path)
    return model
