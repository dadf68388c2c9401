"""src/train.py and src/eval.py, run as a user runs them."""

import pytest
from conftest import QUICK, QUIET, needs_fmnist, read_metrics, run_script

from crossvit.flops import count
from crossvit.models import build_model

SMALL = ["model.embed_dim=[32,64]", "model.num_heads=[2,2]", "model.depth=[[1,1],[1,1]]"]
SMALL_ARGS = dict(embed_dim=[32, 64], num_heads=[2, 2], depth=[[1, 1], [1, 1]])


def test_fast_dev_run_of_every_fusion(tmp_path):
    """debug=fdr over every fusion; each run prints and saves its config tree, and its model summary counts FLOPs
    with crossvit.flops.count (held to the paper's tables in test_tables), not Lightning's 0."""
    fusions = "none,all_attention,class_token,pairwise,cross_attention"
    proc = run_script(
        "train.py",
        "-m",
        QUICK,
        f"fusion={fusions}",
        "data=synthetic",
        "debug=fdr",
        "tags=[smoke,fdr]",
        f"hydra.sweep.dir={tmp_path}",
        *SMALL,
        *QUIET[:2],  # the model summary stays on
    )
    output = proc.stdout + proc.stderr
    assert "Total FLOPs: 0" not in output
    for job, fusion in enumerate(fusions.split(",")):
        metrics = read_metrics(tmp_path / str(job))
        assert {"val/acc", "val/acc_branch0", "val/acc_branch1", "test/acc_top5"} <= set(metrics)
        assert metrics["tags"] == ["smoke", "fdr"]
        assert f"name: {fusion}" in (tmp_path / str(job) / ".hydra" / "config.yaml").read_text()
        tree = (tmp_path / str(job) / "config_tree.log").read_text()
        assert "CONFIG" in tree and "fast_dev_run: true" in tree and f"name: {fusion}" in tree
        model = build_model("crossvit_micro_28", fusion, in_chans=3, num_classes=10, **SMALL_ARGS)
        cost = count(model)
        assert f"{cost.params_m:.1f} M parameters, {cost.gflops:.2f} GFLOPs an image" in output, fusion


EVAL_LIMITS = ["trainer.limit_val_batches=4", "trainer.limit_test_batches=4"]  # 2,048 images of each split


@needs_fmnist
def test_eval_reproduces_train_test_accuracy(tmp_path):
    run_script(
        "train.py",
        QUICK,
        f"hydra.run.dir={tmp_path / 'train'}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=30",
        *EVAL_LIMITS,
        *SMALL,
        *QUIET,
    )
    trained = read_metrics(tmp_path / "train")
    assert trained["test/acc"] > 0.3  # 30 steps already learn Fashion-MNIST well beyond chance (0.1)
    # The loop's own rate (20 steps after 10 of warm-up) beats the whole fit's average, start-up and validation in.
    assert trained["train_img_s"] > 30 * 256 / trained["fit_time_s"]
    assert 0 <= trained["train_data_wait"] < 0.5  # in-memory batches: the loop hardly waits for them
    # The checkpoint brings its architecture, which sizes the data: the composed model= (240 px here) does not.
    run_script(
        "eval.py",
        f"ckpt_path={trained['best_ckpt']}",
        "model=crossvit_9",
        f"hydra.run.dir={tmp_path / 'eval'}",
        *EVAL_LIMITS,
        *QUIET[:1],
    )
    evaluated = read_metrics(tmp_path / "eval")
    for key in ("test/acc", "test/acc_branch0", "test/acc_branch1", "val/acc"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key


def test_wandb_offline_writes_its_run(tmp_path):
    run_script(
        "train.py",
        QUICK,
        "data=synthetic",
        "logger=wandb",
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path}",
        *SMALL,
        *QUIET,
        env={"WANDB_MODE": "offline"},
    )
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("run-*.wandb"))


# gpu: the batched path, decoding with torchvision on the CPU here; hybrid: PIL crops, the rest batched; dali: DALI's
# CPU backend decodes the crops
@pytest.mark.parametrize("decode", ["cpu", "gpu", "hybrid", "dali"])
def test_image_folder_trains_on_real_jpegs(tmp_path, decode):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 4)):
        for c, colour in enumerate(((200, 30, 30), (30, 30, 200))):
            folder = tmp_path / "data" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(colour, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    run_script(
        "train.py",
        QUICK,
        "data=image_folder",
        f"data.root={tmp_path / 'data'}",
        "data.num_classes=2",
        f"data.decode={decode}",
        "data.num_workers=0",
        "data.batch_size=8",
        "data.persistent_workers=false",
        "trainer.max_epochs=2",
        "model.img_size=[32,32]",
        "model.patch_size=[4,8]",
        f"hydra.run.dir={tmp_path / 'run'}",
        *SMALL,
        *QUIET,
    )
    metrics = read_metrics(tmp_path / "run")
    # Red against blue: 1.0 seen on both paths; a constant prediction scores 0.5 on this balanced set.
    assert metrics["test/acc"] >= 0.875 and metrics["epochs"] == 2


def test_bf16_true_from_the_command_line_gets_fp32_master_weights(tmp_path):
    proc = run_script(
        "train.py",
        QUICK,
        "data=synthetic",
        "debug=fdr",
        "trainer.precision=bf16-true",
        f"hydra.run.dir={tmp_path}",
        *SMALL,
        *QUIET,
    )
    assert "precision bf16-true: the optimizer steps fp32 master copies of" in proc.stdout + proc.stderr
    assert {"val/acc", "test/acc"} <= set(read_metrics(tmp_path))
