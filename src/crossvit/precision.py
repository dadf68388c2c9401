"""`trainer.precision=bf16-true` with fp32 master weights: the model, its activations and gradients in bf16, the
optimizer's weights, moments and updates in fp32.

Lightning's own bf16-true casts the weights and lets the optimizer update them in bf16, where a step under half the
spacing of bf16 numbers near the weight (0.2-0.4% of its size) rounds to nothing, so small learning rates stall. Here
the optimizer steps fp32 copies instead and every step writes them back rounded. The model in bf16 keeps its
residual stream in bf16 too: on an H200 training is 5% (crossvit_18) to 9% (crossvit_9) faster than under bf16
autocast (docs/benchmarks.md, "Issue 14"), and its logits stray 30-45% further from fp32's than autocast's do, so
bf16-mixed stays the default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.precision import HalfPrecision
from lightning.pytorch.utilities import rank_zero_info
from torch.nn import Module


class MasterWeightsPrecision(HalfPrecision):
    """bf16-true whose optimizer updates fp32 masters of the trainable parameters (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__("bf16-true")
        self.params: list[torch.nn.Parameter] = []
        self.masters: dict[str, torch.nn.Parameter] = {}

    def convert_module(self, module: Module) -> Module:
        # Copied before the cast, so a loaded checkpoint or pretrained weights keep their fp32 values.
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad and p.dtype == torch.float32]
        if named:  # a module converted before (testing after fitting) keeps the masters it has
            self.params = [p for _, p in named]
            self.masters = {n: torch.nn.Parameter(p.detach().float().clone()) for n, p in named}
        return super().convert_module(module)

    def connect(self, model: Module, optimizers: list, lr_schedulers: list) -> tuple[Module, list, list]:
        """The optimizers (built over the bf16 parameters) get the fp32 masters in their place."""
        for master in self.masters.values():  # masters follow the model to its device
            master.data = master.data.to(self.params[0].device)
        by_param = {id(p): m for p, m in zip(self.params, self.masters.values())}
        swapped = 0
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                swapped += sum(m.numel() for p in group["params"] if (m := by_param.get(id(p))) is not None)
                group["params"] = [by_param.get(id(p), p) for p in group["params"]]
        if swapped:
            rank_zero_info(f"precision bf16-true: the optimizer steps fp32 master copies of {swapped:,} weights")
        return super().connect(model, optimizers, lr_schedulers)

    def _after_closure(self, model: L.LightningModule, optimizer: Any) -> None:
        # Lightning's (private) point between the closure's backward and its hooks and gradient clipping, which then
        # see the fp32 gradients the step will use. tests/test_module.py fails if a Lightning release drops it.
        masters = list(self.masters.values())
        with_grad = [(p, m) for p, m in zip(self.params, masters) if p.grad is not None]
        for _, m in with_grad:
            if m.grad is None:
                m.grad = torch.empty_like(m)
        torch._foreach_copy_([m.grad for _, m in with_grad], [p.grad for p, _ in with_grad])
        for p in self.params:
            p.grad = None
        super()._after_closure(model, optimizer)

    def optimizer_step(self, optimizer: Any, model: L.LightningModule, closure: Callable[[], Any], **kwargs) -> Any:
        out = super().optimizer_step(optimizer, model, closure, **kwargs)
        with torch.no_grad():
            torch._foreach_copy_(self.params, list(self.masters.values()))
        return out

    def master_state_dict(self) -> dict[str, torch.Tensor]:
        """The fp32 masters under the LightningModule's state_dict keys."""
        return {name: m.detach() for name, m in self.masters.items()}
