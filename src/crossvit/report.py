"""Sweep analysis: the finished runs of a sweep (their metrics.json) -> the comparison table and plot. (Writing
one run's records is crossvit.run.)"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from crossvit.errors import ConfigError
from crossvit.flops import Cost, count
from crossvit.models import FUSIONS, create_model
from crossvit.run import METRICS_FILE


def collect_runs(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per finished job of a Hydra multirun: its choices, seed, metrics, params and FLOPs."""
    sweep_dir = Path(sweep_dir)
    rows = []
    costs: dict[str, Cost] = {}
    for metrics_file in sorted(sweep_dir.glob(f"*/{METRICS_FILE}")):
        job = metrics_file.parent
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        choices = OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra.runtime.choices
        key = OmegaConf.to_yaml({"model": cfg.model, "fusion": cfg.fusion})
        if key not in costs:  # FLOPs depend on the architecture only, not on the seed
            costs[key] = count(create_model(cfg.model, cfg.fusion))
        cost = costs[key]
        rows.append(
            {
                "job": job.name,
                "model": choices.model,
                "fusion": cfg.fusion.name,
                "seed": cfg.seed,
                "params_m": cost.params_m,
                "gflops": cost.gflops,
                **json.loads(metrics_file.read_text()),
            }
        )
    if not rows:
        raise ConfigError(
            f"{sweep_dir} holds no <job>/{METRICS_FILE}; pass the directory of a finished "
            f"`python src/train.py -m ...` sweep (its jobs are its numbered subfolders)"
        )
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of each (model, fusion): test top-1 and per-branch accuracy, cost, time per run."""
    branch_cols = sorted(c for c in runs.columns if c.startswith("test/acc_branch"))
    grouped = runs.groupby(["model", "fusion"], sort=False)
    table = grouped.agg(
        runs=("seed", "count"),
        test_acc_mean=("test/acc", "mean"),
        test_acc_std=("test/acc", "std"),
        **{f"{c.removeprefix('test/acc_')}_mean": (c, "mean") for c in branch_cols},
        params_m=("params_m", "first"),
        gflops=("gflops", "first"),
        fit_time_s=("fit_time_s", "mean"),
    ).reset_index()
    table["test_acc_std"] = table["test_acc_std"].fillna(0.0)
    # Fusions in the registry's order (none ... cross_attention), whatever order the sweep ran them in.
    order = {name: i for i, name in enumerate(FUSIONS)}
    table = table.sort_values(["model", "fusion"], key=lambda c: c.map(order) if c.name == "fusion" else c)
    return table.reset_index(drop=True)


def to_markdown(table: pd.DataFrame) -> str:
    branches = [c for c in table.columns if c.startswith("branch")]
    head = [
        "model",
        "fusion",
        "runs",
        "test top-1 % (mean ± std)",
        *[f"{b.removesuffix('_mean')} %" for b in branches],
        "params (M)",
        "GFLOPs",
        "time per run (s)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.to_dict("records"):
        cells = [
            r["model"],
            r["fusion"],
            str(r["runs"]),
            f"{100 * r['test_acc_mean']:.2f} ± {100 * r['test_acc_std']:.2f}",
            *[f"{100 * r[b]:.2f}" for b in branches],
            f"{r['params_m']:.3f}",
            f"{r['gflops']:.4f}",
            f"{r['fit_time_s']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_flops(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Test top-1 against GFLOPs, one marker per (model, fusion), area by params (like the paper's Figure 1)."""
    from matplotlib.figure import Figure  # no pyplot: works headless and leaves a notebook's backend alone

    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    sizes = 600 * table["params_m"] / table["params_m"].max()
    ax.scatter(table["gflops"], 100 * table["test_acc_mean"], s=sizes, alpha=0.5)
    ax.errorbar(
        table["gflops"],
        100 * table["test_acc_mean"],
        yerr=100 * table["test_acc_std"],
        fmt="none",
        ecolor="black",
        capsize=3,
    )
    for r in table.to_dict("records"):
        ax.annotate(r["fusion"], (r["gflops"], 100 * r["test_acc_mean"]), textcoords="offset points", xytext=(6, 6))
    ax.set_xlabel("GFLOPs (multiply-accumulates per image)")
    ax.set_ylabel("test top-1 (%), mean ± std over seeds")
    ax.set_title(title or "Accuracy vs FLOPs (marker area ∝ params)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)


def report(sweep_dir: str | Path) -> pd.DataFrame:
    """Write fusion_comparison.md, .csv and .png into the sweep directory; return the summary table."""
    sweep_dir = Path(sweep_dir)
    table = summarise(collect_runs(sweep_dir))
    table.to_csv(sweep_dir / "fusion_comparison.csv", index=False)
    (sweep_dir / "fusion_comparison.md").write_text(to_markdown(table))
    plot_accuracy_vs_flops(table, sweep_dir / "fusion_comparison.png", title=f"{sweep_dir}")
    return table
