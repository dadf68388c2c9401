"""What the kernel benchmarks share (fa4_attention.py, quack_mlp.py): a forward swapped into modules for a `with`
block, and GPU time a call, eager or replayed from a CUDA graph."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn


@contextmanager
def forward_swapped(model: nn.Module, module_type: type, forward: Callable) -> Iterator[nn.Module]:
    """Inside the block, each of `model`'s modules of exactly `module_type` runs `forward(module, ...)`."""
    swapped = [m for m in model.modules() if type(m) is module_type]
    for module in swapped:
        module.forward = types.MethodType(forward, module)
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
