"""Command-line handling before Hydra parses it (no heavy imports: `--cfg job` and `--help` answer at once)."""

from __future__ import annotations

from pathlib import Path


def drop_null_groups(argv: list[str], conf_dir: str | Path) -> list[str]:
    """`group=null` as `~group`: Hydra drops a config group only with `~`, and rejects `experiment=null` with a
    bare ValueError, though null is how a default that picks no option is written (`experiment: null`)."""
    groups = {p.name for p in Path(conf_dir).iterdir() if p.is_dir()}
    out = []
    for arg in argv:
        group, _, value = arg.partition("=")
        out.append(f"~{group}" if value == "null" and group in groups else arg)
    return out
