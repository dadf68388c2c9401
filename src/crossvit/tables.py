"""The paper's params/FLOPs tables, computed from the composed configs beside the published numbers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from crossvit.flops import count
from crossvit.models import build_model

PAPER_FILE = Path(__file__).with_name("paper.yaml")


def paper_numbers() -> dict[str, list[dict[str, Any]]]:
    """src/crossvit/paper.yaml: `models` (Table 4) and `fusions` (Table 3)."""
    return OmegaConf.to_container(OmegaConf.load(PAPER_FILE))


def measure(
    model: str, fusion: str = "cross_attention", fusion_args: Mapping | None = None, **overrides: Any
) -> dict[str, Any]:
    cost = count(build_model(model, fusion, fusion_args=fusion_args, **overrides))
    return {
        "model": model,
        "fusion": fusion,
        "params_m": round(cost.params_m, 3),
        "gflops": round(cost.gflops, 3),
        "fusion_params_m": round(cost.parts["fusion"][0], 3),
        "fusion_gflops": round(cost.parts["fusion"][1], 3),
    }


def paper_rows(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ours beside the paper's for each entry of paper.yaml, with relative differences in percent."""
    rows = []
    for entry in entries:
        row = measure(entry["model"], entry.get("fusion", "cross_attention"))
        row.update(
            name=entry["name"], paper_params_m=entry["params_m"], paper_gflops=entry["gflops"], paper_top1=entry["top1"]
        )
        row["params_diff_pct"] = round(100 * (row["params_m"] / entry["params_m"] - 1), 2)
        row["gflops_diff_pct"] = round(100 * (row["gflops"] / entry["gflops"] - 1), 2)
        rows.append(row)
    return rows


def markdown_table(rows: list[dict[str, Any]], columns: Mapping[str, str]) -> str:
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(key, "")) for key in columns) + " |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


PAPER_COLUMNS = {
    "name": "model",
    "fusion": "fusion",
    "params_m": "params (M)",
    "paper_params_m": "paper params (M)",
    "params_diff_pct": "Δ params %",
    "gflops": "GFLOPs",
    "paper_gflops": "paper GFLOPs",
    "gflops_diff_pct": "Δ FLOPs %",
    "paper_top1": "paper top-1 %",
}
FUSION_COLUMNS = {**PAPER_COLUMNS, "fusion_params_m": "fusion params (M)", "fusion_gflops": "fusion GFLOPs"}
ABLATION_COLUMNS = {
    "label": "setting",
    "params_m": "params (M)",
    "gflops": "GFLOPs",
    "fusion_params_m": "fusion params (M)",
    "fusion_gflops": "fusion GFLOPs",
}
