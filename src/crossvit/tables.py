"""The paper's params/FLOPs tables (2, 4, 6 and 7), computed from the composed configs beside its numbers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from crossvit import CONF_DIR
from crossvit.flops import count
from crossvit.models import create_model

PAPER_FILE = Path(__file__).with_name("paper.yaml")
ABLATED_MODEL = "crossvit_small"  # Table 7 changes CrossViT-S


def paper_numbers() -> dict[str, list[dict[str, Any]]]:
    """src/crossvit/paper.yaml: `models` (Tables 2 and 4), `fusions` (Table 6), `architecture` (Table 7)."""
    return OmegaConf.to_container(OmegaConf.load(PAPER_FILE))


def ablation_overrides(row: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """conf/ablation/<row>.yaml as (model overrides, fusion arguments): Table 7's settings, kept in one place."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "ablation" / f"{row}.yaml")) or {}
    return cfg.get("model", {}), cfg.get("fusion", {})


def measure(
    model: str, fusion: str = "cross_attention", fusion_args: Mapping | None = None, **overrides: Any
) -> dict[str, Any]:
    with torch.device("meta"):  # shapes are all a count needs: no weights initialised, no arithmetic done
        cost = count(create_model(model, fusion, fusion_args=fusion_args, **overrides))
    return {
        "model": model,
        "fusion": fusion,
        "params_m": round(cost.params_m, 3),
        "gflops": round(cost.gflops, 3),
        "fusion_params_m": round(cost.parts["fusion"][0], 3),
        "fusion_gflops": round(cost.parts["fusion"][1], 3),
    }


def paper_rows(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ours beside the paper's for each entry of paper.yaml's `models` or `fusions`, with relative differences in
    percent and the paper's table number."""
    rows = []
    for entry in entries:
        row = measure(entry["model"], entry.get("fusion", "cross_attention"))
        rows.append(_beside_paper(row, entry, name=entry["name"]))
    return rows


def architecture_rows(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Table 7: CrossViT-S changed by each row's conf/ablation/<row>.yaml, beside the paper's numbers."""
    rows = []
    for entry in entries:
        model_overrides, fusion_args = ablation_overrides(entry["ablation"])
        row = measure(ABLATED_MODEL, "cross_attention", fusion_args, **model_overrides)
        setting = {key: entry[key] for key in ("patch", "width", "K", "N", "M", "L")}
        rows.append(_beside_paper(row, entry, table=7, row=entry["row"], name=entry["row"], **setting))
    return rows


def _beside_paper(ours: dict[str, Any], entry: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """`ours` (a measure() row) with `extra`, the entry's paper numbers and table, and the differences in percent."""
    ours.update(extra)
    ours.setdefault("table", entry.get("table"))
    ours.update(paper_params_m=entry["params_m"], paper_gflops=entry["gflops"], paper_top1=entry["top1"])
    for key in ("l_branch_top1", "s_branch_top1"):
        if key in entry:
            ours[f"paper_{key}"] = entry[key]
    ours["params_diff_pct"] = round(100 * (ours["params_m"] / entry["params_m"] - 1), 2)
    ours["gflops_diff_pct"] = round(100 * (ours["gflops"] / entry["gflops"] - 1), 2)
    return ours


def markdown_table(rows: list[dict[str, Any]], columns: Mapping[str, str]) -> str:
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(key, "")) for key in columns) + " |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


PAPER_COLUMNS = {
    "table": "table",
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
FUSION_COLUMNS = {
    **PAPER_COLUMNS,
    "paper_l_branch_top1": "paper L-branch only %",
    "paper_s_branch_top1": "paper S-branch only %",
    "fusion_params_m": "fusion params (M)",
    "fusion_gflops": "fusion GFLOPs",
}
ARCHITECTURE_COLUMNS = {
    "row": "row",
    "patch": "patch (S, L)",
    "width": "width (S, L)",
    "K": "K",
    "N": "N",
    "M": "M",
    "L": "L",
    **{k: v for k, v in PAPER_COLUMNS.items() if k not in ("table", "name")},
}
