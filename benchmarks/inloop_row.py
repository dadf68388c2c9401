"""One in-loop row: a src/train.py run's metrics.json with how it ran, as one JSON line on stdout (gpu_data_path.sh's
`run` and model_speed.sh's `train_run` both write their rows with it).

    python benchmarks/inloop_row.py NAME RUN_DIR LOG RC WALL_S "OVERRIDES"

The row: name, exit status, wall seconds, the overrides, the GPUs and cores it ran on ($CVD, $CPUS: the scripts'
names for them), metrics.json's figures (train_img_s among them; none where the run failed), what the log says
about DDP's stream warning and decode=hybrid's region decoding, and the log's tail where the run failed.
"""

from __future__ import annotations

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
    log = log_file.read_text() if log_file.exists() else ""
    out["accumulate_grad_stream_warnings"] = log.count("AccumulateGrad node's stream")
    if "data.decode=hybrid: the workers decode" in log:
        out["region_decode"] = "decode only timm's crop region" in log
    if rc:
        out["log_tail"] = log[-1500:]
    return out


if __name__ == "__main__":
    name, run_dir, log_file, rc, wall_s, overrides = sys.argv[1:7]
    print(json.dumps(row(name, Path(run_dir), Path(log_file), int(rc), int(wall_s), overrides)))
