"""What the kernel benchmarks share (fa4_attention.py, quack_mlp.py): a forward swapped into modules for a `with`
block, GPU time a call, eager or replayed from a CUDA graph, and their command line's common part and JSON rows."""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date

import torch
import torch.nn as nn

from crossvit.models.kernels import swap_forward


@contextmanager
def forward_swapped(model: nn.Module, module_type: type, forward: Callable) -> Iterator[nn.Module]:
    """Inside the block, each of `model`'s modules of exactly `module_type` runs `forward(module, ...)`."""
    swapped = swap_forward(model, module_type, forward)
    try:
        yield model
    finally:
        for module in swapped:
            del module.forward


def time_ms(fn: Callable[[], object], steps: int, warmup: int) -> float:
    """The median of `steps` calls' GPU time, in ms, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def captured(work: Callable[[], object]) -> tuple[torch.cuda.CUDAGraph, object]:
    """`work` captured in a CUDA graph after two warm-up calls on a side stream (where first calls compile or tune
    their kernels, outside the capture): the graph, and what the captured call returned (its outputs, which each
    replay rewrites)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            work()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        result = work()
    return graph, result


def kernel_parser(doc: str) -> argparse.ArgumentParser:
    """The kernel benchmarks' common options: --batch-size, --check-batch, --steps, --warmup, --out."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--check-batch", type=int, default=8, help="images in the fp32 check")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", default="", help="write the rows as JSON here")
    return parser


def write_rows(out: str, rows: list[dict]) -> None:
    """`--out`: {"env", "rows"}, as docs/speed_2026-11-27.json keeps them."""
    env = dict(date=str(date.today()), torch=torch.__version__, gpu=torch.cuda.get_device_name(), host=platform.node())
    if out:
        with open(out, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=1)
