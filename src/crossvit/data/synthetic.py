"""Random images of any size and class count, for tests and benchmarks."""

from __future__ import annotations

import torch

from .in_memory import InMemoryDataModule


class SyntheticDataModule(InMemoryDataModule):
    """`size` random uint8 images of `in_chans` x `img_size`^2 with random labels, fixed by `seed`."""

    def __init__(self, size: int = 512, test_size: int = 128, seed: int = 0, **kwargs) -> None:
        kwargs.setdefault("val_size", test_size)
        super().__init__(**kwargs)
        self.size, self.test_size, self.seed = size, test_size, seed

    def load(self):
        g = torch.Generator().manual_seed(self.seed)
        n = self.size + self.test_size
        x = torch.randint(0, 256, (n, self.in_chans, self.img_size, self.img_size), dtype=torch.uint8, generator=g)
        y = torch.randint(0, self.num_classes, (n,), generator=g)
        return x[: self.size], y[: self.size], x[self.size :], y[self.size :]
