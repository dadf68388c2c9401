"""ClassificationModule: trains any conf/model x conf/fusion CrossViT with the paper's (DeiT) recipe."""

from __future__ import annotations

import inspect
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2, get_optimizer_class
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from torchmetrics.classification import MulticlassAccuracy

from crossvit.distributed import mean_over_ranks
from crossvit.errors import ConfigError
from crossvit.models import create_model
from crossvit.precision import MasterWeightsPrecision
from crossvit.weights import load_pretrained


class ClassificationModule(L.LightningModule):
    """Cross-entropy classification around a CrossViT built from plain `model` and `fusion` config dicts.

    The configs are saved as hyper-parameters, so a checkpoint rebuilds its own architecture.
    """

    def __init__(
        self,
        model: dict[str, Any],
        fusion: dict[str, Any],
        opt: str = "adamw",
        lr: float = 5e-4,
        batch_size: int = 256,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        warmup_epochs: float = 5,
        warmup_lr: float = 1e-6,
        min_lr: float = 1e-5,
        label_smoothing: float = 0.1,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        mixup_switch_prob: float = 0.5,
        ema_decay: float | None = None,
        compile: bool | str = False,
        pretrained: str | None = None,
        new_head: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(model, fusion)
        if pretrained:
            load_pretrained(self.model, pretrained, new_head=new_head)
        # Training compiles a function, not the module, so state_dict keys stay `model.*`. A string is a
        # torch.compile mode: "reduce-overhead" replays CUDA graphs, which pays for small models. Evaluation stays
        # eager: its last batches change shape and each new shape would compile again.
        self.train_branches = self.model.forward_branches
        if compile:
            self.train_branches = torch.compile(self.train_branches, mode=compile if isinstance(compile, str) else None)
        self.num_classes = self.model.num_classes
        self.mixup = None
        if mixup > 0 or cutmix > 0:
            self.mixup = Mixup(
                mixup_alpha=mixup,
                cutmix_alpha=cutmix,
                switch_prob=mixup_switch_prob,
                label_smoothing=label_smoothing,
                num_classes=self.num_classes,
            )
        self.soft_loss = SoftTargetCrossEntropy()
        # The optimizer only sees self.model; the EMA copy is checkpointed with it as `ema.module.*`. Its weights
        # need no gradients: DDP would otherwise wait for gradients they never get and stop at the first step.
        self.ema = ModelEmaV3(self.model, decay=ema_decay).requires_grad_(False) if ema_decay else None
        self.metrics = torch.nn.ModuleDict({stage: self._stage_metrics() for stage in ("val", "test")})
        self.register_buffer("first_bad_step", torch.tensor(-1), persistent=False)

    def _stage_metrics(self) -> torch.nn.ModuleDict:
        metrics = {"acc": MulticlassAccuracy(self.num_classes, average="micro")}
        if self.num_classes >= 5:
            metrics["acc_top5"] = MulticlassAccuracy(self.num_classes, top_k=5, average="micro")
        for i in range(self.model.num_branches):
            metrics[f"acc_branch{i}"] = MulticlassAccuracy(self.num_classes, average="micro")
        if self.hparams.ema_decay:
            metrics["acc_ema"] = MulticlassAccuracy(self.num_classes, average="micro")
        return torch.nn.ModuleDict(metrics)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.model.forward_branches(self._input(x))).mean(0)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """Images in the weights' dtype: bf16 under trainer.precision=bf16-true, where batches the DataModule makes on
        the device after Lightning's input cast are still fp32."""
        return x.to(self.model.cls_token_0.dtype)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        x = self._input(x)
        if self.mixup is not None:
            x, y = self.mixup(x, y)  # y becomes soft, label-smoothed targets
        # The loss in fp32 whatever the model's dtype (under autocast it already is).
        logits = torch.stack(self.train_branches(x)).mean(0).float()
        if self.mixup is not None:
            loss = self.soft_loss(logits, y.float())
        else:
            loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        # Recorded on the device and checked only every few steps and before any checkpoint: an `if` on a GPU
        # value every step would stall the CPU until the GPU catches up.
        bad = ~torch.isfinite(loss.detach())
        self.first_bad_step.copy_(torch.where(bad & (self.first_bad_step < 0), self.global_step, self.first_bad_step))
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self.check_finite()
        # Not prog_bar: Lightning would turn it into a number after every step, a host wait on the GPU each step
        # (crossvit.callbacks.LossProgressBar shows it instead). Not sync_dist either: see mean_over_ranks.
        self.log("train/loss", mean_over_ranks(loss))
        return loss

    def check_finite(self) -> None:
        step = int(self.first_bad_step)
        if step >= 0:
            raise FloatingPointError(
                f"non-finite training loss at global step {step} (epoch {self.current_epoch}); training stopped, the "
                f"last checkpoint holds the last good weights. Lower optim.lr or set trainer.gradient_clip_val."
            )

    def on_validation_start(self) -> None:
        if self.trainer.state.fn == "fit":  # before ModelCheckpoint can save diverged weights
            self.check_finite()

    def on_train_end(self) -> None:
        self.check_finite()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        x, y = batch
        branches = [b.float() for b in self.model.forward_branches(self._input(x))]
        logits = torch.stack(branches).mean(0)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), sync_dist=True)
        metrics = self.metrics[stage]
        metrics["acc"].update(logits, y)
        if "acc_top5" in metrics:
            metrics["acc_top5"].update(logits, y)
        for i, branch in enumerate(branches):
            metrics[f"acc_branch{i}"].update(branch, y)
        if self.ema is not None:
            metrics["acc_ema"].update(self.ema.module(x), y)
        for name, metric in metrics.items():
            self.log(f"{stage}/{name}", metric, prog_bar=name == "acc")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def setup(self, stage: str) -> None:
        if self.ema is not None and isinstance(self.trainer.precision_plugin, MasterWeightsPrecision):
            raise ConfigError(
                "recipe.ema_decay needs fp32 weights, but trainer.precision=bf16-true keeps them in bf16, where an EMA "
                "step rounds to nothing; use trainer.precision=bf16-mixed or recipe.ema_decay=null"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Under bf16-true the checkpoint holds the optimizer's fp32 weights, not their bf16 rounding: resuming
        # continues exactly, and evaluation or export gets fp32 weights either way.
        if isinstance(self.trainer.precision_plugin, MasterWeightsPrecision):
            checkpoint["state_dict"].update(self.trainer.precision_plugin.master_state_dict())

    def configure_optimizers(self):
        hp = self.hparams
        # The official rule: lr scales with the global batch, lr = base_lr * global_batch / 512.
        global_batch = hp.batch_size * self.trainer.world_size * self.trainer.accumulate_grad_batches
        lr = hp.lr * global_batch / 512
        # betas, eps and the fused CUDA kernel go to the optimizers that take them (AdamW takes all three).
        takes = inspect.signature(get_optimizer_class(hp.opt, bind_defaults=False)).parameters
        extra = dict(betas=tuple(hp.betas), eps=hp.eps, fused=self.device.type == "cuda" or None)
        optimizer = create_optimizer_v2(
            self.model,
            opt=hp.opt,
            lr=lr,
            weight_decay=hp.weight_decay,
            **{k: v for k, v in extra.items() if k in takes},
        )
        total = self.trainer.estimated_stepping_batches
        steps_per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        scheduler = CosineLRScheduler(
            optimizer,
            t_initial=total,
            lr_min=hp.min_lr,
            warmup_t=int(math.ceil(hp.warmup_epochs * steps_per_epoch)),
            warmup_lr_init=hp.warmup_lr,
            warmup_prefix=True,
            t_in_epochs=False,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def lr_scheduler_step(self, scheduler: CosineLRScheduler, metric: Any) -> None:
        # timm schedulers step by update count, not by Lightning's scheduler.step().
        scheduler.step_update(num_updates=self.global_step)
