"""The training augmentation on the device (ImageFolderDataModule.augment: flip, RandAugment, normalise, erase) on
one batch, whole and piece by piece, compiled (data.compile_augment=true, the default) and eager: how long the host
takes to issue it and how long the device takes to run it.

    python benchmarks/augment_speed.py --batch 256 --size 240 --out /tmp/augment.json

For each piece, `host_ms` is the time to issue one call (the device not waited for), `wall_ms` one call's time with
the device waited for at the end of many: where wall is close to host, the host sets the pace (launches, small
copies), otherwise the device does. `--profile` adds torch.profiler's table of the whole augmentation's kernels.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from crossvit.data import ImageFolderDataModule
from crossvit.data.batch_augment import BLEND_OPS, LUT_OPS, WARP_OPS, random_erasing


def timed(fn: Callable[[], object], calls: int, device: torch.device) -> dict[str, float]:
    for _ in range(3):
        fn()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    host = 0.0
    start = time.perf_counter()
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        host += time.perf_counter() - t
    sync()
    wall = time.perf_counter() - start
    return dict(host_ms=round(1e3 * host / calls, 3), wall_ms=round(1e3 * wall / calls, 3))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=240)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    x8 = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8, device=device)
    x = x8.float()
    rows = []
    print(f"batch {args.batch} x 3 x {args.size}^2 on {device}")
    print(f"{'piece':30s} {'mode':9s} {'host ms':>9s} {'wall ms':>9s}")
    for compiled in (True, False):
        # The module's recipe (conf/data/image_folder.yaml's augmentation); no files are read, so no root is needed.
        module = ImageFolderDataModule(
            root="unused", img_size=args.size, decode="gpu", num_classes=1000, compile_augment=compiled
        )
        module.warm_up(device)
        ra = module.rand_augment

        def layer(kind: tuple[str, ...] | None, ra=ra) -> Callable[[], object]:
            def run():
                op, applied, m, sign = (t[0] for t in ra.sample(args.batch))
                if kind is not None:  # every applied image draws an op of this kind
                    ids = torch.tensor([ra.ops.index(k) for k in kind])
                    op = ids[torch.randint(len(ids), op.shape)]
                return ra.apply_layer(x.clone(), op, applied, m, sign)

            return run

        pieces = {
            "augment (whole)": lambda module=module: module.augment(x8.float()),
            "clone (in each layer below)": lambda: x.clone(),
            "RandAugment layer": layer(None),
            "  lookup ops only": layer(LUT_OPS),
            "  warp ops only": layer(WARP_OPS),
            "  blend ops only": layer(BLEND_OPS),
            "erase (eager, alone)": lambda module=module: random_erasing(x, module.re_prob),
        }
        mode = "compiled" if compiled else "eager"
        for name, fn in pieces.items():
            row = dict(piece=name.strip(), mode=mode, batch=args.batch, size=args.size, **timed(fn, args.calls, device))
            rows.append(row)
            print(f"{name:30s} {mode:9s} {row['host_ms']:9.3f} {row['wall_ms']:9.3f}", flush=True)
    if args.profile and device.type == "cuda":
        with torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        ) as prof:
            for _ in range(10):
                module.augment(x8.float())  # the eager module: its kernels one by one
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=50))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=50))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
