"""One in-loop row: a src/train.py run's metrics.json with how it ran, as one JSON line on stdout (gpu_data_path.sh's
`run` and model_speed.sh's `train_run` both write their rows with it).

    python benchmarks/inloop_row.py NAME RUN_DIR LOG RC WALL_S "OVERRIDES"

The row: name, exit status, wall seconds, the overrides, the GPUs and cores it ran on ($CVD, $CPUS: the scripts'
names for them), metrics.json's figures (train_img_s among them, the last epoch's; none where the run failed),
`epochs`: each epoch's img/s and data wait from the CSV logger's metrics.csv (is a slow figure one slow epoch?), what
the log says about DDP's stream warning and decode=hybrid's region decoding, the log's tail where the run failed,
where `nvidia-smi dmon -s u` ran beside it (LOG with .dmon.log for .log), the device's load while it trained, and
where loop_profile.py profiled it (RUN_DIR/loop_profile.json), that summary.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path


def row(name: str, run_dir: Path, log_file: Path, rc: int, wall_s: int, overrides: str) -> dict:
    metrics = run_dir / "metrics.json"
    out = dict(
        name=name,
        rc=rc,
        wall_s=wall_s,
        overrides=overrides,
        gpus=os.environ.get("CVD", "all"),
        cpus=os.environ.get("CPUS", "all"),
        **(json.loads(metrics.read_text()) if metrics.exists() else {}),
    )
    out.pop("best_ckpt", None)
    per_epoch = epochs(run_dir / "csv" / "metrics.csv")
    if per_epoch:
        out["epochs"] = per_epoch
    log = log_file.read_text() if log_file.exists() else ""
    out["accumulate_grad_stream_warnings"] = log.count("AccumulateGrad node's stream")
    if "data.decode=hybrid: the workers decode" in log:
        out["region_decode"] = "decode only timm's crop region" in log
    if rc:
        out["log_tail"] = log[-1500:]
    dmon = log_file.with_suffix(".dmon.log")
    if dmon.exists():
        out["dmon"] = dmon_summary(dmon.read_text())
    profiled = run_dir / "loop_profile.json"  # loop_profile.py's, where the run was profiled (PROFILE=1)
    if profiled.exists():
        out["loop_profile"] = json.loads(profiled.read_text())
    return out


def epochs(metrics_csv: Path) -> list[dict]:
    """Each training epoch's `train/img_s` and `train/data_wait` (TrainThroughput's), from logger=csv's file."""
    if not metrics_csv.exists():
        return []
    with metrics_csv.open() as f:
        return [
            dict(epoch=int(r["epoch"]), img_s=round(float(r["train/img_s"]), 1), data_wait=float(r["train/data_wait"]))
            for r in csv.DictReader(f)
            if r.get("train/img_s")
        ]


def dmon_summary(text: str, busy: int = 50) -> dict:
    """`nvidia-smi dmon -s u` samples (one a second) -> the longest stretch of seconds with `sm` >= `busy`%, which
    in a run of several epochs is its training, not the compile, validation or start-up around it: its length and
    the median of each column over it (sm: share of the second a kernel ran; jpg: the JPEG engines' load)."""
    names, samples = None, []
    for line in text.splitlines():
        fields = line.lstrip("#").split()
        if line.startswith("#") and "sm" in fields:
            names = fields
        elif names and not line.startswith("#") and len(fields) == len(names):
            samples.append({k: int(v) for k, v in zip(names, fields) if v.isdigit()})
    best, run = [], []
    for sample in samples:
        run = run + [sample] if sample.get("sm", 0) >= busy else []
        best = run if len(run) > len(best) else best
    medians = {}
    for key in ("sm", "mem", "jpg"):
        values = sorted(s[key] for s in best if key in s)
        if values:
            medians[f"{key}_median"] = values[len(values) // 2]
    return dict(samples=len(samples), busy_seconds=len(best), **medians)


if __name__ == "__main__":
    name, run_dir, log_file, rc, wall_s, overrides = sys.argv[1:7]
    print(json.dumps(row(name, Path(run_dir), Path(log_file), int(rc), int(wall_s), overrides)))
