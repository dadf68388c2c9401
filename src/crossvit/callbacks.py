"""Training callbacks Lightning does not ship in this form."""

from __future__ import annotations

import math
import os
import resource
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import psutil
import torch
from lightning.pytorch.callbacks import RichModelSummary, RichProgressBar
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from crossvit.errors import ConfigError
from crossvit.flops import count
from crossvit.models.kernels import class_forwards
from crossvit.precision import MasterWeightsPrecision

GB = 1e9


class TrainThroughput(L.Callback):
    """Logs `train/img_s`: images per second of each training epoch, from the end of its first `warmup` steps to the
    end of its last, so neither compilation nor the validation and checkpoint that end the epoch count.

    Also logs `train/data_wait`: the share of that time the loop spent between the end of one step and the start of
    the next, which is where it waits for its next batch (timm's train.py prints the same as "Data" time): near 0, the
    data keeps up with the step; well above 0, the run is data-bound.

    Lightning's ThroughputMonitor synchronises the GPU after every batch, which itself slows a fast loop; this
    synchronises twice an epoch, so it measures the loop as it runs unobserved.
    """

    def __init__(self, warmup: int = 10) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.images = 0
        self.img_s: float | None = None
        self.waited = 0.0  # seconds between steps since `start`
        self.data_wait: float | None = None
        self._step_end: float | None = None

    def _now(self, module: L.LightningModule) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.start, self.images, self.img_s = None, 0, None
        self.waited, self.data_wait, self._step_end = 0.0, None, None

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch, batch_idx: int) -> None:
        if self._step_end is not None:
            self.waited += time.perf_counter() - self._step_end

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if batch_idx + 1 == self.warmup:
            self.start = self._step_end = self._now(module)
            return
        if self.start is None:
            return
        self.images += batch[0].shape[0] * trainer.world_size
        # Lightning validates (and checkpoints) inside the epoch, before on_train_epoch_end: stop the clock here.
        if batch_idx + 1 == trainer.num_training_batches:
            self._stop(self._now(module))
        else:
            self._step_end = time.perf_counter()

    def _stop(self, now: float) -> None:
        self.img_s = self.images / (now - self.start)
        self.data_wait = self.waited / (now - self.start)
        self._step_end = None

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.img_s is None and self.images:  # an epoch of unknown length: the clock ran through validation
            self._stop(self._now(module))
        if self.img_s is not None:  # every rank clocked the whole job's rate: their mean, once an epoch
            module.log("train/img_s", self.img_s, sync_dist=True)
            module.log("train/data_wait", self.data_wait, sync_dist=True)


class LossProgressBar(RichProgressBar):
    """Lightning's rich progress bar, with the training loss read at most every `loss_every_s` seconds.

    A metric logged with prog_bar=True is turned into a Python number after every training step (`.item()`), so the
    host waits for each step to finish before it can queue the next: on a GPU the launch work of one step no longer
    overlaps the previous one's kernels. The module logs `train/loss` without prog_bar; this bar reads it itself.
    """

    def __init__(self, loss_every_s: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.loss_every_s = loss_every_s
        self._loss: float | None = None
        self._read_at = -math.inf

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        loss = trainer.callback_metrics.get("train/loss") if trainer.training else None
        if loss is not None and time.monotonic() - self._read_at >= self.loss_every_s:
            self._loss, self._read_at = float(loss), time.monotonic()
        if self._loss is not None:
            metrics["train/loss"] = round(self._loss, 4)
        return metrics


class _CountedSummary:
    """A Lightning model summary whose total FLOPs are given."""

    def __init__(self, summary, total_flops: int) -> None:
        self._summary, self.total_flops = summary, total_flops

    def __getattr__(self, name: str):
        return getattr(self._summary, name)


class FlopsSummary(RichModelSummary):
    """Lightning's model summary with the model's FLOPs as the paper counts them (multiply-accumulates of one image
    at the input size, attention matmuls included: crossvit.flops.count). Lightning's own count is 0 without an
    example input, and PyTorch's counter misses the fused attention kernel on the CPU."""

    def _summary(self, trainer: L.Trainer, module: L.LightningModule):
        cost = count(module.model)
        rank_zero_info(
            f"{cost.params_m:.1f} M parameters, {cost.gflops:.2f} GFLOPs an image at "
            f"{module.model.input_size} px (multiply-accumulates, as the paper's tables)"
        )
        return _CountedSummary(super()._summary(trainer, module), round(cost.gflops * 1e9))


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM (a cluster preempting or requeueing the job), stop every rank after the same training step and save
    checkpoints/last.ckpt there. Other exceptions (a diverged loss) save nothing, so the last good checkpoint survives.

    Lightning's own SIGTERM handler is replaced while a stage runs: it issues a collective inside the signal handler,
    and each rank then raises on its own flag, so under DDP a rank signalled a moment earlier left while its peer
    waited in the next collective. The peer failed with gloo's "Connection closed by peer", and on rank 0 that error
    became the SLURM job's result. Here the handler only records the signal; the ranks agree through a MAX all-reduce
    of their flags after each training step, read on the host one step later so that it never waits for the device,
    and raise together.

    Under submitit, the signal SLURM sends before a job's time limit (`--signal=USR2@signal_delay_s`, also its
    preemption signal) is taken the same way, and `requeue_if_asked` hands it back to submitit once the checkpoint is
    saved: submitit's handler requeues the job and exits at once, which in the middle of a step would lose the work
    since the last checkpoint.
    """

    def __init__(self) -> None:
        self.received_sigterm = False  # or submitit's requeue signal: either stops training here
        self.deferred: int | None = None  # submitit's requeue signal, for requeue_if_asked
        self._agreed: tuple[torch.Tensor, torch.cuda.Event | None] | None = None  # last step's all-reduced flag

    def _install(self, trainer: L.Trainer) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal.signal works only there; Lightning's handler stays
        launcher = trainer.strategy.launcher

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            if launcher is not None and not self.received_sigterm:
                launcher.kill(signum)  # ranks that Lightning started itself get the signal too
            self.received_sigterm = True

        def on_requeue_signal(signum: int, frame: FrameType | None) -> None:
            self.deferred = signum
            self.received_sigterm = True

        # Lightning's teardown restores every handler from before the stage, submitit's included.
        signal.signal(signal.SIGTERM, on_sigterm)
        requeue = submitit_requeue_signal()
        if requeue is not None and callable(signal.getsignal(requeue)):  # a submitit job's handler is installed
            signal.signal(requeue, on_requeue_signal)

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._install(trainer)
        self._agreed = None
        # Lightning broadcasts rank 0's SIGTERM flag before every step and reads it on the host: under DDP, a wait for
        # the device each step. Its flag is never set once the handler above is in place, so the read only costs time.
        trainer.fit_loop.epoch_loop._broadcast_sigterm_tensor = lambda: None

    def on_validation_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._install(trainer)  # also the sanity check before training, and trainer.validate

    def on_test_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._install(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            if self.received_sigterm:
                raise SIGTERMException
            return
        previous, self._agreed = self._agreed, self._all_reduce_flag(trainer.strategy.root_device)
        if previous is not None:
            flag, ready = previous
            if ready is not None:
                ready.synchronize()  # the step before this one: long finished
            if flag.item():
                raise SIGTERMException

    def _all_reduce_flag(self, device: torch.device) -> tuple[torch.Tensor, torch.cuda.Event | None]:
        flag = torch.full((1,), int(self.received_sigterm), dtype=torch.int32, device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.device.type != "cuda":
            return flag, None
        ready = torch.cuda.Event()
        flag = flag.to("cpu", non_blocking=True)  # into pinned memory, behind the all-reduce
        ready.record()
        return flag, ready

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.checkpoint_callback is not None:
            path = f"{trainer.checkpoint_callback.dirpath}/last.ckpt"
            trainer.save_checkpoint(path)
            rank_zero_info(f"{self.stopped_by or 'SIGTERM'}: saved {path} at global step {trainer.global_step}")

    @property
    def stopped_by(self) -> str | None:
        """The signal that stopped training here: SIGTERM or submitit's requeue signal; None while none came."""
        if not self.received_sigterm:
            return None
        return signal.Signals(self.deferred).name if self.deferred else "SIGTERM"


def submitit_requeue_signal() -> signal.Signals | None:
    """The signal submitit asks SLURM for before a time limit and on preemption (SUBMITIT_PREEMPT_SIGNAL, USR2)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)


def _preemption(trainer: L.Trainer) -> PreemptionCheckpoint | None:
    return next((c for c in trainer.callbacks if isinstance(c, PreemptionCheckpoint)), None)


def stop_signal(trainer: L.Trainer) -> str | None:
    """The signal that stopped this process during the trainer's stages, as PreemptionCheckpoint recorded it: SIGTERM,
    or submitit's requeue signal; None if none came."""
    callback = _preemption(trainer)
    return callback.stopped_by if callback is not None else None


def requeue_if_asked(trainer: L.Trainer) -> None:
    """After a stop on submitit's requeue signal, with the checkpoint saved and the trainer torn down (submitit's
    handler is back): send that signal again. On rank 0 submitit requeues the job and exits; other ranks return."""
    callback = _preemption(trainer)
    if callback is not None and callback.deferred is not None:
        signal.raise_signal(callback.deferred)


def step_memory(module: L.LightningModule, batch_size: int, probe: int = 2) -> tuple[float, float]:
    """Bytes one training step holds at its peak: (weights, gradients and optimizer state; activations).

    Activations are measured, not guessed: the tensors autograd saves in a forward pass of `probe` images, under the
    trainer's precision, scaled to `batch_size`. AdamW keeps two moments per weight (fp32 masters and their gradients
    too under bf16-true); an EMA and DDP's gradient buckets add one copy each.
    """
    model, trainer = module.model, module.trainer
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    fixed = weights * (2 + (module.ema is not None) + (trainer.world_size > 1))  # weights, grads, EMA, DDP buckets
    if isinstance(trainer.precision_plugin, MasterWeightsPrecision):  # fp32 masters, their grads, two moments
        fixed += 16 * sum(p.numel() for p in model.parameters())
    else:
        fixed += 2 * weights  # AdamW's two moments
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    x = module._input(torch.randn(probe, model.in_chans, model.input_size, model.input_size, device=module.device))
    with (
        torch.random.fork_rng(devices=[module.device] if module.device.type == "cuda" else []),
        trainer.precision_plugin.forward_context(),
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        class_forwards(model),  # kernels= save less than PyTorch's modules, and would autotune at this shape
    ):
        model.forward_branches(x)
    return fixed, sum(storages.values()) / probe * batch_size


def free_memory(device: torch.device) -> float:
    """Bytes a new allocation can still get: the GPU's free memory, or the host's available RAM (cgroup-aware)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    free = psutil.virtual_memory().available
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int((cgroup / "memory.current").read_text()))
    except OSError:
        pass
    address_space, _ = resource.getrlimit(resource.RLIMIT_AS)  # `ulimit -v`, as some clusters set
    if address_space != resource.RLIM_INFINITY:
        free = min(free, address_space - psutil.Process().memory_info().vms)
    return free


class MemoryPreflight(L.Callback):
    """Before the first step, stop with one line if a training step cannot fit the device's free memory.

    The kernel's OOM killer ends a CPU run without a word, and a CUDA OOM comes after the data and the model have
    loaded; this costs one forward pass of two images. `headroom` covers what the count leaves out (the backward
    pass's temporaries, the allocator's fragmentation).
    """

    def __init__(self, headroom: float = 1.1) -> None:
        self.headroom = headroom

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        batch = module.hparams.batch_size
        fixed, activations = step_memory(module, batch)
        need = fixed + self.headroom * activations
        # Processes of one machine share its RAM; each GPU has its own memory.
        sharing = trainer.num_devices if module.device.type == "cpu" else 1
        free = free_memory(module.device) / sharing
        rank_zero_info(f"memory preflight: a training step needs about {need / GB:.1f} GB of {free / GB:.1f} GB free")
        if need <= free:
            return
        per_image = self.headroom * activations / batch
        fits = max(0, int((free - fixed) // per_image)) if free > fixed else 0
        smaller = 2 ** int(math.log2(fits)) if fits >= 1 else 0
        where = f"{module.device.type}" + (f" (shared by {sharing} processes)" if sharing > 1 else "")
        fixes = []
        if smaller:
            accumulate = math.ceil(batch * trainer.accumulate_grad_batches / smaller)
            fixes.append(
                f"set data.batch_size={smaller} (trainer.accumulate_grad_batches={accumulate} keeps the global batch)"
            )
        if module.device.type == "cpu":
            fixes.append("train on a GPU (trainer=gpu)")
        elif "32" in str(trainer.precision):
            fixes.append("use trainer.precision=bf16-mixed")
        fixes.append("choose a smaller model=")
        raise ConfigError(
            f"one training step needs about {need / GB:.1f} GB ({fixed / GB:.1f} GB weights, gradients and optimizer "
            f"state + {self.headroom * activations / GB:.1f} GB activations for data.batch_size={batch} at "
            f"{trainer.precision} precision) but {where} has {free / GB:.1f} GB free; " + ", or ".join(fixes)
        )
