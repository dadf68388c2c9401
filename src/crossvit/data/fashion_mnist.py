"""Fashion-MNIST from its IDX files: Debian's dataset-fashion-mnist, or torchvision's download."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from crossvit.errors import ConfigError

from .in_memory import InMemoryDataModule

DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array; the header gives dtype (uint8 here) and shape."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    if raw[:3] != b"\x00\x00\x08":
        raise ConfigError(f"{path} is not an IDX file of unsigned bytes")
    shape = np.frombuffer(raw, ">u4", count=ndim, offset=4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "FashionMNIST" / "raw"):
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


class FashionMNISTDataModule(InMemoryDataModule):
    """The embedded default: 60k train (5k held out for validation) and 10k test images, 28x28, 10 classes."""

    def __init__(self, root: str = DEBIAN_ROOT, download: bool = False, **kwargs) -> None:
        kwargs.setdefault("mean", (0.2860,))
        kwargs.setdefault("std", (0.3530,))
        super().__init__(**kwargs)
        self.root = Path(root)
        self.download = download

    def prepare_data(self) -> None:
        if self.download and _find(self.root, FILES["train_images"]) is None:
            from torchvision.datasets import FashionMNIST

            for train in (True, False):
                FashionMNIST(str(self.root), train=train, download=True)

    def load(self):
        paths = {key: _find(self.root, stem) for key, stem in FILES.items()}
        missing = [FILES[k] for k, p in paths.items() if p is None]
        if missing:
            raise ConfigError(
                f"data.root={self.root} holds no Fashion-MNIST files {missing}. Install them with "
                f"`make data` (Debian's dataset-fashion-mnist, into {DEBIAN_ROOT}), fetch them once with "
                f"data.download=true, or point data.root at a folder with the four IDX files."
            )
        arrays = {key: torch.from_numpy(read_idx(path).copy()) for key, path in paths.items()}
        return (
            arrays["train_images"].unsqueeze(1),
            arrays["train_labels"].long(),
            arrays["test_images"].unsqueeze(1),
            arrays["test_labels"].long(),
        )
