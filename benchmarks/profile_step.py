"""Where a training step's (or, with `--infer`, inference's) device time goes, by kernel class, beside the step's
floors (issue 14).

    python benchmarks/profile_step.py --models crossvit_18 crossvit_9 --impls ours timm --out profile.json
    python benchmarks/profile_step.py --smoke      # tiny, on the CPU: checks that the script runs

The step is throughput.py's (bf16 autocast, cross-entropy, backward, fused AdamW, GPU-resident random batch, the
recipe's drop path for timm too), compiled with `--mode`. First the floors: arithmetic, 3 x 2 x MACs/image x batch
at the bf16 matmul rate measured here; memory, the optimizer's 28 bytes a parameter (read weight, gradient and two
moments; write weight and moments, fp32) at the device-to-device copy rate measured here (activations come on top).
Then `--steps` profiled steps: device time a step by kernel class (GEMM, attention, norm, fused/elementwise,
optimizer, copies/casts, other), the time no kernel runs (idle: launches or the host), kernel count, top kernels.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import date
from functools import partial

import timm
import torch
from throughput import (
    add_variant_args,
    apply_variant,
    copy_rate,
    inference_step,
    matmul_rate,
    training_step,
    variant_run,
)
from torch.profiler import ProfilerActivity, profile

from crossvit.flops import count
from crossvit.models import create_model, load_config
from crossvit.weights import TIMM_NAMES

# First match wins: attention kernels' names can hold "gemm", norms fused by inductor hold "triton", and
# max-autotune's Triton GEMM templates are "triton_tem_*" (with the epilogue they fused); FlexAttention's kernels are
# templates too, counted as attention only where their names say "flex".
# cuDNN's attention backward runs helpers of its own ("cudnn::fusion::compute_dot_do_o", "convert_dq_to_16bits").
CLASSES = (
    ("attention", r"flash|fmha|sdpa|attention|_mha|cudnn::fusion|flex"),
    ("gemm", r"triton_tem|gemm|cutlass|xmma|nvjet|cublas|wgmma|matmul|\bmm\b|addmm|bmm|linear"),
    ("optimizer", r"adam|multi_tensor|foreach"),
    ("norm", r"layer_norm|layernorm"),
    ("copy_cast", r"copy|memcpy|memset|cast|convert|fill|cat\b|index"),
    ("fused_elementwise", r"triton|elementwise|vectorized|reduce|softmax|gelu|dropout|bernoulli|mul|add|div"),
)


def kernel_class(name: str) -> str:
    lowered = name.lower()
    return next((cls for cls, pattern in CLASSES if re.search(pattern, lowered)), "other")


def merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """[start, end) spans (kernels on a timeline) merged where they overlap, sorted: their union."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Length of the intersection of two merged span lists."""
    i = j = 0
    total = 0.0
    while i < len(a) and j < len(b):
        total += max(0.0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def length(spans: list[tuple[float, float]]) -> float:
    return sum(end - start for start, end in spans)


def profile_step(
    model: torch.nn.Module,
    mode: str,
    batch: int,
    device: torch.device,
    steps: int,
    bf16_weights: bool = False,
    infer: bool = False,
) -> dict:
    """Per step, in ms: wall, device busy and idle, and device time by kernel class; the top kernels. `infer`: the
    step is throughput.py's inference instead (inference_step)."""
    cuda = device.type == "cuda"
    step, logits, x = training_step(model.to(device).train(), mode, batch, device, bf16_weights)
    if infer:
        model.eval()
        step = inference_step(logits, x, device)
    for _ in range(10):  # compile, CUDA graph capture
        step()
    if cuda:
        torch.cuda.synchronize()
    activities = [ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
        wall_ms = 1e3 * (time.perf_counter() - start) / steps
    # On a GPU the device's kernels; on the CPU (the smoke run) the top-level ops stand in for them.
    wanted = torch.autograd.DeviceType.CUDA if cuda else torch.autograd.DeviceType.CPU
    kernels = [
        e
        for e in prof.events()
        if e.device_type == wanted and (cuda or e.cpu_parent is None) and not e.is_user_annotation  # see ddp_step.py
    ]
    by_class: dict[str, float] = {}
    by_name: dict[str, float] = {}
    for e in kernels:
        us = e.time_range.end - e.time_range.start
        by_class[kernel_class(e.name)] = by_class.get(kernel_class(e.name), 0.0) + us
        by_name[e.name] = by_name.get(e.name, 0.0) + us
    busy_ms = length(merged([(e.time_range.start, e.time_range.end) for e in kernels])) / 1e3 / steps
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:15]
    return dict(
        wall_ms=round(wall_ms, 3),
        busy_ms=round(busy_ms, 3),
        idle_ms=round(wall_ms - busy_ms, 3),
        kernels_per_step=round(len(kernels) / steps),
        by_class_ms={k: round(v / 1e3 / steps, 3) for k, v in sorted(by_class.items(), key=lambda kv: -kv[1])},
        top_kernels_ms=[(n[:100], round(us / 1e3 / steps, 3)) for n, us in top],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["crossvit_18", "crossvit_9"])
    parser.add_argument("--impls", nargs="+", default=["ours", "timm"], choices=["ours", "timm"])
    parser.add_argument("--mode", default="reduce-overhead", help="eager, compile, reduce-overhead, max-autotune")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--infer", action="store_true", help="profile inference (the forward alone) instead")
    parser.add_argument("--smoke", action="store_true", help="tiny and on the CPU, eager")
    add_variant_args(parser)
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args()
    if args.smoke:
        args.models, args.mode, args.batch_size, args.steps = ["crossvit_tiny"], "eager", 2, 1
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    variant = apply_variant(args)
    flops_rate, bytes_rate = matmul_rate(device), copy_rate(device)
    env = dict(
        date=str(date.today()),
        device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        torch=torch.__version__,
        timm=timm.__version__,
        batch_size=args.batch_size,
        mode=args.mode,
        step="inference" if args.infer else "training",
        **variant,
        bf16_matmul_tflops=round(flops_rate / 1e12, 1),
        copy_gb_s=round(bytes_rate / 1e9, 1),
    )
    print(json.dumps(env))
    rows = []
    for name in args.models:
        ours = create_model(name)
        macs, params = count(ours).gflops * 1e9, sum(p.numel() for p in ours.parameters())
        floors = dict(  # a training step: forward and backward (twice the forward's products), read-write AdamW
            flops_floor_ms=round(1e3 * (1 if args.infer else 3) * 2 * macs * args.batch_size / flops_rate, 3),
            optimizer_bytes_floor_ms=0.0 if args.infer else round(1e3 * 28 * params / bytes_rate, 3),
        )
        makers = {
            "ours": partial(create_model, name),
            "timm": partial(
                timm.create_model,
                TIMM_NAMES.get(name, name),
                pretrained=False,
                drop_path_rate=load_config("model", name).drop_path_rate,
            ),
        }
        for impl in args.impls:
            torch._dynamo.reset()
            torch.manual_seed(0)
            with variant_run(args, makers[impl](), impl) as model:
                measured = profile_step(
                    model, args.mode, args.batch_size, device, args.steps, args.bf16_weights, args.infer
                )
            r = dict(model=name, impl=impl, **floors, **measured)
            r["img_s_profiled"] = round(1e3 * args.batch_size / r["wall_ms"], 1)
            rows.append(r)
            classes = ", ".join(f"{k} {v}" for k, v in r["by_class_ms"].items())
            print(
                f"{name} {impl}: {r['wall_ms']} ms a step (floors: {r['flops_floor_ms']} ms of FLOPs, "
                f"{r['optimizer_bytes_floor_ms']} ms of optimizer bytes); device busy {r['busy_ms']}, idle "
                f"{r['idle_ms']}, {r['kernels_per_step']} kernels; {classes}",
                flush=True,
            )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
