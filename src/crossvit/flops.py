"""Parameters and FLOPs of a CrossViT, per branch and for the fusion, in the paper's convention.

FLOPs here are multiply-accumulates of one image (fvcore's convention, the paper's), attention matmuls included.
PyTorch's FlopCounterMode counts 2 per multiply-add and skips the fused CPU attention kernel, so attention runs
on the math backend while counting (plain matmuls, all counted) and the total is halved.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from crossvit.models import CrossViT
from crossvit.models.kernels import class_forwards


@dataclass
class Cost:
    """Parameters (millions) and multiply-accumulates (billions) of one image, with a breakdown by part."""

    params_m: float
    gflops: float
    parts: dict[str, tuple[float, float]] = field(default_factory=dict)  # part -> (params_m, gflops)


def _branch_prefixes(model: CrossViT, i: int) -> tuple[str, ...]:
    blocks = tuple(f"blocks.{k}.blocks.{i}" for k in range(len(model.blocks)))
    return (f"patch_embed.{i}", f"cls_token_{i}", f"pos_embed_{i}", f"norm.{i}", f"head.{i}", *blocks)


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@torch.no_grad()
def module_macs(module: nn.Module, *inputs: torch.Tensor) -> dict[str, float]:
    """Multiply-accumulates of one forward, by submodule path ("" is the whole module; parents include children)."""
    with class_forwards(module), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False, depth=None) as counter:
        module(*inputs)
    # Counter keys are "<ClassName>.<module path>", or "Global" for the total.
    macs = {k.partition(".")[2]: sum(v.values()) / 2 for k, v in counter.get_flop_counts().items() if "." in k}
    return {**macs, "": counter.get_total_flops() / 2}


def count(model: CrossViT) -> Cost:
    """Count one image at the model's input size; parts are `branch<i>` and `fusion` (what the branches share)."""
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.zeros(1, model.in_chans, model.input_size, model.input_size, device=param.device, dtype=param.dtype)
    by_module = module_macs(model, x)
    model.train(was_training)
    total_macs = by_module[""]
    params = dict(model.named_parameters())

    counts: dict[str, tuple[int, float]] = {}
    for i in range(model.num_branches):
        prefixes = _branch_prefixes(model, i)
        p = sum(t.numel() for n, t in params.items() if _matches(n, prefixes))
        counts[f"branch{i}"] = (p, sum(macs for n, macs in by_module.items() if n in prefixes))
    total_params = sum(t.numel() for t in params.values())
    counts["fusion"] = (
        total_params - sum(p for p, _ in counts.values()),
        total_macs - sum(f for _, f in counts.values()),
    )
    parts = {name: (p / 1e6, f / 1e9) for name, (p, f) in counts.items()}
    return Cost(total_params / 1e6, total_macs / 1e9, parts)
