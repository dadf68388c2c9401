"""The image-folder loader's own speed: files on disk to an augmented training batch on the device.

    python benchmarks/make_jpeg_folder.py /tmp/jpegs
    python benchmarks/loader.py /tmp/jpegs --decode cpu gpu --workers 16 --out loader.json

decode=cpu: PIL decoding and timm's transforms in `--workers` processes, then the copy to the device.
decode=gpu: workers only read bytes; nvJPEG decodes and crossvit.data.batch_augment augments on the device.
decode=hybrid: workers decode timm's crop region of each file; resize, flip, RandAugment, normalisation and erasing
on the device.
Reports img/s and, for the device paths, the device time one batch takes (what it takes from a training step).
`--workers-only`: what the workers alone deliver (batches as they leave the DataLoader, nothing prepared on the
device). `--crop-backend`: decode=hybrid's worker decoder (crossvit.data.jpeg), nvimgcodec (only the crop's region)
or torchvision (the whole image, then cut); each is measured. `--shared-slots off on`: decode=hybrid without and with
data.shared_slots (on by default, as in the framework).

    python benchmarks/loader.py /tmp/jpegs --decode hybrid --workers 1 2 --workers-only \
        --crop-backend torchvision nvimgcodec --batch-size 64 --batches 30
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import torch

from crossvit.data import ImageFolderDataModule, jpeg
from crossvit.data.slots import SlotRef


def measure(
    root: Path,
    decode: str,
    workers: int,
    batch: int,
    batches: int,
    device: torch.device,
    workers_only: bool = False,
    shared_slots: bool = True,
) -> dict:
    classes = len([p for p in (root / "train").iterdir() if p.is_dir()])
    module = ImageFolderDataModule(
        root=str(root), img_size=240, num_classes=classes, batch_size=batch, num_workers=workers, decode=decode,
        shared_slots=shared_slots,
    )  # fmt: skip
    module.setup("fit")
    loader = iter(module.train_dataloader())
    gpu_ms = []
    warmup = 5
    for i in range(warmup + batches):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        item = next(loader)
        if workers_only:  # what crossed from the workers: the crops, or where in the shared slots they are
            x = module.slots.read(item[0]) if isinstance(item[0], SlotRef) else item[0]
        elif decode == "cpu":
            x, y = (t.to(device, non_blocking=True) for t in item)
        else:
            cuda = device.type == "cuda"
            if cuda:
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
            x, y = module.prepare(item, device, train=True)
            if cuda:
                end.record()
                gpu_ms.append((begin, end))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    row = dict(
        decode=decode,
        crop_backend=jpeg.default_backend() if decode == "hybrid" else None,
        workers=workers,
        workers_only=workers_only,
        shared_slots=shared_slots,
        batch=batch,
        img_s=round(batches * batch / seconds, 1),
        shape=list(x.shape),
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        cpu_cores=os.cpu_count(),
        torch=torch.__version__,
        date=str(date.today()),
    )
    if gpu_ms:
        times = sorted(b.elapsed_time(e) for b, e in gpu_ms[warmup:] or gpu_ms)
        row["device_ms_per_batch"] = round(times[len(times) // 2], 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("--decode", nargs="+", default=["cpu", "gpu", "hybrid"])
    parser.add_argument("--workers", type=int, nargs="+", default=[16])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--workers-only", action="store_true", help="the DataLoader's batches, not prepared")
    parser.add_argument("--crop-backend", nargs="+", default=[None], choices=[None, *jpeg.BACKENDS])
    parser.add_argument(
        "--shared-slots", nargs="+", default=["on"], choices=["off", "on"], help="decode=hybrid: data.shared_slots"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for decode in args.decode:
        for backend in args.crop_backend if decode == "hybrid" else [None]:
            if backend:  # what collate_crops' CropDecoder() takes; the workers fork after this
                jpeg.default_backend = lambda backend=backend: backend
            for workers in args.workers:
                for slots in args.shared_slots if decode == "hybrid" else ["off"]:
                    rows.append(
                        measure(
                            args.root,
                            decode,
                            workers,
                            args.batch_size,
                            args.batches,
                            device,
                            args.workers_only,
                            slots == "on",
                        )  # fmt: skip
                    )
                    r = rows[-1]
                    print(
                        f"decode={decode:3s} {r['crop_backend'] or '':11s} slots={slots:3s} workers={workers:2d}: "
                        f"{r['img_s']:>9,.0f} img/s  device ms/batch {r.get('device_ms_per_batch', '')}"
                    )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
