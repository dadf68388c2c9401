"""What DDP needs beyond Lightning's own: two per-step costs of a Lightning DDP step, taken out."""

from __future__ import annotations

import torch
from lightning.pytorch.strategies import DDPStrategy as LightningDDPStrategy
from torch.nn import Module
from torch.nn.parallel import DistributedDataParallel


class DDPStrategy(LightningDDPStrategy):
    """Lightning's DDP strategy, with DDP built on the current CUDA stream.

    Lightning 2.6 builds DDP under a new side stream (for whole-network CUDA graph capture, which this framework does
    not do). DDP keeps every parameter's AccumulateGrad node, and the node remembers that stream, so each backward
    synchronises it with the stream that produced the gradient, once a parameter; torch warns "The AccumulateGrad
    node's stream does not match the stream of the node that produced the incoming gradient" and names DDP as the
    cause. Lightning-AI/pytorch-lightning#21746 makes the same change upstream (merged after 2.6.6, the newest here).
    """

    def _setup_model(self, model: Module) -> DistributedDataParallel:
        return DistributedDataParallel(module=model, device_ids=self.determine_ddp_device_ids(), **self._ddp_kwargs)


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """`value` averaged over the ranks of the default process group (itself where there is none), queued on the device.

    `self.log(..., sync_dist=True)` averages the same way but after `torch.distributed.barrier()`, which under NCCL
    makes the host wait until the GPU has run everything queued on the current stream: from a training step, once a
    step, so the GPU idles while the host launches the backward.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    total = value.detach().clone()
    torch.distributed.all_reduce(total)  # a sum: gloo has no average
    return total / torch.distributed.get_world_size()
