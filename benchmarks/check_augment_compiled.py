"""The device augmentation compiled (data.compile_augment=true, what a GPU runs) against the same code eager (what
the tests check against timm's PIL transforms on the CPU): each pass, then the whole augmentation with one seed.

    python benchmarks/check_augment_compiled.py                  # a GPU: device_kernel's compiled kernels
    python benchmarks/check_augment_compiled.py --device cpu     # here: torch.compile on the CPU, small images

Each pass is compiled once: other numbers of images must reuse it (a recompilation is an error here). Compiled
arithmetic may round differently (fused multiply-adds), and the lookup ops floor and round, so a few
pixels may move by a grey level; the means must stay far below the tests' tolerance against PIL (1.5 levels).
"""

from __future__ import annotations

import argparse

import torch

from crossvit.data import ImageFolderDataModule
from crossvit.data import batch_augment as ba


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=None, help="default: 240 on a GPU, 32 on the CPU")
    args = parser.parse_args()
    device = torch.device(args.device)
    size = args.size or (240 if device.type == "cuda" else 32)
    torch.manual_seed(0)
    # Smooth images with edges, as photographs, rather than noise (whose histograms are flat).
    base = torch.rand(args.batch, 3, size // 8, size // 8, device=device) * 255
    x = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear").round()

    ra = ba.BatchRandAugment(compiled=False)
    n = args.batch
    m = (9 + 0.5 * torch.randn(n)).clamp(0, 10)
    sign = torch.where(torch.rand(n) < 0.5, -1.0, 1.0)
    worst = 0.0
    for kind, pass_ in ((ba.LUT_OPS, ba._lookup_pass), (ba.WARP_OPS, ba._warp_pass), (ba.BLEND_OPS, ba._blend_pass)):
        ids = torch.tensor([ba.RAND_INCREASING_OPS.index(k) for k in kind])
        op = ids[torch.randint(len(ids), (n,))]
        idx = torch.arange(0, n, 2, device=device)
        extra = {
            ba._lookup_pass: (m,),
            ba._warp_pass: (m, sign, torch.tensor(ra.fill)),
            ba._blend_pass: (m, sign),
        }[pass_]
        extra = tuple(t.to(device) for t in extra)
        eager = pass_(x, idx, op.float().to(device), *extra)
        kernel = ba.compile_batched(pass_)  # what device_kernel does on a GPU
        ours = kernel(x, idx, op.float().to(device), *extra)
        torch._dynamo.config.error_on_recompile = True  # other sizes must reuse the one compilation
        for count, images in ((2, n), (5, 11), (3, n)):  # idx[:count] reaches image 2 * (count - 1)
            small, xs = idx[:count], x[:images]
            diff = kernel(xs, small, op.float().to(device), *extra) - pass_(xs, small, op.float().to(device), *extra)
            worst = max(worst, float(diff.abs().mean()))
        torch._dynamo.config.error_on_recompile = False
        diff = (ours - eager).abs()
        worst = max(worst, float(diff.mean()))
        print(
            f"{pass_.__name__:13s}: mean |compiled - eager| {float(diff.mean()):.4f} grey levels, "
            f"max {float(diff.max()):.2f}, pixels over 1 level {float((diff > 1).float().mean()):.5f}"
        )
    if device.type == "cuda":  # the module's whole augmentation, compiled against eager, one seed
        outs = []
        for flag in (True, False):
            module = ImageFolderDataModule(root="unused", img_size=size, decode="gpu", compile_augment=flag)
            outs.append(module.augment(x.clone(), torch.Generator().manual_seed(7)))
        diff = (outs[0] - outs[1]).abs() * 255 * 0.226  # back to grey levels (the normalised scale's std)
        worst = max(worst, float(diff.mean()))
        print(
            f"whole augment: mean |compiled - eager| {float(diff.mean()):.4f} grey levels, max {float(diff.max()):.2f}"
        )
    print(f"worst mean {worst:.4f} grey levels: {'OK' if worst < 0.1 else 'TOO FAR'}")


if __name__ == "__main__":
    main()
