"""Test a checkpoint: `python src/eval.py ckpt_path=PATH [model=... fusion=...]`.

A checkpoint of ours rebuilds its own model and fusion; timm or official weights load into the composed model=
and fusion=. Writes metrics.json (val/* and test/*) into the run directory.
"""

from __future__ import annotations

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from crossvit.errors import exit_on_config_error
from crossvit.module import ClassificationModule
from crossvit.report import close_loggers, log_config, write_metrics
from crossvit.weights import read_checkpoint


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    with exit_on_config_error():  # a bad key or file: one line that says which and the fix
        return run(cfg)


def run(cfg: DictConfig) -> float:
    L.seed_everything(cfg.seed, workers=True)
    run_dir = hydra.core.hydra_config.HydraConfig.get().runtime.output_dir
    checkpoint = read_checkpoint(cfg.ckpt_path)
    if "hyper_parameters" in checkpoint and "state_dict" in checkpoint:  # trained by src/train.py
        hparams = {**checkpoint["hyper_parameters"], "pretrained": None, "compile": False}
        cfg.model, cfg.fusion = hparams["model"], hparams["fusion"]
        module = ClassificationModule(**hparams)
        module.load_state_dict(checkpoint["state_dict"])
    else:
        module = ClassificationModule(
            model=OmegaConf.to_container(cfg.model, resolve=True),
            fusion=OmegaConf.to_container(cfg.fusion, resolve=True),
            pretrained=cfg.ckpt_path,
        )
    datamodule = instantiate(cfg.data)
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False)
    log_config(loggers, cfg)
    metrics = {}
    for stage in (trainer.validate, trainer.test):
        metrics.update(stage(module, datamodule=datamodule, verbose=False)[0])
    metrics["ckpt_path"] = str(cfg.ckpt_path)
    if trainer.is_global_zero:
        write_metrics(metrics, run_dir)
    close_loggers(loggers)
    return metrics["test/acc"]


if __name__ == "__main__":
    main()
