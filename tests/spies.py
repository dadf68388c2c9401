"""Callbacks a test adds to a real run in a subprocess: `+callbacks.NAME._target_=spies.CLASS`, with tests/ on
PYTHONPATH. They watch; they change nothing the run does."""

from __future__ import annotations

import lightning as L
import torch


class TrainingStepBarriers(L.Callback):
    """Counts the `torch.distributed.barrier` calls made while a training batch runs and prints them when training
    ends: under NCCL a barrier makes the host wait for everything queued on the GPU."""

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.steps, self.barriers, self.in_step = 0, 0, False
        self._barrier = torch.distributed.barrier

        def counted(*args, **kwargs):
            self.barriers += self.in_step
            return self._barrier(*args, **kwargs)

        torch.distributed.barrier = counted

    def on_train_batch_start(self, *args) -> None:
        self.in_step = True

    def on_train_batch_end(self, *args) -> None:
        self.in_step = False
        self.steps += 1

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        torch.distributed.barrier = self._barrier
        print(f"rank {trainer.global_rank}: {self.barriers} barriers in {self.steps} training steps", flush=True)
