"""crossvit.data.jpeg.DeviceDecoder on a GPU: do its hardware JPEG engines give torchvision's CPU pixels, does a
progressive JPEG (which they cannot take) fall back, and how fast is a batch, the first and the later ones (which
decode into the first batch's buffers)?

    python benchmarks/check_device_decoder.py /tmp/jpegs --out device_decoder.json
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from crossvit.data.jpeg import DeviceDecoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="an image folder (benchmarks/make_jpeg_folder.py)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=10)
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
    if args.out:
        args.out.write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
