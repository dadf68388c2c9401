"""In-memory data sets gather a batch with one index per tensor (data.on_device=true gathers on the GPU too)."""

import torch
from torch.utils.data import DataLoader, TensorDataset

from crossvit.data.in_memory import BatchedTensorDataset


def test_batched_gathering_equals_item_by_item_stacking():
    x = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 10, (50,))
    order = torch.randperm(50, generator=torch.Generator().manual_seed(0)).tolist()
    batched = DataLoader(BatchedTensorDataset(x, y), 16, sampler=order, collate_fn=lambda b: b)
    stacked = DataLoader(TensorDataset(x, y), 16, sampler=order)
    for (bx, by), (sx, sy) in zip(batched, stacked, strict=True):
        assert torch.equal(bx, sx) and torch.equal(by, sy)
