"""CIFAR-10 / CIFAR-100 in torchvision's format; downloaded only when data.download=true."""

from __future__ import annotations

from pathlib import Path

import torch

from crossvit.errors import ConfigError

from .in_memory import InMemoryDataModule


class CIFARDataModule(InMemoryDataModule):
    def __init__(self, root: str, num_classes: int = 10, download: bool = False, **kwargs) -> None:
        if num_classes not in (10, 100):
            raise ConfigError(f"data.num_classes={num_classes}: CIFAR has 10 or 100 classes")
        kwargs.setdefault("mean", (0.4914, 0.4822, 0.4465) if num_classes == 10 else (0.5071, 0.4865, 0.4409))
        kwargs.setdefault("std", (0.2470, 0.2435, 0.2616) if num_classes == 10 else (0.2673, 0.2564, 0.2762))
        super().__init__(num_classes=num_classes, **kwargs)
        self.root = Path(root)
        self.download = download

    def _dataset(self, train: bool):
        from torchvision.datasets import CIFAR10, CIFAR100

        cls = CIFAR10 if self.num_classes == 10 else CIFAR100
        try:
            return cls(str(self.root), train=train, download=self.download)
        except RuntimeError as e:
            raise ConfigError(
                f"data.root={self.root} holds no CIFAR-{self.num_classes} ({e}); set data.download=true to fetch "
                f"it with torchvision, or point data.root at the folder that holds cifar-*-batches-py"
            ) from None

    def prepare_data(self) -> None:
        if self.download:
            self._dataset(True), self._dataset(False)

    def load(self):
        sets = [self._dataset(train) for train in (True, False)]
        x, x_test = (torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous() for s in sets)
        y, y_test = (torch.tensor(s.targets) for s in sets)
        return x, y, x_test, y_test
