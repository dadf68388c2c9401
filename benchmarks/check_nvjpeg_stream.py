"""GPU check: torchvision's nvJPEG decode writes into memory the caller's stream still reads (pytorch/vision#9606),
and ImageFolderDataModule.decode_batch, which drains that stream first, does not.

    python benchmarks/check_nvjpeg_stream.py /tmp/jpegs --out nvjpeg_stream.json

Each trial fills tensors of a decoded image's size with known bytes, queues a long kernel and then one sum per
tensor, frees the tensors while those sums wait (the caching allocator may hand their blocks to the decoder), decodes
a batch, and compares the sums with their exact values. Prints the corrupted sums of the bare decode_jpeg and of
decode_batch; exits 1 if decode_batch corrupted any.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_jpeg, read_file

from crossvit.data.image_folder import ImageFolderDataModule


def corrupted_sums(decode, files: list[torch.Tensor], trials: int) -> int:
    device = torch.device("cuda")
    shape = decode_jpeg(files[0], mode=ImageReadMode.RGB).shape  # the decoder's output blocks are this size
    bad = 0
    for trial in range(trials):
        value = 1 + trial % 200
        held = [torch.full(shape, value, dtype=torch.uint8, device=device) for _ in files]
        torch.cuda.synchronize()
        torch.cuda._sleep(50_000_000)  # tens of ms of spinning ahead of the sums
        sums = [t.sum(dtype=torch.int64) for t in held]
        del held  # freed on the caller's stream while the sums above still wait to read them
        decode(files)
        torch.cuda.synchronize()
        bad += sum(int(s) != value * shape.numel() for s in sums)
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="an image folder (benchmarks/make_jpeg_folder.py)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    paths = sorted(p for p in (args.root / "train").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))[: args.batch]
    files = [read_file(str(p)) for p in paths]
    device = torch.device("cuda")

    def bare(fs):
        return decode_jpeg(fs, mode=ImageReadMode.RGB, device=device)

    def ours(fs):
        return ImageFolderDataModule.decode_batch(torch.cat(fs), torch.tensor([len(f) for f in fs]), device)

    row = dict(
        decode_jpeg=corrupted_sums(bare, files, args.trials),
        decode_batch=corrupted_sums(ours, files, args.trials),
        sums=args.trials * len(files),
        device=torch.cuda.get_device_name(),
        torch=torch.__version__,
    )
    print(f"corrupted sums of {row['sums']}: decode_jpeg {row['decode_jpeg']}, decode_batch {row['decode_batch']}")
    if args.out:
        args.out.write_text(json.dumps(row, indent=1))
    sys.exit(1 if row["decode_batch"] else 0)


if __name__ == "__main__":
    main()
