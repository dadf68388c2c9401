"""Does NVIDIA DALI draw and cut timm's crops? (issue 12 item 2, before DALI becomes a data path)

    PYTHONPATH=src:/tmp/dali python benchmarks/check_dali.py /tmp/jpegs --epochs 300

With DALI's CPU decoder, or its GPU one (`--gpu`: "mixed", the JPEG engines and CUDA), DALI from its wheel
(benchmarks/dali_parts.sh; it is no dependency):
1. Crop windows: the sizes of `fn.decoders.image_random_crop`'s outputs (timm's area and aspect-ratio ranges,
   10 attempts) over `--epochs` passes of up to 64 files of the folder's first class, against timm's
   `RandomResizedCropAndInterpolation.get_params` on the same image sizes: two-sample Kolmogorov-Smirnov p-values for
   the area fraction and the log aspect ratio.
2. Pixels: for 16 files and fixed random boxes, DALI's region decode + cubic antialiased resize to 240, and
   decode=hybrid's (torchvision's decode, cut, then crossvit's `crop_resize_flat`), each against timm's (PIL crop +
   bicubic resize): mean absolute difference in grey levels.
`--module` checks only data.decode=dali's own decoder (crossvit.data.dali) instead: check_module.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from pathlib import Path

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def, types
from PIL import Image
from scipy.stats import ks_2samp
from timm.data.transforms import RandomResizedCropAndInterpolation
from torchvision.io import decode_jpeg, read_file

from crossvit.data.batch_augment import crop_resize_flat

SIZE = 240


def run_on(gpu: bool) -> tuple[dict, dict]:
    """The decoder's device and the pipeline's: the GPU's (0) or none."""
    return dict(device="mixed" if gpu else "cpu"), dict(device_id=0 if gpu else None)


def crop_windows(
    files: list[Path], epochs: int, seed: int, gpu: bool
) -> tuple[list[float], list[float], list[float], list[float]]:
    """(area fraction, log aspect ratio) of DALI's crops, then of timm's, the same image sizes drawn as often."""
    decoder, where = run_on(gpu)

    @pipeline_def
    def decode():
        data = fn.external_source(source=lambda: [np.fromfile(f, dtype=np.uint8) for f in files], batch=True)
        return fn.decoders.image_random_crop(
            data, **decoder, output_type=types.RGB, random_area=[0.08, 1.0], random_aspect_ratio=[3 / 4, 4 / 3]
        )

    pipe = decode(batch_size=len(files), num_threads=2, seed=seed, **where)
    pipe.build()
    sizes = [Image.open(f).size for f in files]  # (W, H)
    areas, ratios = [], []
    for _ in range(epochs):
        (out,) = pipe.run()
        out = out.as_cpu() if gpu else out
        for k, (w_img, h_img) in enumerate(sizes):
            h, w, _ = out[k].shape()
            areas.append(h * w / (w_img * h_img))
            ratios.append(math.log(w / h))
    timm_crop = RandomResizedCropAndInterpolation(SIZE)
    timm_areas, timm_ratios = [], []
    for _ in range(epochs):
        for w_img, h_img in sizes:
            _, _, h, w = timm_crop.get_params(Image.new("RGB", (w_img, h_img)), timm_crop.scale, timm_crop.ratio)
            timm_areas.append(h * w / (w_img * h_img))
            timm_ratios.append(math.log(w / h))
    return areas, ratios, timm_areas, timm_ratios


def pixel_differences(files: list[Path], seed: int, gpu: bool) -> tuple[list[float], list[float]]:
    """Per file: mean |DALI - timm| and mean |decode=hybrid - timm| over a 240 x 240 crop of a random box."""
    decoder, where = run_on(gpu)
    rng = np.random.default_rng(seed)
    boxes = []
    for f in files:
        w_img, h_img = Image.open(f).size
        w, h = int(rng.integers(w_img // 8, w_img + 1)), int(rng.integers(h_img // 8, h_img + 1))
        boxes.append((int(rng.integers(0, w_img - w + 1)), int(rng.integers(0, h_img - h + 1)), w, h))

    @pipeline_def
    def decode():
        data = fn.external_source(source=lambda: [np.fromfile(f, dtype=np.uint8) for f in files], batch=True)
        anchor = fn.external_source(source=lambda: [np.float32(b[:2]) for b in boxes], batch=True)
        shape = fn.external_source(source=lambda: [np.float32(b[2:]) for b in boxes], batch=True)
        images = fn.decoders.image_slice(
            data, anchor, shape, normalized_anchor=False, normalized_shape=False, output_type=types.RGB, **decoder
        )
        return fn.resize(images, resize_x=SIZE, resize_y=SIZE, interp_type=types.INTERP_CUBIC, antialias=True)

    pipe = decode(batch_size=len(files), num_threads=2, **where)
    pipe.build()
    (out,) = pipe.run()
    out = out.as_cpu() if gpu else out
    dali_diff, hybrid_diff = [], []
    for k, f in enumerate(files):
        x, y, w, h = boxes[k]
        timm = Image.open(f).convert("RGB").crop((x, y, x + w, y + h)).resize((SIZE, SIZE), Image.BICUBIC)
        timm = np.asarray(timm, dtype=np.float32)
        dali = np.asarray(out[k], dtype=np.float32)
        crop = decode_jpeg(read_file(str(f)))[:, y : y + h, x : x + w].permute(1, 2, 0).contiguous()
        hw = torch.tensor([[h, w]])
        hybrid = crop_resize_flat(
            crop.reshape(-1), hw, torch.cat([torch.zeros_like(hw), hw], 1), SIZE, channels_last=True
        )
        dali_diff.append(float(np.abs(dali - timm).mean()))
        hybrid_diff.append(float(np.abs(hybrid[0].permute(1, 2, 0).numpy() - timm).mean()))
    return dali_diff, hybrid_diff


def check_module(files: list[Path], seed: int, gpu: bool) -> None:
    """crossvit.data.dali.DaliCropDecoder as data.decode=dali runs it: 4 batches streamed (one decoding ahead) on a
    side CUDA stream, as the prefetcher's thread does, against the same batches one at a time, from a decoder of the
    same seed. Fails on a wrong shape, dtype or device."""
    from crossvit.data.dali import DaliCropDecoder
    from crossvit.data.image_folder import collate_encoded, read_encoded

    device = torch.device("cuda", 0) if gpu else torch.device("cpu")
    batch = collate_encoded([(read_encoded(str(f)), 0) for f in files])
    stream = torch.cuda.Stream(device) if gpu else None
    with torch.cuda.stream(stream) if gpu else contextlib.nullcontext():
        streamed = [x.clone() for x, _ in DaliCropDecoder(SIZE, len(files), device, seed).stream([batch] * 4)]
        single = DaliCropDecoder(SIZE, len(files), device, seed)
        one_by_one = [single(*batch[:2]).clone() for _ in range(4)]
    if gpu:
        torch.cuda.synchronize(device)
    for x in streamed:
        assert x.shape == (len(files), 3, SIZE, SIZE) and x.dtype == torch.float32 and x.device == device, x.shape
    same = [torch.equal(a, b) for a, b in zip(streamed, one_by_one)]
    means = [round(float(x.float().mean()), 2) for x in streamed]
    print(
        f"DaliCropDecoder on {device}: 4 streamed batches of {tuple(streamed[0].shape)} float, mean pixel {means}; "
        f"equal to one at a time: {same}; batches differ from each other: {not torch.equal(*streamed[:2])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="an ImageNet-style folder (benchmarks/make_jpeg_folder.py)")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--gpu", action="store_true", help="DALI's GPU decoder (mixed) instead of its CPU one")
    parser.add_argument("--module", action="store_true", help="only the framework's DaliCropDecoder (check_module)")
    args = parser.parse_args()
    first_class = sorted(p for p in (args.root / "train").iterdir() if p.is_dir())[0]
    files = sorted(first_class.iterdir())[:64]
    if args.module:
        return check_module(files, args.seed, args.gpu)
    areas, ratios, timm_areas, timm_ratios = crop_windows(files, args.epochs, args.seed, args.gpu)
    print(f"DALI's {'GPU' if args.gpu else 'CPU'} decoder:")
    print(f"{len(areas):,} DALI crops against {len(timm_areas):,} of timm's, {len(files)} files:")
    for name, ours, theirs in (("area fraction", areas, timm_areas), ("log aspect", ratios, timm_ratios)):
        p = ks_2samp(ours, theirs).pvalue
        print(f"  {name:13s}: mean {np.mean(ours):.4f} (timm {np.mean(theirs):.4f}), KS p = {p:.3f}")
    dali_diff, hybrid_diff = pixel_differences(files[:16], args.seed, args.gpu)
    print(f"pixels against timm's PIL crop + bicubic resize, {len(dali_diff)} random boxes, mean |difference|:")
    for name, diff in (
        ("DALI (region decode, cubic antialiased resize)", dali_diff),
        ("decode=hybrid (torchvision, crop_resize_flat)", hybrid_diff),
    ):
        print(f"  {name}: {np.mean(diff):.3f} grey levels (max {max(diff):.3f})")


if __name__ == "__main__":
    main()
