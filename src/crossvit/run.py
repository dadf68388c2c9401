"""One run's set-up and records, shared by src/train.py and src/eval.py: the config tree, loggers, trainer and
metrics.json. (Sweep analysis across runs is crossvit.report.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import rich.syntax
import rich.tree
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from crossvit.errors import ConfigError
from crossvit.precision import MasterWeightsPrecision

METRICS_FILE = "metrics.json"
CONFIG_TREE_FILE = "config_tree.log"
# The config tree shows these groups first, in this order; the rest follow as composed.
TREE_ORDER = ("data", "model", "fusion", "optim", "recipe", "trainer", "callbacks", "logger", "paths")


@rank_zero_only
def print_config_tree(cfg: DictConfig, run_dir: str | Path) -> None:
    """Print the resolved config as a tree (one branch a group) and save it as the run's config_tree.log."""
    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    fields = [f for f in TREE_ORDER if f in cfg] + [f for f in cfg if f not in TREE_ORDER]
    for field in fields:
        value = cfg[field]
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        tree.add(field, style="bold", guide_style="dim").add(rich.syntax.Syntax(text, "yaml"))
    Console().print(tree)
    with open(Path(run_dir) / CONFIG_TREE_FILE, "w") as f:
        Console(file=f, width=120).print(tree)


def start(cfg: DictConfig) -> tuple[str, list[Logger], L.Trainer]:
    """Seed, print the config, make the loggers, callbacks (eval.yaml has none) and the trainer; returns (run
    directory, loggers, trainer)."""
    L.seed_everything(cfg.seed, workers=True)
    run_dir = hydra.core.hydra_config.HydraConfig.get().runtime.output_dir
    if cfg.get("print_config", True):
        print_config_tree(cfg, run_dir)
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    if cfg.trainer.get("enable_model_summary") is False:  # Lightning's flag hides ours too
        callbacks = [c for c in callbacks if not isinstance(c, ModelSummary)]
    # bf16-true gets fp32 master weights (crossvit.precision says why Lightning's own would stall training).
    precision = {}
    if cfg.trainer.get("precision") == "bf16-true":
        precision = {"precision": None, "plugins": [MasterWeightsPrecision()]}
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, **precision)
    log_config(loggers, cfg)
    return run_dir, loggers, trainer


def compile_mode(setting: bool | str, device_type: str) -> bool | str:
    """What ClassificationModule's `compile` gets: `auto` is CUDA graphs (reduce-overhead) where the trainer runs
    on CUDA GPUs, where they double crossvit_9's training step (docs/speed_notes.md), and eager elsewhere, where
    compiling costs minutes and pays little. Any other setting is the user's and passes as it is."""
    if setting == "auto":
        return "reduce-overhead" if device_type == "cuda" else False
    return setting


def finish(metrics: dict[str, Any], trainer: L.Trainer, loggers: list[Logger], run_dir: str | Path) -> None:
    """Write metrics.json (rank 0) and close the loggers."""
    if trainer.is_global_zero:
        write_metrics(metrics, run_dir)
    close_loggers(loggers)


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


def log_config(loggers: list[Logger], cfg: DictConfig) -> None:
    """Log the resolved config as every logger's hyper-parameters; a W&B run that cannot start says how to fix it."""
    hparams = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        try:
            logger.log_hyperparams(hparams)
        except Exception as e:
            if not isinstance(logger, WandbLogger):
                raise
            raise ConfigError(
                f"logger=wandb could not start a run ({type(e).__name__}: {e}). Run `wandb login` or set "
                f"WANDB_API_KEY; or set WANDB_MODE=offline to log locally and `wandb sync` the run later"
            ) from e


def close_loggers(loggers: list[Logger]) -> None:
    """Finish W&B runs: a sweep runs its jobs in one process, and each job must close its own run."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()
