"""Where the device's time goes inside src/train.py's training loop (issue 12): a callback that profiles a few
training steps of a real run (data path, prefetcher and Lightning included) and writes, per step: the wall time,
the time any kernel or copy ran (busy) and none did (idle), each CUDA stream's share, how much of the other streams'
work overlapped the step's stream (the one with the most kernel time), their largest kernels, and the step stream's
time by kernel class (profile_step.py's classes); and on the host, each thread's CUDA calls with the most time (a
synchronising call in the training thread every step shows where the host waits for the device).

In a later epoch, without the profiler's overhead, it also clocks each host thread of the process and the DataLoader's
worker processes over more steps (the kernel's schedstat: time on a core and time waiting for one), and how late a
probe thread's 1 ms sleeps wake (the wait for the interpreter's lock, plus the scheduler's): so a training thread
that runs little while the device idles shows whether it waits for the lock, for a core, or for the data.

    PYTHONPATH=src:benchmarks python src/train.py ... +callbacks.loop_profile._target_=loop_profile.LoopProfile \\
        +callbacks.loop_profile.out=/tmp/runs/NAME/loop_profile.json

(`gpu_data_path.sh`'s `run` adds these with PROFILE=1; `inloop_row.py` puts the summary in the run's row.) Without
a GPU it profiles the CPU's operators instead, so that the callback can be checked anywhere.
"""

from __future__ import annotations

import json
import threading
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


def read_clocks() -> dict[str, list[float]]:
    """ns on a core and ns waiting for one (/proc's schedstat), summed by thread name: this process's Python threads
    by their names, its other threads by the kernel's (torch's and CUDA's own), and its child processes (the
    DataLoader's workers) as "workers", all their threads together."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    clocks: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])

    def add(name: str | None, task: Path) -> None:
        try:
            run, wait = (task / "schedstat").read_text().split()[:2]
            name = name or "native:" + (task / "comm").read_text().strip()
        except (OSError, ValueError):  # the thread ended between listing and reading
            return
        clocks[name][0] += int(run)
        clocks[name][1] += int(wait)

    for task in Path("/proc/self/task").iterdir():
        add(names.get(int(task.name)), task)
    for child in _children():
        for task in Path(f"/proc/{child}/task").glob("*"):
            add("workers", task)
    return dict(clocks)


def _children() -> list[int]:
    """This process's child processes (each thread lists those it started: the DataLoader's are the iterating
    thread's)."""
    kids = []
    for task in Path("/proc/self/task").iterdir():
        try:
            kids += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def clock_summary(before: dict[str, list[float]], after: dict[str, list[float]], steps: int) -> dict[str, dict]:
    """Two read_clocks() -> ms a step for each name: on a core (run_ms) and waiting for one (runq_ms), busiest
    first. A thread that ended in between counts only what it ran before the first reading."""
    rows = {}
    for name, (run, wait) in after.items():
        run0, wait0 = before.get(name, (0.0, 0.0))
        rows[name] = dict(run_ms=round((run - run0) / 1e6 / steps, 3), runq_ms=round((wait - wait0) / 1e6 / steps, 3))
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["run_ms"]))


class WakeProbe:
    """A thread that sleeps 1 ms at a time and measures how late it wakes: with the interpreter's lock held by
    other threads most of the time, it waits for it on each wake (up to the switch interval, 5 ms by default)."""

    def __init__(self, nap_s: float = 1e-3) -> None:
        self.nap_s, self.late_s, self.naps = nap_s, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="wake_probe")

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.perf_counter()
            time.sleep(self.nap_s)
            self.late_s += time.perf_counter() - start - self.nap_s
            self.naps += 1

    def start(self) -> WakeProbe:
        self._thread.start()
        return self

    def stop(self) -> float:
        """Stops the thread; the mean lateness of a wake in ms."""
        self._stop.set()
        self._thread.join()
        return round(1e3 * self.late_s / max(self.naps, 1), 3)


class LoopProfile(L.Callback):
    """Profile training batches [start, start + steps) of epoch `epoch` (the first rank only) into `out`; clock the
    host's threads over batches [start, start + clock_steps) of epoch `clock_epoch` (unprofiled) into the same file."""

    def __init__(
        self, out: str, epoch: int = 1, start: int = 20, steps: int = 10, clock_epoch: int = 2, clock_steps: int = 40
    ) -> None:
        self.out, self.epoch, self.start, self.steps = Path(out), epoch, start, steps
        self.clock_epoch, self.clock_steps = clock_epoch, clock_steps
        self._prof: profile | None = None
        self._t0 = 0.0
        self._clocks: tuple[dict, float, WakeProbe] | None = None
        self.summary: dict = {}

    def _sync(self, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_rank or batch_idx != self.start:
            return
        if trainer.current_epoch == self.clock_epoch:
            self._clocks = (read_clocks(), time.perf_counter(), WakeProbe().start())
        if trainer.current_epoch != self.epoch:
            return
        cuda = pl_module.device.type == "cuda"
        self._sync(pl_module)
        self._prof = profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU])
        self._prof.__enter__()
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int):
        if self._clocks is not None and batch_idx == self.start + self.clock_steps - 1:
            before, t0, probe = self._clocks
            self._clocks = None
            self.summary["clocks"] = dict(
                steps=self.clock_steps,
                wall_ms=round(1e3 * (time.perf_counter() - t0) / self.clock_steps, 3),
                wake_late_ms=probe.stop(),
                threads=clock_summary(before, read_clocks(), self.clock_steps),
            )
            self._write()
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
        self.summary.update(summary)
        self._write()

    def _write(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.summary, indent=1))
