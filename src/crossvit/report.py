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
from crossvit.tables import paper_numbers


def unfinished_jobs(sweep_dir: str | Path) -> list[str]:
    """The sweep's jobs (numbered folders Hydra made) without final metrics: preempted, failed or still running."""
    jobs = [d for d in Path(sweep_dir).iterdir() if d.is_dir() and (d / ".hydra").is_dir()]
    return sorted((d.name for d in jobs if not (d / METRICS_FILE).exists()), key=lambda n: (len(n), n))


def collect_runs(sweep_dir: str | Path, allow_partial: bool = False) -> pd.DataFrame:
    """One row per finished job of a Hydra multirun: its choices, seed, metrics, params and FLOPs. Jobs without
    final metrics make it refuse, unless `allow_partial` (then the report lists them)."""
    sweep_dir = Path(sweep_dir)
    missing = unfinished_jobs(sweep_dir) if sweep_dir.is_dir() else []
    if missing and not allow_partial:
        raise ConfigError(
            f"{sweep_dir}: jobs {', '.join(missing)} have no {METRICS_FILE} (preempted, failed or still running); "
            f"resume them (python src/train.py ... hydra.run.dir=<job dir> ckpt_path=last) or pass --allow-partial"
        )
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
                "data": choices.data,
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


def table6_pattern(table: pd.DataFrame) -> str:
    """Our single-branch accuracies beside the paper's Table 6, and whether they show its pattern: the S-branch head
    learns only with cross-attention (highest S-only accuracy of all fusions) and in every other fusion the L-branch
    dominates (its S-only accuracy at most half its L-only)."""
    if "branch0_mean" not in table or "branch1_mean" not in table:
        return ""
    paper = {e["fusion"]: e for e in paper_numbers()["fusions"]}
    lines = [
        "| fusion | S-branch only % | L-branch only % | paper S-branch only % | paper L-branch only % |",
        "|---|---|---|---|---|",
    ]
    for r in table.to_dict("records"):
        p = paper.get(r["fusion"], {})
        lines.append(
            f"| {r['fusion']} | {100 * r['branch0_mean']:.2f} | {100 * r['branch1_mean']:.2f} | "
            f"{p.get('s_branch_top1', '')} | {p.get('l_branch_top1', '')} |"
        )
    s_only = dict(zip(table["fusion"], table["branch0_mean"]))
    l_only = dict(zip(table["fusion"], table["branch1_mean"]))
    failed = []
    best = max(s_only, key=s_only.get)
    if "cross_attention" in s_only and best != "cross_attention":
        failed.append(f"the best S-branch head is {best}'s ({100 * s_only[best]:.1f}%), not cross-attention's")
    for fusion in s_only:
        if fusion != "cross_attention" and s_only[fusion] > l_only[fusion] / 2:
            s_pct, l_pct = 100 * s_only[fusion], 100 * l_only[fusion]
            failed.append(f"{fusion}'s S-branch head alone reaches {s_pct:.1f}% (L-branch {l_pct:.1f}%)")
    verdict = (
        "**Reproduced**: the S-branch head learns only with cross-attention, as in the paper's Table 6."
        if not failed
        else "**Not reproduced**: in the paper only cross-attention's S-branch head learns; here "
        + "; ".join(failed)
        + "."
    )
    return "\n".join(lines) + "\n\n" + verdict + "\n"


def title_of(runs: pd.DataFrame) -> str:
    """What a sweep ran, for its plot: models, data, epochs and seeds (not a path of the machine that ran it)."""
    models = ", ".join(dict.fromkeys(runs["model"]))
    data = ", ".join(dict.fromkeys(runs["data"]))
    epochs = ", ".join(str(e) for e in sorted(set(runs["epochs"])))
    seeds = ", ".join(str(s) for s in sorted(set(runs["seed"])))
    return f"{models} on {data}: {epochs} epochs, seeds {seeds}"


def report(sweep_dir: str | Path, allow_partial: bool = False) -> pd.DataFrame:
    """Write fusion_comparison.md, .csv and .png into the sweep directory; return the summary table."""
    sweep_dir = Path(sweep_dir)
    runs = collect_runs(sweep_dir, allow_partial)
    table = summarise(runs)
    table.to_csv(sweep_dir / "fusion_comparison.csv", index=False)
    pattern = table6_pattern(table)
    text = to_markdown(table) + (f"\nSingle-branch heads beside the paper's Table 6:\n\n{pattern}" if pattern else "")
    missing = unfinished_jobs(sweep_dir)
    if missing:
        text = f"**Partial**: jobs {', '.join(missing)} have no final metrics and are left out.\n\n" + text
    (sweep_dir / "fusion_comparison.md").write_text(text)
    plot_accuracy_vs_flops(table, sweep_dir / "fusion_comparison.png", title=title_of(runs))
    return table
