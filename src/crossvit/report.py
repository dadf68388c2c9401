"""Run results: each run's metrics.json, and the table a sweep of runs makes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

METRICS_FILE = "metrics.json"


def write_metrics(metrics: dict[str, Any], run_dir: str | Path) -> Path:
    """Write metrics.json into the run directory and print the figures as a table."""
    path = Path(run_dir) / METRICS_FILE
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    table = Table(title=f"{path}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in sorted(metrics.items()):
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
    return path
