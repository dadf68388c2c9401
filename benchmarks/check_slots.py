"""decode=hybrid with data.shared_slots on the GPU: the same training batches as the usual path, bit for bit, through
the prefetcher (the slots page-locked, one copy each on a copy stream). The augmentation is off, so that the batches
depend only on the workers' crops and the device's resize.

    python benchmarks/check_slots.py /tmp/jpegs --workers 14 --batches 40

Prints one line per path (img/s of the loader alone: indicative, the first batches include the workers' start) and
`slots match: True` or the first batch that differs; exits 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from crossvit.data import ImageFolderDataModule


def batches(root: str, workers: int, n: int, batch: int, device: torch.device, **kwargs) -> list[torch.Tensor]:
    classes = len([p for p in (Path(root) / "train").iterdir() if p.is_dir()])
    m = ImageFolderDataModule(
        root=root, img_size=224, num_classes=classes, batch_size=batch, num_workers=workers, decode="hybrid",
        auto_augment=None, color_jitter=None, re_prob=0.0, hflip=0.0, **kwargs,
    )  # fmt: skip
    m.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=device), world_size=1, training=True)
    m.setup("fit")
    torch.manual_seed(0)
    loader, out = m.train_dataloader(), []
    start = time.perf_counter()
    for i, b in enumerate(loader):
        x, y = b if device.type == "cuda" else m.prepare(b, device, True)
        out.append((x.sum((1, 2, 3)).double().cpu(), y.cpu()))  # a checksum an image, on the host
        if i + 1 == n:
            break
    rate = n * batch / (time.perf_counter() - start)
    print(f"{'slots' if kwargs.get('shared_slots') else 'usual'}: {n} batches, {rate:,.0f} img/s (loader alone)")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=256)
    a = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    usual = batches(a.root, a.workers, a.batches, a.batch_size, device, shared_slots=False)
    slots = batches(a.root, a.workers, a.batches, a.batch_size, device, shared_slots=True)
    for i, ((x, y), (xs, ys)) in enumerate(zip(usual, slots)):
        if not (torch.equal(x, xs) and torch.equal(y, ys)):
            print(f"slots match: False (batch {i} differs)")
            sys.exit(1)
    print(f"slots match: True ({len(slots)} batches)")


if __name__ == "__main__":
    main()
