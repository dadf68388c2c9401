"""Bad input gets a short error naming the key or file and the fix, and a non-zero exit (docs/reliability.md)."""

import pytest
import timm
import torch
from conftest import QUICK, QUIET, needs_fmnist, run_script
from PIL import Image

from crossvit.data import FashionMNISTDataModule, ImageFolderDataModule, SyntheticDataModule
from crossvit.errors import ConfigError
from crossvit.models import build_model
from crossvit.weights import load_pretrained, read_checkpoint


def fails(script, *overrides, stdout=False):
    quiet = QUIET if script == "train.py" else QUIET[:1]  # eval.yaml has no callbacks group
    proc = run_script(script, *overrides, *quiet, check=False)
    assert proc.returncode != 0
    return (proc.stderr, proc.stdout) if stdout else proc.stderr


@pytest.mark.parametrize(
    ("group", "valid"),
    [("model", "crossvit_18"), ("fusion", "cross_attention"), ("data", "image_folder"), ("trainer", "ddp")],
)
def test_unknown_names_list_the_valid_ones(group, valid):
    err = fails("train.py", QUICK, f"{group}=nonsense")
    assert f"Could not find '{group}/nonsense'" in err and "Available options" in err and valid in err


def test_impossible_architectures(tmp_path):
    err = fails("train.py", QUICK, "model.patch_size=[5,7]", f"hydra.run.dir={tmp_path}")
    assert "error: model.patch_size[0]=5 does not divide model.img_size[0]=28; choose a divisor" in err
    assert "Traceback" not in err
    # The same check in-process (the one-line exit is the same path as above).
    with pytest.raises(ConfigError, match=r"model.embed_dim\[0\]=64 is not divisible by model.num_heads\[0\]=3"):
        build_model("crossvit_micro_28", num_heads=[3, 4])


# Errors raised by a data module's setup are checked in-process below: the one-line exit around them is the path
# test_impossible_architectures and test_image_folder_with_a_corrupt_file run through src/train.py.


def test_missing_dataset_root_says_how_to_get_it(tmp_path):
    module = FashionMNISTDataModule(root=str(tmp_path / "none"), img_size=28, in_chans=1, num_classes=10)
    with pytest.raises(ConfigError) as error:
        module.setup("fit")
    err = str(error.value)
    assert f"data.root={tmp_path / 'none'} holds no Fashion-MNIST" in err and "make data" in err
    assert "data.download=true" in err


def _folder(root, classes_val=("a", "b")):
    for split, classes in (("train", ("a", "b")), ("val", classes_val)):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(root / split / c / f"{i}.jpg")


IMAGE_FOLDER = [
    "data=image_folder",
    "data.num_classes=2",
    "data.num_workers=0",
    "data.batch_size=4",
    "data.persistent_workers=false",
    "model.img_size=[32,32]",
    "model.patch_size=[4,8]",
    "model.embed_dim=[32,64]",
    "model.num_heads=[2,2]",
    "trainer.max_epochs=1",
]


def test_image_folder_with_a_corrupt_file(tmp_path, capsys):
    _folder(tmp_path / "data")
    bad = tmp_path / "data" / "train" / "a" / "broken.jpg"
    bad.write_text("not a jpeg")
    err = fails("train.py", QUICK, *IMAGE_FOLDER, f"data.root={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'r1'}")
    assert f"error: {bad} is not a readable image" in err and "data.skip_corrupt=true" in err
    # Read in a worker process, the same one line, not the worker's traceback.
    err = fails(
        "train.py",
        QUICK,
        *IMAGE_FOLDER,
        "data.num_workers=2",
        f"data.root={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path}",
    )
    assert err.strip().splitlines()[-1].startswith(f"error: {bad} is not a readable image"), err[-2000:]
    assert "Traceback" not in err
    # data.skip_corrupt=true leaves it out and says so (in-process: the data module is the whole mechanism).
    module = ImageFolderDataModule(str(tmp_path / "data"), img_size=32, num_classes=2, batch_size=4, skip_corrupt=True)
    module.setup("fit")
    assert "skipped 1 unreadable files" in capsys.readouterr().out and len(module.train_set) == 8


def test_image_folder_with_different_classes(tmp_path):
    _folder(tmp_path / "data", classes_val=("a", "c"))
    module = ImageFolderDataModule(str(tmp_path / "data"), img_size=32, num_classes=2, batch_size=4, num_workers=0)
    with pytest.raises(ConfigError) as error:
        module.setup("fit")
    assert "hold different class folders (only in train: ['b'], only in val: ['c'])" in str(error.value)


@pytest.fixture(scope="module")
def timm_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "crossvit_9.pth"
    torch.save(timm.create_model("crossvit_9_240", pretrained=False).state_dict(), path)
    return path


def test_checkpoint_of_another_architecture(tmp_path, timm_file):
    err = fails(
        "eval.py",
        f"ckpt_path={timm_file}",
        "model=crossvit_9",
        "fusion=class_token",
        "data=synthetic",
        f"hydra.run.dir={tmp_path}",
    )
    assert "error: checkpoint does not fit this architecture" in err and "blocks.0.fusion" in err
    assert len(err.strip().splitlines()[-1]) < 1000


def test_checkpoint_head_of_another_class_count(timm_file):
    # In-process: eval.py reaches load_pretrained the same way (test_checkpoint_of_another_architecture).
    with pytest.raises(ConfigError, match="checkpoint heads predict 1000 classes but the model has 10; to fine-tune"):
        load_pretrained(build_model("crossvit_9", num_classes=10), timm_file)


class _Evil:
    def __reduce__(self):
        return (print, ("ran",))


def test_not_a_checkpoint_and_a_pickle_that_runs_code(tmp_path, capsys):
    junk = tmp_path / "notes.ckpt"
    junk.write_text("hello")
    err = fails("eval.py", f"ckpt_path={junk}", f"hydra.run.dir={tmp_path}")
    assert f"error: {junk} is not a PyTorch checkpoint" in err
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": _Evil()}, evil)
    with pytest.raises(ConfigError, match="would run code when unpickled, so it was refused"):
        read_checkpoint(evil)
    assert "ran" not in capsys.readouterr().out.split()  # the payload never executed


def test_wandb_without_a_login_says_how_to_log_in(tmp_path):
    no_login = {"WANDB_MODE": "online", "WANDB_API_KEY": "", "NETRC": str(tmp_path / "netrc")}
    proc = run_script(
        "train.py",
        QUICK,
        "logger=wandb",
        "data=synthetic",
        f"hydra.run.dir={tmp_path}",
        *QUIET,
        check=False,
        env={**no_login, "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config")},
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "error: logger=wandb could not start a run" in proc.stderr
    assert "wandb login" in proc.stderr and "WANDB_MODE=offline" in proc.stderr


def test_a_dataset_too_small_for_one_batch():
    module = SyntheticDataModule(img_size=28, in_chans=3, num_classes=10, size=128, test_size=128, batch_size=32)
    with pytest.raises(ConfigError) as error:
        module.setup("fit")
    err = str(error.value)
    assert "128 images less data.val_size=128 held out for validation leave 0 training images, not one " in err
    assert "lower data.val_size or data.batch_size" in err


@needs_fmnist
def test_fashion_mnist_too_small_for_one_batch_per_device(tmp_path):
    # 60,000 images less 59,900 for validation leave 100: one batch of 64 on one process, none on two.
    common = ["data.val_size=59900", "data.batch_size=64", "trainer.max_epochs=1", "trainer.limit_train_batches=1"]
    err = fails("train.py", QUICK, *common, "trainer=ddp_cpu", "trainer.devices=2", f"hydra.run.dir={tmp_path / 'ddp'}")
    assert "error: 60000 images less data.val_size=59900 held out for validation leave 100 training images, " in err
    assert "not one batch of data.batch_size=64 per device on 2 device(s)" in err and "Traceback" not in err


def test_image_folder_too_small_for_one_batch(tmp_path):
    """In setup, so before the LR scheduler, which used to fail first with timm's `assert t_initial > 0`."""
    _folder(tmp_path / "data")  # 4 images per class, 8 in all
    module = ImageFolderDataModule(str(tmp_path / "data"), img_size=32, num_classes=2, batch_size=64, num_workers=0)
    with pytest.raises(ConfigError) as error:
        module.setup("fit")
    err = str(error.value)
    assert f"the 8 images in {tmp_path / 'data'}/train leave 8 training images, not one batch of " in err
    assert "data.batch_size=64 per device on 1 device(s); add images or lower data.batch_size" in err
