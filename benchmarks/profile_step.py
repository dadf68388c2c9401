"""Where a training step's GPU time goes: top kernels of our compiled CrossViT train step.

python benchmarks/profile_step.py --model crossvit_9 --batch-size 256 [--mode reduce-overhead]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from torch.profiler import ProfilerActivity, profile

from crossvit.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="crossvit_9")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--mode", default="default")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    model = create_model(args.model).cuda()
    fwd = torch.compile(model.forward_branches, mode=None if args.mode == "default" else args.mode)
    opt = create_optimizer_v2(model, opt="adamw", lr=1e-4, weight_decay=0.05, fused=True)
    x = torch.randn(args.batch_size, 3, model.input_size, model.input_size, device="cuda")
    y = torch.randint(0, 1000, (args.batch_size,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(torch.stack(fwd(x)).mean(0), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(10):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(args.steps):
            step()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    total = sum(e.self_device_time_total for e in events)
    launches = sum(e.count for e in events)
    print(f"GPU time per step {total / args.steps / 1e3:.2f} ms, {launches / args.steps:.0f} kernels per step")
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[:30]:
        share = e.self_device_time_total / total
        ms = e.self_device_time_total / args.steps / 1e3
        print(f"{share:6.1%} {ms:7.3f} ms {e.count // args.steps:5d}x  {e.key[:110]}")


if __name__ == "__main__":
    main()
