import functools
import time

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import HalfPrecision
from omegaconf import OmegaConf

from crossvit.callbacks import TrainThroughput
from crossvit.data import SyntheticDataModule
from crossvit.errors import ConfigError
from crossvit.models import load_config
from crossvit.module import ClassificationModule
from crossvit.precision import MasterWeightsPrecision

MODEL = dict(
    load_config("model", "crossvit_micro_28"),
    in_chans=3,
    num_classes=10,
    embed_dim=[32, 64],
    num_heads=[2, 2],
    depth=[[1, 1]],
)
FUSION = {"name": "cross_attention"}


class LrRecorder(L.Callback):
    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def fit(module, epochs=2, batch_size=16, ckpt_path=None, data_class=SyntheticDataModule, **trainer_args):
    data = data_class(
        img_size=28,
        in_chans=3,
        num_classes=10,
        size=16 * 10 + 32,
        test_size=32,
        batch_size=batch_size,
        hflip=0.0,
    )
    recorder = LrRecorder()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder, *trainer_args.pop("callbacks", [])],
        **trainer_args,
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return trainer, recorder.lrs


def test_lr_scales_with_global_batch_and_follows_warmup_then_cosine():
    module = ClassificationModule(MODEL, FUSION, lr=5e-4, batch_size=16, warmup_epochs=1, warmup_lr=1e-6, min_lr=1e-5)
    trainer, lrs = fit(module, epochs=4, accumulate_grad_batches=2)
    peak = 5e-4 * 16 * 2 / 512  # batch 16 x 2 accumulated
    steps_per_epoch = 5  # 10 batches / 2 accumulated
    updates = lrs[::2]  # the lr changes once per optimizer step
    assert updates[0] == pytest.approx(1e-6)
    assert updates[1] == pytest.approx(1e-6 + (peak - 1e-6) / steps_per_epoch, rel=1e-3)
    assert max(updates) == pytest.approx(peak, rel=1e-3)
    warm = updates[: steps_per_epoch + 1]
    assert warm == sorted(warm)
    cosine = updates[steps_per_epoch:]
    assert cosine == sorted(cosine, reverse=True) and cosine[-1] > 1e-5


@pytest.mark.parametrize(("opt", "optimizer"), [("adamw", "AdamW"), ("lamb", "Lamb")])
def test_the_optimizer_by_name_without_weight_decay_on_tokens_norms_and_biases(opt, optimizer):
    module = ClassificationModule(MODEL, FUSION, opt=opt)
    trainer, _ = fit(module, epochs=1)
    assert type(trainer.optimizers[0]).__name__ == optimizer
    groups = trainer.optimizers[0].param_groups
    names = {id(p): n for n, p in module.model.named_parameters()}
    no_decay = {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    decay = {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert {
        "cls_token_0",
        "pos_embed_1",
        "norm.0.weight",
        "head.0.bias",
        "blocks.0.projs.0.0.weight",
    } <= no_decay
    assert all(n.endswith("weight") and "norm" not in n for n in decay)
    assert "blocks.0.fusion.0.attn.wq.weight" in decay
    assert len(no_decay) + len(decay) == len(names)


def test_mixup_ema_and_branch_metrics():
    module = ClassificationModule(MODEL, FUSION, mixup=0.8, cutmix=1.0, ema_decay=0.9)
    before = module.ema.module.head[0].weight.clone()
    trainer, _ = fit(module, epochs=1)
    assert not torch.equal(before, module.ema.module.head[0].weight)  # the EMA follows training
    metrics = trainer.validate(module, datamodule=trainer.datamodule, verbose=False)[0]
    assert {"val/acc", "val/acc_ema", "val/acc_branch0", "val/acc_branch1", "val/acc_top5"} <= set(metrics)
    assert any(k.startswith("ema.module.") for k in module.state_dict())


class InputRecorder(L.Callback):
    """The batch each training step receives, and what the model is then fed."""

    def __init__(self, module):
        self.batches, self.inputs = [], []
        model_step = module.train_branches
        module.train_branches = lambda x: self.inputs.append(x.detach().clone()) or model_step(x)

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.batches.append(batch[0].detach().clone())


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.0, 0.0), (0.8, 0.0), (0.0, 1.0)])
def test_mixup_and_cutmix_mix_what_the_model_sees(mixup, cutmix):
    module = ClassificationModule(MODEL, FUSION, mixup=mixup, cutmix=cutmix, mixup_switch_prob=0.0)
    recorder = InputRecorder(module)
    fit(module, epochs=1, max_steps=3, callbacks=[recorder])
    assert len(recorder.inputs) == len(recorder.batches) == 3
    for x, seen in zip(recorder.batches, recorder.inputs):
        if not mixup and not cutmix:
            assert torch.equal(seen, x)
            continue
        partner = x.flip(0)  # timm mixes each image with the batch reversed
        assert not torch.equal(seen, x)
        assert (seen >= torch.minimum(x, partner) - 1e-5).all() and (seen <= torch.maximum(x, partner) + 1e-5).all()
        from_x = torch.isclose(seen, x).float().mean()
        if cutmix:  # a box pasted from the partner: every pixel is one image's or the other's
            assert (torch.isclose(seen, x) | torch.isclose(seen, partner)).all() and from_x < 1
        else:  # a blend: (almost) no pixel is left as it was
            assert from_x < 0.05


def test_non_finite_loss_names_the_step():
    module = ClassificationModule(MODEL, FUSION, lr=1e30, warmup_epochs=0)
    with pytest.raises(FloatingPointError, match=r"non-finite training loss at global step \d+ \(epoch 0\)"):
        fit(module, epochs=3)  # caught at the first validation, before a checkpoint could be written


class SlowValidation(ClassificationModule):
    def validation_step(self, batch, batch_idx):
        time.sleep(0.5)  # validation and checkpoints end each epoch, inside Lightning's epoch loop
        return super().validation_step(batch, batch_idx)


class StepClock(L.Callback):
    """Wall time of each training batch's end, taken independently of TrainThroughput."""

    def __init__(self):
        self.ends = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.ends.append(time.perf_counter())


def test_train_img_s_counts_training_steps_only():
    clock, throughput = StepClock(), TrainThroughput(warmup=2)
    trainer, _ = fit(SlowValidation(MODEL, FUSION), epochs=1, callbacks=[clock, throughput])
    assert len(clock.ends) == 10  # 160 training images / 16
    expected = 8 * 16 / (clock.ends[-1] - clock.ends[1])  # batches 3..10, after the 2 warm-up steps
    assert float(trainer.callback_metrics["train/img_s"]) == pytest.approx(expected, rel=0.25)


class SlowLoader:
    """The loader's batches, each after `delay` seconds (a loader that cannot keep up); records when it slept."""

    def __init__(self, loader, delay):
        self.loader, self.delay, self.slept = loader, delay, []
        self.sampler = loader.sampler

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            start = time.perf_counter()
            time.sleep(self.delay)
            self.slept.append((start, time.perf_counter()))
            yield batch


class SlowData(SyntheticDataModule):
    def __init__(self, delay, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay

    def train_dataloader(self):
        self.slow = SlowLoader(super().train_dataloader(), self.delay)
        return self.slow


@pytest.mark.parametrize("delay", [0.0, 0.06])
def test_data_wait_is_the_share_of_the_loop_spent_waiting_for_batches(delay):
    clock, throughput = StepClock(), TrainThroughput(warmup=2)
    trainer, _ = fit(
        ClassificationModule(MODEL, FUSION),
        epochs=1,
        data_class=functools.partial(SlowData, delay),
        num_sanity_val_steps=0,
        callbacks=[clock, throughput],
    )
    lo, hi = clock.ends[1], clock.ends[-1]  # the window of train/img_s: after the 2 warm-up steps
    slept = sum(
        min(end, hi) - max(start, lo) for start, end in trainer.datamodule.slow.slept if end > lo and start < hi
    )
    expected = slept / (hi - lo)
    assert expected > 0.3 if delay else expected < 0.05
    assert float(trainer.callback_metrics["train/data_wait"]) == pytest.approx(expected, abs=0.1)


def test_training_steps_do_not_wait_for_the_device_to_log_the_loss(monkeypatch):
    """A metric shown in the progress bar used to be read (`.item()`, a wait on a GPU) after every step. Now nothing
    reads a tensor between one training step and the next; the bar reads the loss at most every loss_every_s."""
    from crossvit.callbacks import LossProgressBar

    reads = []
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: reads.append(1) or item(t))

    class ReadsBetweenSteps(L.Callback):  # from one step's end to the next's start: logging and the bar
        def __init__(self):
            self.at_end, self.at_start = [], []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.at_end.append(len(reads))

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.at_start.append(len(reads))

    counter, bar = ReadsBetweenSteps(), LossProgressBar(loss_every_s=3600)
    data = SyntheticDataModule(img_size=28, in_chans=3, num_classes=10, size=192, test_size=32, batch_size=16)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[counter, bar],
    )
    trainer.fit(ClassificationModule(MODEL, FUSION), datamodule=data)
    between = [start - end for end, start in zip(counter.at_end, counter.at_start[1:])]
    assert between == [0] * 9, between
    assert isinstance(bar.get_metrics(trainer, trainer.lightning_module).get("train/loss"), float)


def bf16_fit(precision, **trainer_args):
    """Ten steps at a learning rate (4e-5, no decay) under half a bf16 spacing of a LayerNorm weight of 1.0."""
    torch.manual_seed(0)
    plain = OmegaConf.to_container(OmegaConf.create(MODEL))  # a checkpoint to resume from holds no ListConfig
    module = ClassificationModule(plain, FUSION, lr=4e-5 * 512 / 16, batch_size=16, weight_decay=0.0, warmup_epochs=0)
    module.hparams.min_lr = module.hparams.lr * 16 / 512
    trainer, _ = fit(module, epochs=1, plugins=[precision], **trainer_args)
    return module, trainer


def test_bf16_true_steps_fp32_master_weights_and_checkpoints_them(tmp_path):
    norms = [n for n, _ in ClassificationModule(MODEL, FUSION).named_parameters() if n.endswith("norm1.weight")]
    # The premise: Lightning's own bf16-true rounds every one of these updates away.
    lightning, _ = bf16_fit(HalfPrecision("bf16-true"))
    assert all((dict(lightning.named_parameters())[n] == 1).all() for n in norms)

    plugin = MasterWeightsPrecision()
    module, trainer = bf16_fit(plugin)
    params = dict(module.named_parameters())
    assert {p.dtype for p in params.values()} == {torch.bfloat16}
    for name, master in plugin.masters.items():
        assert master.dtype == torch.float32 and torch.equal(params[name], master.to(torch.bfloat16)), name
    for n in norms:  # ten sub-spacing steps added up in fp32; the bf16 copy has not moved yet
        assert (params[n] == 1).all() and (plugin.masters[n] - 1).abs().mean() > 1e-4, n

    trainer.save_checkpoint(tmp_path / "last.ckpt")
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)["state_dict"]
    for name, master in plugin.masters.items():
        assert saved[name].dtype == torch.float32 and torch.equal(saved[name], master), name

    # Resuming (here with no step left to take) starts from those fp32 values, not from their bf16 rounding.
    resumed = MasterWeightsPrecision()
    bf16_fit(resumed, ckpt_path=str(tmp_path / "last.ckpt"))
    for n in norms:
        assert torch.equal(resumed.masters[n], saved[n]), n


def test_bf16_true_refuses_an_ema_it_would_freeze():
    module = ClassificationModule(MODEL, FUSION, batch_size=16, ema_decay=0.999)
    with pytest.raises(ConfigError, match="recipe.ema_decay needs fp32 weights.*trainer.precision=bf16-mixed"):
        fit(module, epochs=1, plugins=[MasterWeightsPrecision()])


def test_bf16_true_clips_the_fp32_gradients_its_step_uses():
    """trainer.gradient_clip_val under bf16-true: one SGD step (lr 1, timm's Nesterov momentum: 1.9x the gradient)
    after clipping to norm 1e-3 moves the fp32 masters by at most 1.9e-3; unclipped it moves them by about 6."""
    torch.manual_seed(0)
    module = ClassificationModule(
        MODEL, FUSION, opt="sgd", lr=512 / 16, batch_size=16, weight_decay=0.0, warmup_epochs=0
    )
    module.hparams.min_lr = 1.0
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    plugin = MasterWeightsPrecision()
    fit(module, epochs=1, plugins=[plugin], gradient_clip_val=1e-3, limit_train_batches=1)
    moved = torch.cat([(m - before[n]).flatten() for n, m in plugin.masters.items()]).norm().item()
    assert 1e-3 < moved <= 1.9e-3 * 1.001, moved
