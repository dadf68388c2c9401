"""Per-step training loss of runs against a reference run (their csv logs), and their final test accuracy.

    python benchmarks/compare_losses.py REF_RUN_DIR RUN_DIR... [--steps 50] [--out rows.json]

For DDP equivalence: the reference trains on 1 device with batch 2B, the other run on 2 devices with B each, both
with a fixed data order (data.shuffle=false) and no randomness in the step, so each step sees the same global batch.
A third run in float32 shows how far bf16 rounding alone moves the losses.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def losses(run: Path) -> dict[int, float]:
    rows = csv.DictReader((run / "csv" / "metrics.csv").open())
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ref", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    ref = losses(args.ref)
    ref_acc = json.loads((args.ref / "metrics.json").read_text())["test/acc"]
    rows = []
    for run in args.runs:
        other = losses(run)
        steps = sorted(set(ref) & set(other))
        first = steps[: args.steps]
        diff = [abs(other[s] - ref[s]) / abs(ref[s]) for s in first]
        acc = json.loads((run / "metrics.json").read_text())["test/acc"]
        rows.append(
            dict(
                ref=args.ref.name,
                run=run.name,
                steps_compared=len(first),
                common_steps=len(steps),
                max_rel_diff=max(diff),
                mean_rel_diff=sum(diff) / len(diff),
                max_rel_diff_all_steps=max(abs(other[s] - ref[s]) / abs(ref[s]) for s in steps),
                ref_test_acc=ref_acc,
                test_acc=acc,
            )
        )
        r = rows[-1]
        print(
            f"{run.name} vs {args.ref.name}: first {len(first)} steps max |rel diff| {r['max_rel_diff']:.2e} mean "
            f"{r['mean_rel_diff']:.2e}; all {len(steps)} steps max {r['max_rel_diff_all_steps']:.2e}; test acc "
            f"{acc:.4f} vs {ref_acc:.4f}"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
