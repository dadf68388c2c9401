"""nvImageCodec's JPEG decoders for decode=hybrid's training crops: can the GPU's hardware JPEG engines (NVJPG) take
the decoding that 16 cores cannot do for crossvit_9, without slowing its training step?

    pip download --no-deps -d .device/nvimg nvidia-nvimgcodec-cu13==0.9.0.20 nvidia-nvjpeg==13.0.1.86  # 29 MB
    bash benchmarks/gpu_data_path.sh nvimgcodec   # on the GPU machine (carry .device/whl and .device/nvimg)

nvImageCodec is the library DALI decodes with (its wheel is 25 MB, DALI's 198 MB). For each decoder (`hw`: the
hardware engines only; `cuda`: nvJPEG on the SMs; `torchvision`: torchvision's nvJPEG batch decode, whole images
only; `cpu`: nvImageCodec's libjpeg-turbo on one thread, which can decode just the crop's region, against
`torchvision_cpu`, the whole-image decode a decode=hybrid worker runs, on one thread too: per core, the workers'
figure) and each mode (`full` images, or only timm's random-crop `roi`) it prints:
img/s at `--batch` alone; the mean absolute difference of its pixels from torchvision's CPU decode of the same
region; and, on a GPU, a compiled training step's ms alone and with the decoder running beside it in a thread (its
img/s then). A decoder that cannot decode a mode (None in nvImageCodec's result) is reported as such, not fatal.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from throughput import training_step
from torchvision.io import ImageReadMode, decode_jpeg

from crossvit.data.jpeg import crop_box
from crossvit.models import create_model


def crop_boxes(sizes: list[tuple[int, int]], seed: int = 0) -> list[tuple[int, int, int, int]]:
    """timm's RandomResizedCrop box (top, left, h, w) for images of these (h, w), drawn as the workers draw them."""
    import random

    random.seed(seed)
    return [crop_box(h, w, (0.08, 1.0), (3 / 4, 4 / 3)) for h, w in sizes]


class Decode:
    """One decoder: a batch of encoded files (and boxes, for `roi`) -> HWC uint8 tensors on its device, or None."""

    def __init__(self, name: str) -> None:
        self.name = name
        on_cpu = name in ("cpu", "torchvision_cpu")
        self.device = torch.device("cpu") if on_cpu else torch.device("cuda", 0)
        if name.startswith("torchvision"):
            return
        from nvidia import nvimgcodec

        self.nvimgcodec = nvimgcodec
        kind = {"hw": "HW_GPU_ONLY", "cuda": "GPU_ONLY", "cpu": "CPU_ONLY"}[name]
        backend = nvimgcodec.Backend(getattr(nvimgcodec.BackendKind, kind))
        self.decoder = nvimgcodec.Decoder(max_num_cpu_threads=1 if on_cpu else 0, backends=[backend])

    def __call__(self, files: list[bytes], boxes: list[tuple[int, int, int, int]] | None) -> list | None:
        if self.name.startswith("torchvision"):
            if boxes is not None:
                return None  # no region decoding
            tensors = [torch.frombuffer(bytearray(f), dtype=torch.uint8) for f in files]
            return [x.permute(1, 2, 0) for x in decode_jpeg(tensors, mode=ImageReadMode.RGB, device=self.device)]
        n = self.nvimgcodec
        streams = [n.CodeStream(f) for f in files]
        if boxes is not None:
            streams = [
                s.get_sub_code_stream(region=n.Region(top, left, top + h, left + w))
                for s, (top, left, h, w) in zip(streams, boxes)
            ]
        stream = torch.cuda.current_stream(self.device).cuda_stream if self.device.type == "cuda" else 0
        images = self.decoder.decode(streams, cuda_stream=stream)
        if any(im is None for im in images):
            return None
        return [torch.from_dlpack(im) for im in images]  # zero-copy, HWC uint8, where the decoder wrote it


def img_s(decode: Decode, batches: list[tuple[list[bytes], list | None]]) -> float | None:
    sync = torch.cuda.synchronize if decode.device.type == "cuda" else (lambda: None)
    if decode(*batches[0]) is None:  # warm-up, and can it decode this mode at all
        return None
    sync()
    start = time.perf_counter()
    for files, boxes in batches:
        decode(files, boxes)
    sync()
    return sum(len(f) for f, _ in batches) / (time.perf_counter() - start)


def pixel_diff(decode: Decode, files: list[bytes], boxes: list | None) -> float | None:
    """Mean absolute difference (0-255) from torchvision's CPU decode of the same regions."""
    out = decode(files, boxes)
    if out is None:
        return None
    diffs = []
    for i, (f, x) in enumerate(zip(files, out)):
        ref = decode_jpeg(torch.frombuffer(bytearray(f), dtype=torch.uint8), mode=ImageReadMode.RGB).permute(1, 2, 0)
        if boxes is not None:
            top, left, h, w = boxes[i]
            ref = ref[top : top + h, left : left + w]
        diffs.append((x.cpu().float() - ref.float()).abs().mean().item() if x.shape == ref.shape else float("inf"))
    return round(sum(diffs) / len(diffs), 3)


def timed_steps(step, steps: int, sync_each: bool = False) -> float:
    """ms a step; `sync_each`: the host waits for the device after each step (no run-ahead)."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
        if sync_each:
            torch.cuda.current_stream().synchronize()
    torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - start) / steps


def beside_step(
    work: Callable[[Any], int],
    device: torch.device,
    batches: list,
    step,
    steps: int,
    train: str = "default",
    priority: int = 0,
    trace: bool = False,
) -> dict:
    """The training step's ms alone, then with `work` (one batch -> the images it decoded) looping over `batches` in
    a thread on a stream of its own (CUDA priority `priority`; negative is higher), as a prefetcher runs it. `train`:
    the step on torch's default stream (as Lightning runs it), on a `side` stream of its own, or on the default
    stream with the host waiting for each step (`default_sync`). `trace`: the CUDA API calls made while the decoding ran
    beside the step (the profiler's CUPTI sees every library's), ranked by host time: which of them waits?"""
    stream = torch.cuda.Stream(device) if train == "side" else None
    decode_stream = torch.cuda.Stream(device, priority=priority)
    done, decoded, host_ms = threading.Event(), [0], []

    def decode_loop() -> None:
        with torch.cuda.stream(decode_stream):
            while not done.is_set():
                for batch in batches:
                    start = time.perf_counter()
                    decoded[0] += work(batch)
                    host_ms.append(1e3 * (time.perf_counter() - start))
                    torch.cuda.current_stream(device).synchronize()
                    if done.is_set():
                        return

    with torch.cuda.stream(stream) if stream is not None else nullcontext():
        alone = timed_steps(step, steps)
        thread = threading.Thread(target=decode_loop)
        profile = torch.profiler.profile() if trace else nullcontext()
        with profile:
            start = time.perf_counter()
            thread.start()
            together = timed_steps(step, steps, sync_each=train == "default_sync")
            done.set()
            thread.join()
    host_ms.sort()
    calls = api_calls(profile.events()) if trace else None
    return dict(
        train_stream=train,
        decode_stream_priority=decode_stream.priority,
        step_ms_alone=round(alone, 2),
        step_ms_beside_decode=round(together, 2),
        decode_img_s_beside_step=round(decoded[0] / (time.perf_counter() - start), 1),
        decode_call_host_ms_median=round(host_ms[len(host_ms) // 2], 2) if host_ms else None,
        **({"api_calls": calls} if calls is not None else {}),
    )


def api_calls(events, top: int = 15) -> list[dict]:
    """The CUDA runtime and driver calls (cuda*, cu*) summed by thread and name, most host time first. The profiler's
    thread ids are its own, not the OS's: the training thread is the one launching graphs (cudaGraphLaunch)."""
    totals: dict[tuple[int, str], list[float]] = {}
    for event in events:
        if event.name.startswith("cu"):
            total = totals.setdefault((event.thread, event.name), [0, 0.0])
            total[0] += 1
            total[1] += event.cpu_time_total / 1e3
    ranked = sorted(totals.items(), key=lambda item: -item[1][1])[:top]
    return [dict(thread=thread, name=name, calls=n, host_ms=round(ms, 2)) for (thread, name), (n, ms) in ranked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="an image folder (benchmarks/make_jpeg_folder.py)")
    parser.add_argument("--decoders", nargs="+", default=["hw", "cuda", "torchvision", "cpu", "torchvision_cpu"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--model", default="crossvit_9", help="the training step decoding must not slow")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    paths = sorted(p for p in (args.root / "train").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    files = [p.read_bytes() for p in paths[: args.batch * args.batches]]
    sizes = [tuple(decode_jpeg(torch.frombuffer(bytearray(f), dtype=torch.uint8)).shape[1:]) for f in files]
    boxes = crop_boxes(sizes)
    chunks = range(0, len(files), args.batch)
    modes = {
        "full": [(files[i : i + args.batch], None) for i in chunks],
        "roi": [(files[i : i + args.batch], boxes[i : i + args.batch]) for i in chunks],
    }
    step = None
    if cuda:  # compiled and captured once, for every decoder
        model = create_model(args.model, num_classes=1000).to(device)
        step, _, _ = training_step(model, "reduce-overhead", 256, device)
        for _ in range(10):
            step()
    rows = []
    for name in args.decoders:
        try:
            decode = Decode(name)
        except Exception as e:  # a backend this machine lacks
            rows.append(dict(decoder=name, error=f"{type(e).__name__}: {e}"[:300]))
            print(f"{name:12s} unavailable: {rows[-1]['error']}")
            continue
        for mode, batches in modes.items():
            row = dict(decoder=name, mode=mode, batch=args.batch, images=len(files))
            try:
                rate = img_s(decode, batches)
                row["img_s"] = round(rate, 1) if rate else None
                row["mean_abs_diff"] = pixel_diff(decode, *batches[0]) if row["img_s"] else None
                if step is not None and row["img_s"] and decode.device.type == "cuda":
                    work = lambda batch, decode=decode: len(decode(*batch))
                    row.update(model=args.model, **beside_step(work, decode.device, batches, step, args.steps))
            except Exception as e:
                row["error"] = f"{type(e).__name__}: {e}"[:300]
            rows.append(row)
            print(
                f"{name:12s} {mode:5s}"
                + (f" {row['img_s']:9,.0f} img/s" if row.get("img_s") else " cannot decode this mode")
                + (f", pixels off by {row['mean_abs_diff']}" if row.get("mean_abs_diff") is not None else "")
                + (
                    f"; {row['model']} step {row['step_ms_alone']} ms alone, {row['step_ms_beside_decode']} beside "
                    f"it ({row['decode_img_s_beside_step']:,.0f} img/s then)"
                    if "step_ms_alone" in row
                    else ""
                )
                + (f" error: {row['error']}" if "error" in row else "")
            )
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
