"""The GPU's hardware JPEG engines (nvImageCodec) as the decoder of a share of each training batch: do they give
torchvision's CPU pixels, does a progressive JPEG (which they cannot take) fall back, and how fast is a batch, the first
and the later ones (which decode into the first batch's buffers)? `--beside MODEL`: then that model's compiled
training step, alone and with the decoder looping in a thread on a stream of its own (as the Prefetcher would run it),
the step on torch's default stream (as Lightning runs it), on a stream of its own, and on the default stream waiting
for the device each step: which of them leaves the engines' decoding beside the step, and which serialises the two?
`--train-priority default side`: the same with the decoder's stream at the device's highest priority. `--trace`: each
again under the profiler, listing the CUDA API calls that took the host's time (does the decoder wait for the device?).

    python benchmarks/check_device_decoder.py /tmp/jpegs --beside crossvit_9 --out device_decoder.json
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import torch
from check_nvimgcodec import beside_step
from PIL import Image
from throughput import training_step
from torchvision.io import ImageReadMode, decode_jpeg

from crossvit.data import ImageFolderDataModule
from crossvit.data.jpeg import _nvimgcodec
from crossvit.models import create_model


class DeviceDecoder:
    """Whole JPEGs decoded on a GPU, uint8 [H, W, 3] each, valid until the next call: by its hardware JPEG engines
    (nvImageCodec's HW backend; A100, H100 and H200 have them), which take the decoding off the CPU and off the SMs;
    a file they cannot take (a progressive JPEG, say) by torchvision's nvJPEG. What data.device_decode_share used in
    commit 4b5da24, removed after gpu_data_path.sh hw_share measured it slower at every share."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.decoder = device, None
        n = _nvimgcodec()
        if n is not None:
            index = device.index if device.index is not None else torch.cuda.current_device()
            self.decoder = n.Decoder(device_id=index, backends=[n.Backend(n.BackendKind.HW_GPU_ONLY)])
        self.fallbacks = 0  # files the hardware engines could not decode
        # The last batch's output images, decoded into again: the caller copies out of them on the same stream before
        # the next decode, and fresh device buffers each batch would cost a cudaMalloc and a device-wide cudaFree.
        self.images: list[Any] = []

    def __call__(self, files: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.decoder is None:
            return self._torchvision(files)
        n = _nvimgcodec()
        stream = torch.cuda.current_stream(self.device)
        # The engines write on `stream`'s timeline: what is queued there (the previous batch's reads) comes first.
        images = self.decoder.decode(
            [n.CodeStream(f.numpy()) for f in files],
            images=self.images if len(self.images) == len(files) else None,
            params=n.DecodeParams(apply_exif_orientation=False),
            cuda_stream=stream.cuda_stream,
        )
        missing = [i for i, image in enumerate(images) if image is None]
        self.images = [] if missing else images
        rescued = iter(self._torchvision([files[i] for i in missing]) if missing else [])
        self.fallbacks += len(missing)
        return [torch.from_dlpack(image) if image is not None else next(rescued) for image in images]

    def _torchvision(self, files: list[torch.Tensor]) -> list[torch.Tensor]:
        lengths = torch.tensor([len(f) for f in files])
        images = ImageFolderDataModule.decode_batch(torch.cat(files), lengths, self.device)  # nvJPEG
        return [image.permute(1, 2, 0) for image in images]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="an image folder (benchmarks/make_jpeg_folder.py)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--beside", help="a model whose compiled training step the decoder runs beside")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument(
        "--train", nargs="*", default=["default", "side", "default_sync"], help="where the step runs (beside_step)"
    )
    parser.add_argument(
        "--train-priority", nargs="*", default=[], help="the same, with the decoder's stream at the highest priority"
    )
    parser.add_argument(
        "--trace", action="store_true", help="then each of those again under the profiler: the CUDA API calls that wait"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda", 0)
    paths = sorted(p for p in (args.root / "train").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    files = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths[: args.batch * args.batches]]
    buffer = io.BytesIO()
    with Image.open(paths[0]) as img:
        img.save(buffer, format="JPEG", quality=90, progressive=True)
    progressive = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
    decoder = DeviceDecoder(device)
    row = dict(hardware_engines=decoder.decoder is not None, device=torch.cuda.get_device_name(device))
    first = files[: args.batch - 1] + [progressive]
    out = decoder(first)
    reference = [decode_jpeg(f, mode=ImageReadMode.RGB).permute(1, 2, 0) for f in first]
    diffs = [(o.cpu().float() - r.float()).abs().mean().item() for o, r in zip(out, reference)]
    row.update(fallbacks=decoder.fallbacks, mean_abs_diff=sum(diffs) / len(diffs), max_abs_diff=max(diffs))
    times = []
    for i in range(0, len(files), args.batch):
        torch.cuda.synchronize()
        start = time.perf_counter()
        decoded = decoder(files[i : i + args.batch])
        torch.cat([d.reshape(-1) for d in decoded])  # what prepare does with them
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    row.update(batch_ms=[round(1e3 * t, 2) for t in times], img_s=round(args.batch * len(times[1:]) / sum(times[1:])))
    print(json.dumps(row))
    if args.beside:
        model = create_model(args.beside, num_classes=1000).to(device)
        step, _, _ = training_step(model, "reduce-overhead", 256, device)
        for _ in range(10):
            step()

        def work(files: list[torch.Tensor]) -> int:
            torch.cat([d.reshape(-1) for d in decoder(files)])  # what the prefetcher does with them
            return len(files)

        batches = [files[i : i + args.batch] for i in range(0, len(files), args.batch)]
        row["beside"] = []
        runs = [(train, 0) for train in args.train] + [(train, -5) for train in args.train_priority]
        for train, priority, trace in [(*run, False) for run in runs] + [(*run, True) for run in runs if args.trace]:
            result = beside_step(work, device, batches, step, args.steps, train, priority, trace)
            row["beside"].append(dict(model=args.beside, **result))
            print(json.dumps(row["beside"][-1]))
    if args.out:
        args.out.write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
