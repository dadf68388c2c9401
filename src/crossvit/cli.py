"""Command-line handling before Hydra parses it (no heavy imports: `--cfg job` and `--help` answer at once)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf


def drop_null_groups(argv: list[str], conf_dir: str | Path) -> list[str]:
    """`group=null` as `~group`: Hydra drops a config group only with `~`, and rejects `experiment=null` with a
    bare ValueError, though null is how a default that picks no option is written (`experiment: null`)."""
    groups = {p.name for p in Path(conf_dir).iterdir() if p.is_dir()}
    out = []
    for arg in argv:
        group, _, value = arg.partition("=")
        out.append(f"~{group}" if value == "null" and group in groups else arg)
    return out


def follow_moved_keys(argv: list[str], conf_dir: str | Path) -> list[str]:
    """`optim.mixup=0` as `recipe.mixup=0`, saying so on stderr: every key of conf/recipe/paper.yaml lived in the
    optim group before (README "What moved"); + or ~ is kept."""
    moved = {f"optim.{key}": f"recipe.{key}" for key in OmegaConf.load(Path(conf_dir) / "recipe" / "paper.yaml")}
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        bare = key.lstrip("+~")
        if bare in moved:
            print(f"note: {bare} is now {moved[bare]} (README, What moved)", file=sys.stderr)
            arg = f"{key[: len(key) - len(bare)]}{moved[bare]}{sep}{value}"
        out.append(arg)
    return out


def _slurm_gpus(accelerator: str, devices: int) -> int | None:
    """GPUs a SLURM job asks for: the trainer's devices on GPU trainers, none otherwise (CPU partitions have none)."""
    return devices if accelerator in ("gpu", "cuda") else None


# Resolvers the configs use (conf/hydra/launcher/slurm.yaml); registered on import, before Hydra composes.
OmegaConf.register_new_resolver("crossvit.slurm_gpus", _slurm_gpus, replace=True)
OmegaConf.register_new_resolver("crossvit.add", lambda a, b: a + b, replace=True)


class _WithoutSacctNoise(logging.Filter):
    """submitit polls SLURM with sacct and warns at every poll when a cluster keeps no accounting (small and local
    clusters): "Bypassing sacct error ..., status may be inaccurate". It then reads each job's result file, which
    is what the sweep needs, so those warnings say nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Bypassing sacct error" not in record.getMessage()


# On the logger itself, so the records do not reach the root logger either; dictConfig keeps existing filters.
logging.getLogger("submitit").addFilter(_WithoutSacctNoise())
