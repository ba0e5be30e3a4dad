"""What a dataset run explains: indexable samples that each carry a stable sample id.

Every item is a dict ``{"image", "sample_id", "source", "label", "error"}`` so the default collate function
batches it (strings become lists) and the writer can key every record by ``sample_id``. An image that cannot be
read does not stop the run: its item holds a zero image of the right shape and the reason in ``error``; the
explainer skips it and the writer records it, so the manifest can report it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch.utils.data import Dataset

#: Suffixes an image folder is scanned for (as the ``explain`` command does).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")

#: ``label`` of a sample whose class is unknown (an image folder without class sub-folders).
NO_LABEL = -1


class SampleSource(Dataset):
    """Base of the sources: ``sample_ids`` known up front (for resuming) and items as dicts.

    Subclasses set :attr:`sample_ids` and implement :meth:`load` (image tensor and label of one index).
    """

    sample_ids: List[str]

    def __len__(self) -> int:
        return len(self.sample_ids)

    def describe(self) -> Dict[str, Any]:
        """What identifies the source in the output folder's configuration (not its length: a run may grow)."""
        raise NotImplementedError

    def load(self, index: int):
        raise NotImplementedError

    def placeholder(self) -> torch.Tensor:
        raise NotImplementedError

    def source_of(self, index: int) -> str:
        return self.sample_ids[index]

    def __getitem__(self, index: int) -> Dict[str, Any]:
        item = {"sample_id": self.sample_ids[index], "source": self.source_of(index), "error": ""}
        try:
            image, label = self.load(index)
        except (OSError, ValueError, SyntaxError) as error:  # PIL raises all three on broken files
            image, label, item["error"] = self.placeholder(), NO_LABEL, f"{type(error).__name__}: {error}"
        item.update(image=image, label=int(label))
        return item


class DigitsSource(SampleSource):
    """scikit-learn's 8×8 digits (all 1797 images, in the package's order) as (1, 8, 8) float32 in [0, 1].

    Args:
        limit: keep the first ``limit`` images (None: all). Ids are ``digits/0000`` ... by position in
            ``load_digits()``, so a larger ``limit`` on a rerun adds samples without renaming the old ones.
    """

    def __init__(self, limit: Optional[int] = None) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        count = len(digits.target) if limit is None else min(int(limit), len(digits.target))
        if count < 1:
            raise ValueError(f"limit must be a positive number of images, got {limit}")
        self.images = torch.from_numpy((digits.images[:count] / 16.0).astype("float32"))[:, None]
        self.labels = torch.from_numpy(digits.target[:count]).long()
        self.sample_ids = [f"digits/{index:04d}" for index in range(count)]

    def describe(self) -> Dict[str, Any]:
        return {"kind": "digits"}

    def load(self, index: int):
        return self.images[index], self.labels[index]

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(1, 8, 8)


class ImageFolderSource(SampleSource):
    """Image files under a folder, preprocessed as :func:`~captum_qubo.zoo.images.preprocess_image` does.

    Files directly in ``root`` have no label; files in sub-folders take the sub-folder's position in the sorted
    sub-folder names as label (torchvision's ``ImageFolder`` convention). Ids are paths relative to ``root``.

    Args:
        root: the folder.
        image_size: side of the centre crop.
        normalization: a key of :data:`~captum_qubo.zoo.images.NORMALIZATIONS`.
        channels: 3 (RGB) or 1 (the mean of R, G and B, for greyscale models such as the digits CNN).
    """

    def __init__(self, root: Path, image_size: int, normalization: str, channels: int = 3) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (greyscale) or 3 (RGB), got {channels!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"image folder {str(root)!r} not found or not a folder")
        files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"image folder {str(root)!r} has no image files ({', '.join(IMAGE_SUFFIXES)})")
        classes = sorted({p.relative_to(self.root).parts[0] for p in files if len(p.relative_to(self.root).parts) > 1})
        self.class_names = classes
        self.files = files
        self.sample_ids = [p.relative_to(self.root).as_posix() for p in files]
        self.image_size = image_size
        self.normalization = normalization
        self.channels = channels

    def describe(self) -> Dict[str, Any]:
        return {"kind": "images", "root": str(self.root.resolve()), "image_size": self.image_size,
                "normalization": self.normalization, "channels": self.channels}

    def source_of(self, index: int) -> str:
        return str(self.files[index])

    def load(self, index: int):
        from captum_qubo.zoo.images import preprocess_image, read_image

        parts = self.files[index].relative_to(self.root).parts
        label = self.class_names.index(parts[0]) if len(parts) > 1 else NO_LABEL
        image = preprocess_image(read_image(self.files[index]), self.image_size, normalization=self.normalization)
        return (image.mean(dim=0, keepdim=True) if self.channels == 1 else image), label

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(self.channels, self.image_size, self.image_size)


class RemainingSamples(Dataset):
    """The samples of ``source`` whose ids are not in ``done``, in the source's order (what a rerun explains).

    Args:
        source: the full source.
        done: sample ids already written to trusted shards.
    """

    def __init__(self, source: SampleSource, done: Sequence[str]) -> None:
        done = set(done)
        self.source = source
        self.indices = [i for i, sample_id in enumerate(source.sample_ids) if sample_id not in done]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        return self.source[self.indices[index]]
