"""Bar chart of train and inference img/s per model, timm's against ours, from throughput.py rows.

    python benchmarks/plot_speed.py docs/speed_2026-11-27.json --key call2 --out docs/model_speed.png
    python benchmarks/plot_speed.py docs/speed_2026-11-27.json --key s7call1 s7call3-5 --out docs/model_speed_s7.png

Takes every row (a dict with `train_img_s`) found anywhere in the JSON files, or under the `--key`s only; one bar
per implementation and variant, grouped by model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from throughput import variant_name  # noqa: E402


def speed_rows(node: object) -> list[dict]:
    if isinstance(node, dict):
        if "train_img_s" in node and "model" in node:  # throughput.py's (inloop_row.py's have no model)
            return [node]
        return [row for value in node.values() for row in speed_rows(value)]
    if isinstance(node, list):
        return [row for value in node for row in speed_rows(value)]
    return []


def label(row: dict) -> str:
    variant = variant_name(row)
    return f"{row['impl']} {row['mode']}" + ("" if variant == "-" else f" {variant}")


def first_env(node: object) -> dict | None:
    if isinstance(node, dict):
        if isinstance(node.get("env"), dict):
            return node["env"]
        return next((e for value in node.values() if (e := first_env(value))), None)
    if isinstance(node, list):
        return next((e for value in node if (e := first_env(value))), None)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--key", nargs="+", default=[], help="only the rows under these top-level keys")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    data = [json.loads(path.read_text()) for path in args.files]
    data = [d[key] for d in data for key in args.key] if args.key else data
    rows = speed_rows(data)
    models = list(dict.fromkeys(r["model"] for r in rows))
    series = list(dict.fromkeys(label(r) for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2 + 0.2 * len(series)), layout="constrained")
    width = 0.8 / len(series)
    for ax, metric, title in zip(axes, ("train_img_s", "infer_img_s"), ("training step", "inference")):
        for k, name in enumerate(series):
            # a run cut short has no figure for a model or a metric: no bar, where a 0 would read as measured
            values = [
                next((v for r in rows if r["model"] == m and label(r) == name and (v := r.get(metric))), float("nan"))
                for m in models
            ]
            bars = ax.bar([i + k * width for i in range(len(models))], values, width, label=name)
            ax.bar_label(bars, labels=[f"{v:.0f}" if v == v else "" for v in values], fontsize=7)
        ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(models))], models)
        ax.set_ylabel("img/s")
        ax.set_title(title)
    ncols = 1 if max(map(len, series)) > 60 else 2  # long variant names overflow two columns
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=ncols, fontsize=8)
    env = first_env(data)
    fig.suptitle(
        f"{env['device']}, batch {env['batch_size']}, torch {env['torch']}, {env['date']}" if env else "", fontsize=10
    )
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}: {len(rows)} rows, {len(series)} series")


if __name__ == "__main__":
    main()
