"""Training callbacks Lightning does not ship in this form."""

from __future__ import annotations

import time

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException


class TrainThroughput(L.Callback):
    """Logs `train/img_s`: images per second of each training epoch after its first `warmup` steps.

    Lightning's ThroughputMonitor synchronises the GPU after every batch, which itself slows a fast loop; this
    synchronises twice an epoch, so it measures the loop as it runs unobserved.
    """

    def __init__(self, warmup: int = 10) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.images = 0

    def _now(self, module: L.LightningModule) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.start, self.images = None, 0

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if batch_idx + 1 == self.warmup:
            self.start = self._now(module)
        elif self.start is not None:
            self.images += batch[0].shape[0] * trainer.world_size

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.start is not None and self.images:
            module.log("train/img_s", self.images / (self._now(module) - self.start), rank_zero_only=True)


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM (a cluster preempting the job), save checkpoints/last.ckpt where training stood.

    Lightning turns SIGTERM into a SIGTERMException; other exceptions (a diverged loss) save nothing, so the last
    good checkpoint survives them.
    """

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.checkpoint_callback is not None:
            path = f"{trainer.checkpoint_callback.dirpath}/last.ckpt"
            trainer.save_checkpoint(path)
            rank_zero_info(f"SIGTERM: saved {path} at global step {trainer.global_step}")
