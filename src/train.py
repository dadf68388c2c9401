"""Fit, then test the best checkpoint: `python src/train.py [model=...] [fusion=...] [key=value ...]`.

Writes metrics.json into the run directory and returns the monitored metric (for Hydra sweepers).
"""

from __future__ import annotations

import os
import time

import hydra
import lightning as L
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from crossvit.errors import exit_on_config_error
from crossvit.module import ClassificationModule
from crossvit.report import close_loggers, log_config, write_metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    with exit_on_config_error():  # a bad key or file: one line that says which and the fix
        return run(cfg)


def run(cfg: DictConfig) -> float:
    L.seed_everything(cfg.seed, workers=True)
    hydra_cfg = hydra.core.hydra_config.HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    if hydra_cfg.mode == RunMode.MULTIRUN:  # read by conf/hydra/default.yaml in the DDP ranks Lightning starts
        os.environ.setdefault("CROSSVIT_SWEEP_DIR", str(hydra_cfg.sweep.dir))  # ranks share the cwd
    datamodule = instantiate(cfg.data)
    module = ClassificationModule(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        fusion=OmegaConf.to_container(cfg.fusion, resolve=True),
        **OmegaConf.to_container(cfg.optim, resolve=True),
        compile=cfg.compile,
        pretrained=cfg.pretrained,
        new_head=cfg.new_head,
    )
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    log_config(loggers, cfg)

    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    except SIGTERMException:  # preempted: crossvit.callbacks.PreemptionCheckpoint saved checkpoints/last.ckpt
        print(f"stopped by SIGTERM; resume with: python src/train.py ... hydra.run.dir={run_dir} ckpt_path=last")
        return float("nan")
    fit_time = time.perf_counter() - start
    throughput = trainer.callback_metrics.get("train/img_s")
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    metrics = {}
    for stage in (trainer.validate, trainer.test):
        metrics.update(stage(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)[0])
    metrics.update(
        fit_time_s=round(fit_time, 1),
        epochs=trainer.current_epoch,
        best_ckpt=best,
        params_m=round(sum(p.numel() for p in module.model.parameters()) / 1e6, 4),
    )
    if throughput is not None:  # images/s of the last training epoch (crossvit.callbacks.TrainThroughput)
        metrics["train_img_s"] = round(float(throughput), 1)
    if trainer.is_global_zero:
        write_metrics(metrics, run_dir)
    close_loggers(loggers)
    return metrics[cfg.monitor]


if __name__ == "__main__":
    main()
