"""Test a checkpoint: `python src/eval.py ckpt_path=PATH [model=... fusion=...]`.

A checkpoint of ours rebuilds its own model and fusion; timm or official weights load into the composed model=
and fusion=. Writes metrics.json (val/* and test/*) into the run directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from crossvit.cli import drop_null_groups
from crossvit.errors import exit_on_config_error


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    with exit_on_config_error():  # a bad key or file: one line that says which and the fix
        return run(cfg)


def run(cfg: DictConfig) -> float:
    # Imported here, not at the top, so that `--cfg job`, `--help` and config errors answer at once.
    from hydra.utils import instantiate

    from crossvit.models.kernels import check_kernels, use_kernels
    from crossvit.module import ClassificationModule
    from crossvit.run import finish, start
    from crossvit.weights import read_checkpoint

    run_dir, loggers, trainer = start(cfg)
    device, precision = trainer.strategy.root_device, trainer.precision
    check_kernels(**cfg.kernels, device=device, precision=precision)  # before any data or checkpoint is read
    checkpoint = read_checkpoint(cfg.ckpt_path)
    if "hyper_parameters" in checkpoint and "state_dict" in checkpoint:  # trained by src/train.py
        # It rebuilds its own architecture; the composed model=/fusion= apply to other weights only.
        module = ClassificationModule(**{**checkpoint["hyper_parameters"], "pretrained": None, "compile": False})
        module.load_state_dict(checkpoint["state_dict"])
    else:
        module = ClassificationModule(
            model=OmegaConf.to_container(cfg.model, resolve=True),
            fusion=OmegaConf.to_container(cfg.fusion, resolve=True),
            pretrained=cfg.ckpt_path,
        )
    use_kernels(module.model, **cfg.kernels, device=device, precision=precision)
    datamodule = instantiate(cfg.data, img_size=module.model.img_size[0])  # the checkpoint's architecture decides
    metrics = {}
    for stage in (trainer.validate, trainer.test):
        metrics.update(stage(module, datamodule=datamodule, verbose=False)[0])
    metrics["ckpt_path"] = str(cfg.ckpt_path)
    finish(metrics, trainer, loggers, run_dir)
    return metrics["test/acc"]


if __name__ == "__main__":
    sys.argv = drop_null_groups(sys.argv, Path(__file__).parents[1] / "conf")
    main()
