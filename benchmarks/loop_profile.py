"""Where the device's time goes inside src/train.py's training loop (issue 12): a callback that profiles a few
training steps of a real run (data path, prefetcher and Lightning included) and writes, per step: the wall time,
the time any kernel or copy ran (busy) and none did (idle), each CUDA stream's share, how much of the other streams'
work overlapped the step's stream (the one with the most kernel time), their largest kernels, and the step stream's
time by kernel class (profile_step.py's classes); and on the host, each thread's CUDA calls with the most time (a
synchronising call in the training thread every step shows where the host waits for the device).

    PYTHONPATH=src:benchmarks python src/train.py ... +callbacks.loop_profile._target_=loop_profile.LoopProfile \\
        +callbacks.loop_profile.out=/tmp/runs/NAME/loop_profile.json

(`gpu_data_path.sh`'s `run` adds these with PROFILE=1; `inloop_row.py` puts the summary in the run's row.) Without
a GPU it profiles the CPU's operators instead, so that the callback can be checked anywhere.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import lightning as L
import torch
from profile_step import kernel_class, length, merged, overlap
from torch.profiler import ProfilerActivity, profile

Span = tuple[float, float]


def summarise(events: list[tuple[int, str, float, float]], wall_ms: float, steps: int) -> dict:
    """(stream, name, start_us, end_us) of each kernel or copy over `steps` steps -> ms a step: busy (the union of
    all), idle (wall - busy), per stream (sum, union, count), the step stream (most kernel time), the other streams'
    union and its overlap with the step stream's, their top kernels, and the step stream's kernel classes."""
    by_stream: dict[int, list[Span]] = defaultdict(list)
    names: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for stream, name, start, end in events:
        by_stream[stream].append((start, end))
        names[stream][name] += end - start
    per_step = 1e3 * steps  # us over all steps -> ms a step
    streams = {
        s: dict(sum_ms=sum(e - b for b, e in spans) / per_step, union_ms=length(merged(spans)) / per_step, n=len(spans))
        for s, spans in by_stream.items()
    }
    step_stream = max(streams, key=lambda s: streams[s]["sum_ms"]) if streams else None
    others = merged([span for s, spans in by_stream.items() if s != step_stream for span in spans])
    step_spans = merged(by_stream.get(step_stream, []))
    busy = length(merged([span for spans in by_stream.values() for span in spans])) / per_step
    other_names: dict[str, float] = defaultdict(float)
    for s, table in names.items():
        if s != step_stream:
            for name, us in table.items():
                other_names[name] += us
    classes: dict[str, float] = defaultdict(float)
    for name, us in names.get(step_stream, {}).items():
        classes[kernel_class(name)] += us / per_step

    def r(x: float) -> float:
        return round(x, 3)

    return dict(
        steps=steps,
        wall_ms=r(wall_ms / steps),
        busy_ms=r(busy),
        idle_ms=r(wall_ms / steps - busy),
        step_stream=step_stream,
        step_stream_ms=r(length(step_spans) / per_step),
        other_streams_ms=r(length(others) / per_step),
        other_overlapping_step_ms=r(overlap(step_spans, others) / per_step),
        streams={str(s): {k: r(v) for k, v in streams[s].items()} for s in sorted(streams, key=str)},
        step_stream_classes_ms={k: r(v) for k, v in sorted(classes.items(), key=lambda kv: -kv[1])},
        other_top_ms=[(n[:100], r(us / per_step)) for n, us in sorted(other_names.items(), key=lambda kv: -kv[1])[:12]],
    )


def api_summary(calls: list[tuple[int, str, float, float]], steps: int, top: int = 10) -> list[dict]:
    """(thread, name, start_us, end_us) of each CUDA runtime or driver call -> the calls with the most host time, by
    thread and name, per step. A synchronising call (cudaStreamSynchronize, cudaEventSynchronize...) in the training
    thread every step means the host waits for the device there and cannot queue the next step ahead."""
    totals: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for thread, name, start, end in calls:
        totals[(thread, name)][0] += 1
        totals[(thread, name)][1] += end - start
    ranked = sorted(totals.items(), key=lambda kv: -kv[1][1])[:top]
    return [
        dict(thread=thread, name=name, calls_per_step=round(n / steps, 2), host_ms=round(us / 1e3 / steps, 3))
        for (thread, name), (n, us) in ranked
    ]


class LoopProfile(L.Callback):
    """Profile training batches [start, start + steps) of epoch `epoch` (the first rank only) into `out`."""

    def __init__(self, out: str, epoch: int = 1, start: int = 20, steps: int = 10) -> None:
        self.out, self.epoch, self.start, self.steps = Path(out), epoch, start, steps
        self._prof: profile | None = None
        self._t0 = 0.0

    def _sync(self, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_rank or trainer.current_epoch != self.epoch or batch_idx != self.start:
            return
        cuda = pl_module.device.type == "cuda"
        self._sync(pl_module)
        self._prof = profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU])
        self._prof.__enter__()
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int):
        if self._prof is None or batch_idx != self.start + self.steps - 1:
            return
        self._sync(pl_module)
        wall_ms = 1e3 * (time.perf_counter() - self._t0)
        prof, self._prof = self._prof, None
        prof.__exit__(None, None, None)
        cuda = pl_module.device.type == "cuda"
        recorded = prof.profiler.kineto_results.events()
        events = [
            # device_resource_id: the CUDA stream of a kernel or copy; on the CPU, the thread of an operator
            (e.device_resource_id(), e.name(), e.start_ns() / 1e3, (e.start_ns() + e.duration_ns()) / 1e3)
            for e in recorded
            if (e.device_type() == torch.autograd.DeviceType.CUDA) == cuda and e.duration_ns() > 0
        ]
        summary = summarise(events, wall_ms, self.steps)
        if cuda:  # the host's side: where each thread's CUDA calls spent their time (CUPTI's runtime and driver API)
            calls = [
                (e.start_thread_id(), e.name(), e.start_ns() / 1e3, (e.start_ns() + e.duration_ns()) / 1e3)
                for e in recorded
                if e.device_type() == torch.autograd.DeviceType.CPU and e.name().startswith("cu")
            ]
            summary["cuda_calls"] = api_summary(calls, self.steps)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(summary, indent=1))
