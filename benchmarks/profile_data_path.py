"""Where one decode=gpu training batch's time goes, stage by stage: host (launch) time and device time.

python benchmarks/profile_data_path.py /tmp/jpegs --batches 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from crossvit.data import ImageFolderDataModule
from crossvit.data.batch_augment import random_erasing, random_resized_crop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda")
    module = ImageFolderDataModule(
        root=str(args.root), img_size=240, num_classes=100, batch_size=256, num_workers=8, decode="gpu"
    )
    module.setup("fit")
    mean, std = module.mean.to(device), module.std.to(device)
    stages = {
        "decode": lambda b: module.decode_batch(b[0], b[1], device),
        "crop_resize": lambda imgs: random_resized_crop(imgs, 240)[0],
        "flip": lambda x: torch.where((torch.rand(len(x)) < 0.5).to(device).view(-1, 1, 1, 1), x.flip(-1), x),
        "rand_augment": module.rand_augment,
        "normalise": lambda x: (x - mean) / std,
        "erasing": lambda x: random_erasing(x, 0.25),
    }
    times = {name: [] for name in stages}
    for i, batch in enumerate(module.train_dataloader()):
        if i == args.batches + 2:
            break
        value = batch
        for name, fn in stages.items():
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            value = fn(value)
            t1 = time.perf_counter()
            torch.cuda.synchronize()
            t2 = time.perf_counter()
            if i >= 2:
                times[name].append((1e3 * (t1 - t0), 1e3 * (t2 - t0)))
    rows = []
    for name, ts in times.items():
        host = sorted(t[0] for t in ts)[len(ts) // 2]
        total = sorted(t[1] for t in ts)[len(ts) // 2]
        rows.append(dict(stage=name, host_ms=round(host, 2), total_ms=round(total, 2)))
        print(f"{name:14s} host {host:7.2f} ms   host+device {total:7.2f} ms")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
