"""Write an ImageNet-shaped JPEG folder (root/{train,val}/<class>/*.JPEG) for loader and in-loop benchmarks.

    python benchmarks/make_jpeg_folder.py /tmp/jpegs --train 22000 --val 2000 --classes 100

500x375 px, quality 90, about 75 KB a file like ImageNet's: a smooth random colour field with fine noise (JPEG
size depends on detail, so flat or pure-noise images would time decoding wrongly). Deterministic by --seed.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def write(args: tuple[str, int, int, int, int, int]) -> int:
    path, seed, width, height, quality, label = args
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
    texture = np.asarray(
        Image.fromarray(rng.uniform(0, 255, (height // 4, width // 4, 3)).astype(np.uint8)).resize(
            (width, height), Image.BILINEAR
        ),
        np.float32,
    )
    pixels = 0.75 * field + 0.25 * texture + rng.normal(0, 8, (height, width, 3)) + 6 * (label % 10)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=quality)
    return os.path.getsize(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("--train", type=int, default=22000, help="training images in all")
    parser.add_argument("--val", type=int, default=2000, help="validation images in all")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--size", default="500x375", help="WIDTHxHEIGHT")
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    jobs = []
    for split, n, offset in (("train", args.train, 0), ("val", args.val, 10**8)):
        for c in range(args.classes):
            (args.root / split / f"n{c:08d}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            c = i % args.classes
            path = args.root / split / f"n{c:08d}" / f"{split}_{i:08d}.JPEG"
            jobs.append((str(path), args.seed + offset + i, width, height, args.quality, c))
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        sizes = list(pool.map(write, jobs, chunksize=64))
    print(
        f"{len(sizes)} JPEGs ({args.train} train, {args.val} val, {args.classes} classes) in {args.root}: "
        f"{np.mean(sizes) / 1e3:.0f} KB each, {time.perf_counter() - start:.1f} s on {args.workers} processes"
    )


if __name__ == "__main__":
    main()
