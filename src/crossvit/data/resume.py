"""Mid-epoch resume. A checkpoint records how many training batches of its epoch had run; the resumed run's sampler
skips exactly those indices once, so the epoch goes on with the next batch in the order an uninterrupted run has.

The order itself depends only on (seed, epoch) (DistributedSampler, also on one process), so nothing more than the
count needs saving. Lightning resumes its own loop counters mid-epoch. Random augmentation goes on from the resumed
run's random state, not the interrupted one's.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DistributedSampler


class SkipStart:
    """Sampler mixin: the next iteration starts `start` indices in, once; later epochs start at 0. The skipped
    indices are never loaded."""

    start: int = 0

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        return itertools.islice(super().__iter__(), start, None)


class ResumableDistributedSampler(SkipStart, DistributedSampler):
    """torch's DistributedSampler (order from (seed, epoch)) that can start mid-epoch."""


class MidEpochResume:
    """LightningDataModule mixin: saves the number of training batches run in the checkpoint's epoch and, on resume,
    makes the first training epoch skip them. Call `resume_sampler` on the sampler of `train_dataloader`."""

    trainer: L.Trainer | None
    _resume_batches: int = 0

    def state_dict(self) -> dict[str, Any]:
        trainer = self.trainer
        if trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        # A checkpoint at the epoch's end resumes at the next epoch's start, where there is nothing to skip.
        return {"train_batches_done": done if done < trainer.num_training_batches else 0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_batches = int(state.get("train_batches_done", 0))
        if self._resume_batches:  # Lightning looks for the state on the loader; here the sampler skips
            warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before the epoch ended")

    def resume_sampler(self, sampler: SkipStart, batch_size: int) -> None:
        sampler.start, self._resume_batches = self._resume_batches * batch_size, 0
