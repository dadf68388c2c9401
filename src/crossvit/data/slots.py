"""decode=hybrid's crops written by the DataLoader's workers straight into page-locked shared memory (issue 12).

The usual way, each batch a worker makes is a new shared-memory file that the main process maps (faulting every page
in) and the DataLoader's pinning thread copies into pinned memory before the copy to the GPU. On one H200 host that
thread was on a core 31 ms of crossvit_9's 40 ms step: the loop's limit (docs/benchmarks.md, fourteenth session).
Here the slots are made once, before the workers start, so every process maps them once; on a GPU they are
page-locked once (cudaHostRegister), and a batch goes from its slot to the device in one DMA.

A worker's batches take its own slots in turn. The DataLoader gives a worker its next batch only after the main
process has taken one of its earlier ones, so a worker has at most `prefetch_factor` batches in hand: with two slots
more than that (one for the batch being copied, one for the batch Lightning fetches ahead) a worker never writes a
slot still to be read, as long as its reader is done with it when it takes the next batch (`SharedSlots.to_device`
waits for its copy).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from torch.utils.data import get_worker_info

from crossvit.errors import ConfigError


class SlotRef(NamedTuple):
    """What crosses from a worker instead of the crops' bytes: where they are."""

    slot: int
    nbytes: int


class SharedSlots:
    """`per_worker` byte slots of `capacity` bytes for each of `workers` DataLoader workers (0: the main process
    collates, as one), in one shared-memory tensor."""

    def __init__(self, workers: int, per_worker: int, capacity: int) -> None:
        self.workers, self.per_worker, self.capacity = max(workers, 1), per_worker, capacity
        try:
            # made in shared memory directly (as the DataLoader's own collate does), not copied there
            storage = torch.UntypedStorage._new_shared(self.workers * per_worker * capacity)
            self.buffer = torch.empty(0, dtype=torch.uint8).set_(storage).view(self.workers * per_worker, capacity)
        except RuntimeError as e:
            raise ConfigError(
                f"data.shared_slots: {self.gib:.1f} GiB of shared memory for {self.workers * per_worker} slots of "
                f"{capacity / 2**20:.0f} MiB failed ({e}); lower data.slot_mb or data.num_workers, enlarge /dev/shm, "
                f"or set data.shared_slots=false"
            ) from None
        self._written = 0  # batches this process wrote: each worker counts in its own copy
        self._warned = False
        self._pinned = False
        self._copy_streams: dict[torch.device, torch.cuda.Stream] = {}

    def __getstate__(self) -> dict:  # to a spawned worker: the shared buffer, not this process's streams
        return {**self.__dict__, "_pinned": False, "_copy_streams": {}}

    @property
    def gib(self) -> float:
        return self.workers * self.per_worker * self.capacity / 2**30

    def take(self, nbytes: int) -> SlotRef | None:
        """This worker's next slot, for `nbytes` to be written into `read(ref)`; None, with a warning, where they do
        not fit (the batch then goes the usual way)."""
        if nbytes > self.capacity:
            if not self._warned:  # once a process: every batch over the size would say the same
                warnings.warn(
                    f"data.shared_slots: a batch of {nbytes / 2**20:.1f} MiB does not fit a slot of "
                    f"{self.capacity / 2**20:.1f} MiB and went the usual way (as will any other); raise data.slot_mb",
                    stacklevel=2,
                )
                self._warned = True
            return None
        info = get_worker_info()
        slot = (info.id if info is not None else 0) * self.per_worker + self._written % self.per_worker
        self._written += 1
        return SlotRef(slot, nbytes)

    def read(self, ref: SlotRef) -> torch.Tensor:
        """The slot's bytes (a view: valid until its worker comes round to it again)."""
        return self.buffer[ref.slot, : ref.nbytes]

    def to_device(self, ref: SlotRef, device: torch.device) -> torch.Tensor:
        """The slot's bytes on `device`. On a GPU: one DMA from the page-locked slot on a copy stream, waited for,
        so that the slot is free again when this returns; the result may be used on the calling stream."""
        if device.type != "cuda":
            return self.read(ref).to(device)
        self._pin()
        if device not in self._copy_streams:
            self._copy_streams[device] = torch.cuda.Stream(device)
        stream = self._copy_streams[device]
        with torch.cuda.stream(stream):
            out = self.read(ref).to(device, non_blocking=True)
        stream.synchronize()
        out.record_stream(torch.cuda.current_stream(device))  # made on the copy stream, used and freed on this one
        return out

    def _pin(self) -> None:
        if self._pinned:
            return
        err = torch.cuda.cudart().cudaHostRegister(self.buffer.data_ptr(), self.buffer.numel(), 0)
        if int(err) != 0:
            raise ConfigError(
                f"data.shared_slots: page-locking {self.gib:.1f} GiB of slots failed (CUDA error {int(err)}); lower "
                f"data.slot_mb or data.num_workers, or set data.shared_slots=false"
            )
        self._pinned = True
