"""The training step with the decode=gpu data path in one loop, without Lightning: where in-loop time goes.

    python benchmarks/step_with_data.py /tmp/jpegs --model crossvit_18 --steps 40 --trace

Variants, each the compiled bf16 step (forward, backward, fused AdamW) on batches of `--batch`:
  static    one device-resident batch, every step (the raw step, timed like the others: wall clock)
  inline    each step's batch from the workers, prepared on the device (`--decode gpu` or `hybrid`) before the step
  prefetch  the same through crossvit.data.image_folder.Prefetcher (a thread and a CUDA stream of its own)
  dali      (`--decode dali`: static, static_aug, this, dali_thread) NVIDIA DALI's pipeline decodes timm's
            random-resized-crop region of each file ("mixed": the GPU's JPEG engines, CUDA and `--dali-threads`
            host threads, in DALI's own threads and stream, `--prefetch` batches ahead) and resizes it on the GPU;
            the module's GPU augmentation (flip, RandAugment, normalise, erase) follows in the step's thread.
            DALI is not a dependency: install its wheel (nvidia-dali-cuda130) to run this. `--dali-only` times the
            pipeline alone; `--dali-source sampler` feeds it the files in a sampler's order (FileBytes).
  static_aug  the static batch through the module's augmentation each step: the ceiling with free decoding
  dali_thread DALI's batches taken and augmented in the Prefetcher's thread and stream (`--prefetch` ahead)
`--trace` adds a torch.profiler table of a few inline steps (host calls that wait on the device show there).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2

from crossvit.data import ImageFolderDataModule
from crossvit.data.image_folder import Prefetcher
from crossvit.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--model", default="crossvit_18")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--mode", default="reduce-overhead")
    parser.add_argument("--decode", default="gpu", choices=["gpu", "hybrid", "dali"])
    parser.add_argument("--dali-threads", type=int, default=14, help="DALI's host threads")
    parser.add_argument("--hw-load", type=float, default=0.9, help="DALI's share of JPEGs for the hardware engines")
    parser.add_argument("--prefetch", type=int, default=2, help="DALI's batches queued ahead")
    parser.add_argument("--dali-only", action="store_true", help="time DALI's pipeline without a step")
    parser.add_argument(
        "--no-augment",
        action="store_true",
        help="--dali-only without the module's GPU augmentation; adds the augmentation alone on a static batch",
    )
    parser.add_argument(
        "--dali-full",
        action="store_true",
        help="DALI decodes whole files, then cuts timm's crops "
        "(fn.random_resized_crop), instead of decoding the crop's region",
    )
    parser.add_argument(
        "--dali-source",
        default="reader",
        choices=["reader", "sampler"],
        help="DALI's file reader, or files in a "
        "sampler's order read by DALI's worker processes (FileBytes), as a DALI data path would take them",
    )
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda", 0)
    model = create_model(args.model).to(device).train()
    forward = torch.compile(model.forward_branches, mode=args.mode)
    opt = create_optimizer_v2(model, opt="adamw", lr=1e-4, weight_decay=0.05, fused=True)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(torch.stack(forward(x)).mean(0), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    classes = len([p for p in (args.root / "train").iterdir() if p.is_dir()])
    size = model.img_size[0]
    module = ImageFolderDataModule(
        root=str(args.root),
        img_size=size,
        num_classes=classes,
        batch_size=args.batch,
        num_workers=args.workers,
        decode="hybrid" if args.decode == "dali" else args.decode,
    )
    module.setup("fit")

    def static() -> Iterator:
        x = torch.randn(args.batch, 3, size, size, device=device)
        y = torch.randint(0, classes, (args.batch,), device=device)
        while True:
            yield x, y

    def inline() -> Iterator:
        while True:
            for batch in module.train_dataloader():
                yield module.prepare(batch, device, train=True)

    def prefetch(priority: int = 0) -> Callable[[], Iterator]:
        def batches() -> Iterator:
            while True:
                loader = module.train_dataloader()
                prepare = lambda b, g: module.prepare(b, device, True, g)  # noqa: E731
                yield from Prefetcher(loader, prepare, device, timeout_s=120, priority=priority)

        return batches

    def dali() -> Iterator:
        batches = dali_batches(
            args.root / "train",
            size,
            args.batch,
            args.dali_threads,
            args.hw_load,
            args.prefetch,
            source=args.dali_source,
            full=args.dali_full,
        )
        for x, y in batches:
            x = x.permute(0, 3, 1, 2).contiguous().float()
            yield (x if args.no_augment else module.augment(x)), y.view(-1).long()

    def dali_thread() -> Iterator:
        """DALI's batches taken, and augmented, in the Prefetcher's thread and stream: the step's thread only
        launches steps, as decode=hybrid's loop in Lightning."""

        class Batches:  # what the Prefetcher iterates: DALI's endless batches (no sampler to set epochs on)
            sampler = None

            def __iter__(self):
                return dali_batches(
                    args.root / "train", size, args.batch, args.dali_threads, args.hw_load, 2, source=args.dali_source
                )

        def prepare(batch, generator):
            x, y = batch
            x = x.permute(0, 3, 1, 2).contiguous().float()
            return (x if args.no_augment else module.augment(x, generator)), y.view(-1).long()

        yield from Prefetcher(Batches(), prepare, device, depth=args.prefetch, timeout_s=120)

    def augment_only() -> Iterator:
        x = torch.randint(0, 256, (args.batch, 3, size, size), device=device, dtype=torch.uint8)
        y = torch.randint(0, classes, (args.batch,), device=device)
        while True:
            yield module.augment(x.float()), y

    # prefetch_hi: the prefetcher's stream at the device's highest priority (data kernels ahead of the step's).
    highest = torch.cuda.Stream.priority_range()[1]
    variants = (("static", static), ("inline", inline), ("prefetch", prefetch()), ("prefetch_hi", prefetch(highest)))
    if args.decode == "dali":
        # static_aug: the static batch through the module's augmentation each step, the ceiling with free decoding
        variants = (("static", static), ("static_aug", augment_only), ("dali", dali), ("dali_thread", dali_thread))
    if args.dali_only:
        step = lambda x, y: None  # noqa: E731
        variants = (("dali_only", dali),) + ((("augment_only", augment_only),) if args.no_augment else ())
    rows = []
    for name, source in variants:
        batches = source()
        for _ in range(8):  # compile, CUDA graph capture, workers starting
            step(*next(batches))
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.steps):
            step(*next(batches))
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        rows.append(
            dict(
                variant=name,
                decode=args.decode,
                workers=args.dali_threads if name.startswith("dali") else args.workers,
                **(
                    dict(
                        hw_load=args.hw_load,
                        prefetch=args.prefetch,
                        source=args.dali_source,
                        augment=not args.no_augment,
                        region_decode=not args.dali_full,
                    )
                    if name.startswith("dali")
                    else {}
                ),
                model=args.model,
                img_s=round(args.steps * args.batch / seconds, 1),
                ms_per_step=round(1e3 * seconds / args.steps, 2),
            )
        )
        print(f"{name:9s} {rows[-1]['img_s']:9,.0f} img/s  {rows[-1]['ms_per_step']:7.2f} ms/step", flush=True)
        if name in ("inline", "dali", "dali_thread") and args.trace:
            with torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            ) as prof:
                for _ in range(6):
                    step(*next(batches))
                torch.cuda.synchronize()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60))
            print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=60))
            on_device = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
            kernels = sum(e.self_device_time_total for e in on_device) / 6 / 1e3
            print(f"{name}: device kernels {kernels:.2f} ms a step (all streams), against {rows[-1]['ms_per_step']} ms")
        del batches
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


class FileBytes:
    """DALI's parallel external source, read in its worker processes: sample i of an epoch is file order[i] of a
    permutation drawn for that epoch. It stands in for the DataModule's sampler (repeated augmentation, DDP shards,
    mid-epoch resume), whose order a DALI data path would pass this way; `fn.readers.file` knows none of those."""

    def __init__(self, files: list[str], labels: list[int], batch: int, seed: int = 0) -> None:
        self.files, self.labels, self.seed = files, labels, seed
        self.per_epoch = len(files) // batch * batch
        self.epoch, self.order = -1, None

    def __call__(self, info):
        if info.idx_in_epoch >= self.per_epoch:
            raise StopIteration
        if info.epoch_idx != self.epoch:
            self.epoch = info.epoch_idx
            self.order = np.random.default_rng(self.seed + self.epoch).permutation(len(self.files))
        i = self.order[info.idx_in_epoch]
        return np.fromfile(self.files[i], dtype=np.uint8), np.array([self.labels[i]], dtype=np.int32)


def dali_batches(
    root: Path,
    size: int,
    batch: int,
    threads: int,
    hw_load: float,
    prefetch: int,
    device_id: int | None = 0,
    source: str = "reader",
    source_workers: int = 4,
    full: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (uint8 NHWC crops, int32 labels) batches from DALI, epoch after epoch, on GPU `device_id` (None: the
    CPU, which checks the pipeline where no GPU is). The crop's area and aspect ratio ranges are timm's. `source`:
    "reader" (DALI's file reader) or "sampler" (FileBytes in `source_workers` processes). `full`: decode whole
    files, then crop and resize in one op, rather than decode each crop's region."""
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

    on_gpu = device_id is not None
    extra = {}
    if source == "sampler":
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        pairs = [(str(f), c) for c, name in enumerate(classes) for f in sorted((root / name).iterdir())]
        source_fn = FileBytes([f for f, _ in pairs], [c for _, c in pairs], batch)
        extra = dict(py_num_workers=source_workers, py_start_method="spawn")

    @pipeline_def
    def pipeline():
        if source == "sampler":
            files, labels = fn.external_source(
                source=source_fn, num_outputs=2, batch=False, parallel=True, dtype=[types.UINT8, types.INT32]
            )
        else:
            files, labels = fn.readers.file(file_root=str(root), random_shuffle=True, name="reader")
        decoder = dict(device="mixed" if on_gpu else "cpu", output_type=types.RGB)
        decoder.update(dict(hw_decoder_load=hw_load) if on_gpu else {})
        crop = dict(random_area=[0.08, 1.0], random_aspect_ratio=[3 / 4, 4 / 3], num_attempts=10)
        resize = dict(interp_type=types.INTERP_CUBIC, antialias=True)
        if full:
            images = fn.random_resized_crop(fn.decoders.image(files, **decoder), size=[size, size], **crop, **resize)
        else:
            images = fn.decoders.image_random_crop(files, **decoder, **crop)
            images = fn.resize(images, resize_x=size, resize_y=size, **resize)
        return images, labels.gpu() if on_gpu else labels

    pipe = pipeline(
        batch_size=batch, num_threads=threads, device_id=device_id, seed=0, prefetch_queue_depth=prefetch, **extra
    )
    pipe.build()
    loader = DALIGenericIterator(
        [pipe],
        ["x", "y"],
        reader_name="reader" if source == "reader" else None,
        last_batch_policy=LastBatchPolicy.DROP,
        auto_reset=True,
    )
    while True:
        for out in loader:
            yield out[0]["x"], out[0]["y"]


if __name__ == "__main__":
    main()
