"""Datasets small enough to hold in memory as uint8 tensors; augmentation runs on whole batches on the device."""

from __future__ import annotations

import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from crossvit.errors import ConfigError, check_one_batch

from .batch_augment import to_device
from .resume import MidEpochResume, ResumableDistributedSampler


class BatchedTensorDataset(TensorDataset):
    """Gathers a whole batch with one index per tensor instead of stacking single items (10x less CPU)."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        # Asynchronous where the data is on a GPU: a plain copy of the indices would wait for the step in flight
        idx = to_device(torch.as_tensor(indices), self.tensors[0].device)
        return tuple(t[idx] for t in self.tensors)


def _as_is(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return batch


class InMemoryDataModule(MidEpochResume, L.LightningDataModule):
    """Train/val/test splits of uint8 images [N, C, H, W] with integer labels.

    Batches travel as uint8 (4x less host-to-device traffic); on the device they are resized to `img_size`,
    normalised and, when training, flipped.
    """

    def __init__(
        self,
        img_size: int,
        in_chans: int,
        num_classes: int,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = True,
        persistent_workers: bool = False,
        shuffle: bool = True,
        hflip: float = 0.5,
        interpolation: str = "bicubic",
        mean: tuple[float, ...] = (0.5,),
        std: tuple[float, ...] = (0.5,),
        val_size: int = 5000,
        split_seed: int = 0,
        on_device: bool = False,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.loader_args = dict(
            num_workers=num_workers,
            pin_memory=pin_memory,
            collate_fn=_as_is,
            persistent_workers=persistent_workers and num_workers > 0,
        )
        self.shuffle = shuffle
        self.hflip = hflip
        self.interpolation = interpolation
        self.mean = torch.tensor(mean).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std).view(1, -1, 1, 1) * 255
        self.val_size = val_size
        self.split_seed = split_seed
        self.on_device = on_device
        if on_device:  # batches are gathered where the data lives: nothing to pin or copy
            self.loader_args["pin_memory"] = False
        self.train_set = self.val_set = self.test_set = None

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(train images, train labels, test images, test labels) as uint8 [N, C, H, W] and int64 [N]."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        x, y, x_test, y_test = self.load()
        if x.shape[1] != self.in_chans:
            raise ConfigError(
                f"data.in_chans={self.in_chans} but the images have {x.shape[1]} channels; "
                f"set data.in_chans={x.shape[1]}"
            )
        if int(y.max()) >= self.num_classes:
            raise ConfigError(
                f"data.num_classes={self.num_classes} but the labels go up to {int(y.max())}; "
                f"set data.num_classes={int(y.max()) + 1}"
            )
        # A fixed held-out slice of the training set is the validation set; the official test split stays unseen.
        if self.on_device and self.trainer is not None:
            device = self.trainer.strategy.root_device
            x, y, x_test, y_test = (t.to(device) for t in (x, y, x_test, y_test))
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.split_seed))
        val, train = order[: self.val_size], order[self.val_size :]
        if stage in (None, "fit"):
            check_one_batch(
                len(train),
                self.trainer.world_size if self.trainer is not None else 1,
                self.batch_size,
                f"{len(x)} images less data.val_size={self.val_size} held out for validation",
                "lower data.val_size or data.batch_size",
            )
        self.train_set = BatchedTensorDataset(x[train], y[train])
        self.val_set = BatchedTensorDataset(x[val], y[val])
        self.test_set = BatchedTensorDataset(x_test, y_test)

    def train_dataloader(self) -> DataLoader:
        # A DistributedSampler also for one process: its order depends only on (seed, epoch), so a run resumed from
        # a checkpoint sees the batches an uninterrupted run would, and it honours data.shuffle under DDP (the
        # sampler Lightning would inject always shuffles). Lightning calls its set_epoch.
        distributed = dist.is_available() and dist.is_initialized()
        sampler = ResumableDistributedSampler(
            self.train_set,
            num_replicas=dist.get_world_size() if distributed else 1,
            rank=dist.get_rank() if distributed else 0,
            shuffle=self.shuffle,
            seed=self.split_seed,
            drop_last=True,
        )
        self.resume_sampler(sampler, self.batch_size)
        return DataLoader(self.train_set, self.batch_size, sampler=sampler, drop_last=True, **self.loader_args)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, self.eval_batch_size, **self.loader_args)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, self.eval_batch_size, **self.loader_args)

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int):
        x, y = batch
        x = x.float()
        if x.shape[-1] != self.img_size:
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode=self.interpolation, align_corners=False)
        if self.mean.device != x.device:  # copied once: a copy every batch waits for the step in flight
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        x = (x - self.mean) / self.std
        if self.trainer is not None and self.trainer.training and self.hflip > 0:
            flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < self.hflip
            x = torch.where(flip, x.flip(-1), x)
        return x, y
