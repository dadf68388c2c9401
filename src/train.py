"""Fit, then test the best checkpoint: `python src/train.py [model=...] [fusion=...] [key=value ...]`.

Writes metrics.json into the run directory and returns the monitored metric (for Hydra sweepers).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import hydra
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from crossvit.cli import drop_null_groups, follow_moved_keys
from crossvit.errors import exit_on_config_error


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    with exit_on_config_error():  # a bad key or file: one line that says which and the fix
        return run(cfg)


def run(cfg: DictConfig) -> float:
    # Imported here, not at the top, so that `--cfg job`, `--help` and config errors answer at once.
    from hydra.utils import instantiate
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from crossvit.callbacks import requeue_if_asked, stop_signal
    from crossvit.models.kernels import check_kernels, use_kernels
    from crossvit.module import ClassificationModule
    from crossvit.run import close_loggers, compile_mode, finish, start

    hydra_cfg = hydra.core.hydra_config.HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:  # read by conf/hydra/default.yaml in the DDP ranks Lightning starts
        os.environ.setdefault("CROSSVIT_SWEEP_DIR", str(hydra_cfg.sweep.dir))  # ranks share the cwd
    run_dir, loggers, trainer = start(cfg)
    device, precision = trainer.strategy.root_device, trainer.precision
    check_kernels(**cfg.kernels, device=device, precision=precision)  # before any data or checkpoint is read
    datamodule = instantiate(cfg.data)
    module = ClassificationModule(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        fusion=OmegaConf.to_container(cfg.fusion, resolve=True),
        **OmegaConf.to_container(cfg.optim, resolve=True),
        **OmegaConf.to_container(cfg.recipe, resolve=True),
        compile=compile_mode(cfg.compile, device.type),
        pretrained=cfg.pretrained,
        new_head=cfg.new_head,
    )
    use_kernels(module.model, **cfg.kernels, device=device, precision=precision)
    begin = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    except (Exception, SIGTERMException) as error:
        # Preempted: crossvit.callbacks.PreemptionCheckpoint saved checkpoints/last.ckpt. A DDP collective that
        # fails because a signalled peer has gone is the same preemption, not a result.
        if not (isinstance(error, SIGTERMException) or stop_signal(trainer)):
            raise
        print(
            f"stopped by {stop_signal(trainer) or 'SIGTERM'} at global step {trainer.global_step}, before the run "
            f"finished (no metrics.json); "
            f"resume with: python src/train.py ... hydra.run.dir={run_dir} ckpt_path=last",
            file=sys.stderr,
        )
        # Not a result: exit as a process killed by SIGTERM does (128 + 15). A SystemExit passes Hydra and
        # submitit, which then records no result for the job, so a sweep never counts it as finished (a SLURM
        # requeue reruns it; the sweep driver waits for that run).
        close_loggers(loggers)
        requeue_if_asked(trainer)  # a time limit under submitit: it requeues the job now (and exits, on rank 0)
        raise SystemExit(128 + signal.SIGTERM) from None
    fit_time = time.perf_counter() - begin
    throughput = trainer.callback_metrics.get("train/img_s")
    data_wait = trainer.callback_metrics.get("train/data_wait")
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    metrics = {}
    for stage in (trainer.validate, trainer.test):
        metrics.update(stage(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)[0])
    metrics.update(
        fit_time_s=round(fit_time, 1),
        epochs=trainer.current_epoch,
        best_ckpt=best,
        params_m=round(sum(p.numel() for p in module.model.parameters()) / 1e6, 4),
        tags=list(cfg.get("tags") or []),
    )
    if throughput is not None:  # images/s of the last training epoch (crossvit.callbacks.TrainThroughput)
        metrics["train_img_s"] = round(float(throughput), 1)
        metrics["train_data_wait"] = round(float(data_wait), 4)
    finish(metrics, trainer, loggers, run_dir)
    return metrics[cfg.monitor]


if __name__ == "__main__":
    conf = Path(__file__).parents[1] / "conf"
    sys.argv = follow_moved_keys(drop_null_groups(sys.argv, conf), conf)
    main()
