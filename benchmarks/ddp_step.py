"""The compiled bf16 training step under DDP, without Lightning: which DDP and compile settings scale.

    torchrun --nproc_per_node=1 benchmarks/ddp_step.py --model crossvit_18 --out ddp_1.json   # the reference
    torchrun --nproc_per_node=2 benchmarks/ddp_step.py --model crossvit_18 --out ddp_2.json
    torchrun --nproc_per_node=2 benchmarks/ddp_step.py --smoke                             # CPU (gloo), tiny, eager

The step is the module's: `forward_branches` compiled (`--mode`), called inside the DDP-wrapped module as Lightning
calls training_step, bf16 autocast, cross-entropy, backward, fused AdamW, on a GPU-resident random batch of
`--batch` per rank. Variants, each compiled afresh:
  ddp           DDP's defaults; dynamo splits the compiled graph at DDP's buckets (optimize_ddp) so that the
                all-reduce of one bucket overlaps the backward of the next (what `trainer=ddp` runs)
  no_split      torch._dynamo.config.optimize_ddp = False: one graph, every all-reduce after the whole backward
  static        DDP(static_graph=True, gradient_as_bucket_view=True): no per-step search for unused parameters
  bf16_hook     gradients all-reduced in bf16 (DDP's bf16_compress_hook): half the bytes
  compiled_autograd  the backward compiled whole by compiled autograd, DDP's reducer traced into it
                (optimize_ddp="python_reducer"): its all-reduces scheduled by the compiler inside one graph
With one process there is no DDP: the plain compiled step, the figure the others are divided by.

`--profile N` then runs N more steps of each variant under torch.profiler and adds rank 0's device timeline a step:
the time any kernel runs (busy), the time no kernel runs (idle: the host or a wait is the limit), NCCL's kernel time
and the part of it no compute kernel overlaps (exposed), and the kernels taking the most device time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from profile_step import length, merged, overlap
from timm.optim import create_optimizer_v2
from torch._dynamo import compiled_autograd
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel as DDP

from crossvit.models import create_model

VARIANTS = ("ddp", "compiled_autograd", "no_split", "bf16_hook", "static")  # the likeliest to answer first


def device_timeline(prof: torch.profiler.profile, steps: int, wall_s: float) -> dict:
    """Per step, in ms: busy / idle device time, NCCL kernel time and its exposed part; the top kernels."""
    # Not the ranges record_function marks on the device's timeline (DDP's forward, compiled graphs): they lie over
    # the kernels and are no work of their own.
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA and not e.is_user_annotation]

    def spans(events: list) -> list[tuple[float, float]]:  # merged, in ms
        return merged([(e.time_range.start / 1e3, e.time_range.end / 1e3) for e in events])

    def per_step(ms: float) -> float:
        return round(ms / steps, 3)

    nccl = spans([e for e in kernels if "nccl" in e.name.lower()])
    compute = spans([e for e in kernels if "nccl" not in e.name.lower()])
    busy = length(spans(kernels))
    by_name: dict[str, float] = {}
    for e in kernels:
        by_name[e.name] = by_name.get(e.name, 0.0) + (e.time_range.end - e.time_range.start) / 1e3
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:12]
    return dict(
        wall_ms=round(1e3 * wall_s / steps, 3),
        busy_ms=per_step(busy),
        idle_ms=per_step(1e3 * wall_s - busy),
        nccl_ms=per_step(length(nccl)),
        nccl_exposed_ms=per_step(length(nccl) - overlap(nccl, compute)),
        top_kernels_ms=[(name[:90], round(ms / steps, 3)) for name, ms in top],
    )


class Step(torch.nn.Module):
    """What DDP wraps under Lightning: the module whose forward runs the compiled branches and averages them."""

    def __init__(self, model: torch.nn.Module, mode: str | None) -> None:
        super().__init__()
        self.model = model
        self.branches = model.forward_branches if mode == "eager" else torch.compile(model.forward_branches, mode=mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.branches(x)).mean(0)


def measure(variant: str, args: argparse.Namespace, device: torch.device, world: int) -> dict:
    torch._dynamo.reset()
    torch._dynamo.config.optimize_ddp = {"no_split": False, "compiled_autograd": "python_reducer"}.get(variant, True)
    torch.manual_seed(0)
    model = create_model(args.model, **({"in_chans": 1, "num_classes": 10} if args.smoke else {})).to(device)
    step_module: torch.nn.Module = Step(model, args.mode)
    if world > 1:
        ddp_args = dict(static_graph=True, gradient_as_bucket_view=True) if variant == "static" else {}
        step_module = DDP(step_module, device_ids=[device.index] if device.type == "cuda" else None, **ddp_args)
        if variant == "bf16_hook":
            step_module.register_comm_hook(None, default_hooks.bf16_compress_hook)
    opt = create_optimizer_v2(model, opt="adamw", lr=1e-4, weight_decay=0.05, fused=device.type == "cuda")
    size = model.img_size[0]
    x = torch.randn(args.batch, model.in_chans, size, size, device=device)
    y = torch.randint(0, model.num_classes, (args.batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    backward_compiler = None
    if variant == "compiled_autograd":
        mode = None if args.mode in ("eager", "default") else args.mode
        backward_compiler = torch.compile(backend="eager" if args.mode == "eager" else "inductor", mode=mode)

    def step() -> None:
        with autocast:
            loss = F.cross_entropy(step_module(x), y)
        with compiled_autograd._enable(backward_compiler) if backward_compiler else nullcontext():
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def seconds_for(steps: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dist.barrier()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    seconds_for(args.warmup)  # compile, CUDA graph capture, DDP's first-iteration bucket rebuild
    seconds = seconds_for(args.steps)
    profiled = {}
    if args.profile:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            profiled_seconds = seconds_for(args.profile)
        profiled = device_timeline(prof, args.profile, profiled_seconds)
    return dict(
        variant=variant if world > 1 else "one_process",
        model=args.model,
        mode=args.mode,
        world=world,
        batch_per_rank=args.batch,
        img_s=round(world * args.batch * args.steps / seconds, 1),
        ms_per_step=round(1e3 * seconds / args.steps, 2),
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        torch=torch.__version__,
        **({"profile": profiled} if profiled else {}),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="crossvit_18")
    parser.add_argument("--mode", default="reduce-overhead", help="torch.compile mode, or eager")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--profile", type=int, default=0, help="profile this many more steps of each variant")
    parser.add_argument("--smoke", action="store_true", help="CPU, gloo, crossvit_micro_28, eager, a few steps")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.smoke:
        args.model, args.mode, args.batch, args.steps, args.warmup = "crossvit_micro_28", "eager", 8, 3, 1
    cuda = torch.cuda.is_available() and not args.smoke
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    rows = []
    for variant in args.variants if world > 1 else ["ddp"]:
        try:
            rows.append(measure(variant, args, device, world))
        except Exception as e:  # a variant the installed torch cannot compile: say so, go on to the next
            rows.append(dict(variant=variant, model=args.model, world=world, error=f"{type(e).__name__}: {e}"[:500]))
        if rank != 0:
            continue
        r = rows[-1]
        if "error" in r:
            print(f"{variant:12s} {world} x {args.model}: failed: {r['error'][:200]}")
        else:
            print(
                f"{r['variant']:12s} {r['world']} x {args.model}: {r['img_s']:9,.0f} img/s  "
                f"{r['ms_per_step']:7.2f} ms/step"
            )
        if "profile" in r:
            t = r["profile"]
            print(
                f"  profiled: wall {t['wall_ms']} ms, device busy {t['busy_ms']}, idle {t['idle_ms']}, "
                f"nccl {t['nccl_ms']} (exposed {t['nccl_exposed_ms']})"
            )
        if args.out:  # after each variant: a call that runs out of time keeps what it measured
            args.out.write_text(json.dumps(rows, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
