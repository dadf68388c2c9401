"""GPU check: Prefetcher (side-stream decode + augment) gives the batches the synchronous path gives.

    python benchmarks/check_prefetcher.py /tmp/jpegs

Both draw their random parameters in the same order, so with one seed they must agree (up to the
non-determinism of a few CUDA kernels); also reports how long each takes over 20 batches.
"""

from __future__ import annotations

import faulthandler
import sys
import time

import torch

from crossvit.data import ImageFolderDataModule
from crossvit.data.image_folder import Prefetcher


def batches(module: ImageFolderDataModule, prefetch: bool, n: int = 20) -> tuple[list[torch.Tensor], float]:
    torch.manual_seed(0)
    device = torch.device("cuda")
    loader = module.train_dataloader()
    loader.sampler.set_epoch(0)
    if prefetch:
        source = Prefetcher(loader, lambda b, g: module.prepare(b, device, True, g), device, timeout_s=120)
    else:  # the generator the prefetcher seeds from the global one
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
        source = (module.prepare(b, device, True, generator) for b in loader)
    out, start = [], time.perf_counter()
    for i, (x, _) in enumerate(source):
        out.append(x.float().mean((1, 2, 3)).cpu())  # a fingerprint per image
        if i + 1 == n:
            break
    torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> None:
    root = sys.argv[1]
    module = ImageFolderDataModule(
        root=root, img_size=240, num_classes=100, batch_size=256, num_workers=8, decode="gpu"
    )
    module.setup("fit")
    # Its first GPU run (2026-11-27) stalled somewhere in here for 5 minutes with no output: show where, if again.
    faulthandler.dump_traceback_later(100, exit=True)
    sync, t_sync = batches(module, prefetch=False)
    print(f"synchronous: 20 batches in {t_sync:.2f} s", flush=True)
    pre, t_pre = batches(module, prefetch=True)
    diff = max((a - b).abs().max().item() for a, b in zip(sync, pre))
    print(f"prefetcher vs synchronous: max |difference| of per-image means {diff:.2e} over {len(pre)} batches")
    print(f"20 batches: synchronous {t_sync:.2f} s, prefetched {t_pre:.2f} s")
    assert diff < 1e-2, diff


if __name__ == "__main__":
    main()
