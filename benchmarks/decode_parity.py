"""Does the device-side augmentation train as well as timm's? Short runs on real photographs, each data.decode, seeds.

    python benchmarks/decode_parity.py /tmp/fmnist_jpegs --epochs 5 --seeds 0 1 2 --out parity.json

Writes an image folder of Fashion-MNIST photographs as RGB JPEGs (once; 10 classes, each image tinted, offset and
resized to a random size between 40 and 120 px, so crops and resizes do real work), then trains crossvit_micro_28
(`experiment=fashion_mnist`, the recipe's RandAugment and erasing) through `src/train.py` with each `data.decode`
and seed, and prints the test accuracy of each, with mean and spread per path. On a CPU, decode=gpu, hybrid and dali
run their batched augmentation on the CPU (the same code as on a GPU; dali decodes with DALI's CPU backend).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from crossvit.data.fashion_mnist import read_idx

ROOT = Path(__file__).resolve().parents[1]
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def write_folder(root: Path, train: int, val: int) -> None:
    rng = np.random.default_rng(0)
    for split, prefix, n in (("train", "train", train), ("val", "t10k", val)):
        images = read_idx(FMNIST / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(FMNIST / f"{prefix}-labels-idx1-ubyte.gz")
        for i in range(n):
            folder = root / split / f"class{labels[i]}"
            folder.mkdir(parents=True, exist_ok=True)
            rgb = images[i][..., None] * rng.uniform(0.4, 1.0, 3) + rng.uniform(0, 50, 3)
            w, h = rng.integers(40, 120, 2)
            image = Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).resize((int(w), int(h)), Image.BICUBIC)
            image.save(folder / f"{i}.jpg", quality=90)


def train(root: Path, decode: str, seed: int, epochs: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as run:
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "src" / "train.py"),
                "experiment=fashion_mnist",
                "data=image_folder",
                f"data.root={root}",
                "data.num_classes=10",
                f"data.decode={decode}",
                f"data.num_workers={workers}",
                "data.batch_size=64",
                "data.repeated_aug=false",
                f"seed={seed}",
                f"trainer.max_epochs={epochs}",
                "logger=csv",
                "~callbacks.progress_bar",
                "trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false",
                f"hydra.run.dir={run}",
            ],
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
        return json.loads((Path(run) / "metrics.json").read_text())["test/acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--val", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--decodes", nargs="+", default=["cpu", "hybrid", "gpu", "dali"])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not (args.root / "train").is_dir():
        write_folder(args.root, args.train, args.val)
    rows = []
    for decode in args.decodes:
        for seed in args.seeds:
            rows.append(
                dict(
                    decode=decode,
                    seed=seed,
                    epochs=args.epochs,
                    test_acc=train(args.root, decode, seed, args.epochs, args.workers),
                )
            )
            print(f"decode={decode:6s} seed={seed}: test acc {rows[-1]['test_acc']:.4f}", flush=True)
    print("\n| data.decode | test acc, each seed | mean | std |\n|---|---|---|---|")
    for decode in args.decodes:
        accs = [r["test_acc"] for r in rows if r["decode"] == decode]
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"| {decode} | {', '.join(f'{a:.4f}' for a in accs)} | {statistics.mean(accs):.4f} | {spread:.4f} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
