"""Real images through each data module's full training transform, as a DataLoader worker runs it.

Pillow 13 made timm's RandAugment crash at magnitude 10 (posterize to 0 bits) without any test noticing: these
push every RandAugment op of the paper's recipe, at its lowest and highest magnitude, over real photographs.
"""

import numpy as np
import pytest
import torch
from conftest import FMNIST, needs_fmnist
from PIL import Image
from timm.data.auto_augment import RandAugment

from crossvit.data import FashionMNISTDataModule, ImageFolderDataModule, SyntheticDataModule
from crossvit.data.fashion_mnist import read_idx

pytestmark = needs_fmnist


def real_images(n: int, seed: int = 0) -> list[Image.Image]:
    """Fashion-MNIST photographs as RGB images of assorted sizes and colours (JPEG decoding included)."""
    rng = np.random.default_rng(seed)
    gray = read_idx(FMNIST / "train-images-idx3-ubyte.gz")[:n]
    images = []
    for g in gray:
        tint = rng.uniform(0.3, 1.0, 3)
        rgb = (g[..., None] * tint + rng.uniform(0, 60, 3)).clip(0, 255).astype(np.uint8)
        w, h = rng.integers(60, 400, 2)
        images.append(Image.fromarray(rgb).resize((int(w), int(h)), Image.BICUBIC))
    return images


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpegs")
    for split, offset in (("train", 0), ("val", 1000)):
        for i, img in enumerate(real_images(48, seed=offset)):
            folder = root / split / f"class{i % 3}"
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{i}.jpg", quality=90)
    return root


def recipe_module(root, **kwargs) -> ImageFolderDataModule:
    """The paper's augmentation as conf/data/image_folder.yaml gives it on a CPU (decode=auto: timm's transform)."""
    kwargs.setdefault("decode", "cpu")
    return ImageFolderDataModule(root=str(root), img_size=240, num_classes=3, persistent_workers=False, **kwargs)


def randaugment(module: ImageFolderDataModule) -> RandAugment:
    (ra,) = [t for t in module.train_transform.transforms if isinstance(t, RandAugment)]
    return ra


@pytest.mark.parametrize("magnitude", [0.0, 10.0])
def test_every_randaugment_op_of_the_recipe_at_its_extremes(image_root, magnitude):
    ra = randaugment(recipe_module(image_root))
    assert len(ra.ops) == 15 and ra.num_layers == 2
    for op in ra.ops:
        op.prob, op.magnitude, op.magnitude_std = 1.0, magnitude, 0.0
        for img in real_images(8, seed=1):
            out = op(img.resize((240, 240)))  # RandAugment runs after the crop, at the model's size
            assert out.size == (240, 240) and out.mode == "RGB", op.name


def test_image_folder_training_transform_in_worker_processes(image_root):
    module = recipe_module(image_root, batch_size=8, num_workers=2)
    for op in randaugment(module).ops:  # every op every time, at its highest magnitude
        op.prob, op.magnitude, op.magnitude_std = 1.0, 10.0, 0.0
    module.setup("fit")
    batches = list(module.train_dataloader())
    assert len(batches) == 48 // 8
    for x, y in batches:
        assert x.shape == (8, 3, 240, 240) and x.dtype == torch.float32 and torch.isfinite(x).all()
        assert y.min() >= 0 and y.max() <= 2
    x = torch.cat([b[0] for b in batches])
    # Normalised with ImageNet's statistics: roughly centred, neither constant nor blown up.
    assert -2.5 < x.mean() < 2.5 and 0.3 < x.std() < 3


@pytest.mark.parametrize("name", ["fashion_mnist", "synthetic"])
def test_in_memory_training_transform_in_a_worker_process(name):
    args = dict(img_size=32, batch_size=64, num_workers=1)
    if name == "fashion_mnist":
        module = FashionMNISTDataModule(in_chans=1, num_classes=10, val_size=59_000, **args)
    else:
        module = SyntheticDataModule(in_chans=3, num_classes=10, size=512, **args)
    module.setup("fit")
    n = 0
    for batch in module.train_dataloader():
        x, y = module.on_after_batch_transfer(batch, 0)  # on the device, after the worker: resize and normalise
        assert x.shape[1:] == (module.in_chans, 32, 32) and torch.isfinite(x).all()
        assert abs(float(x.mean())) < 1.5
        n += len(y)
    assert n == (len(module.train_set) // 64) * 64


def test_repeated_augmentation_under_ddp(image_root, tmp_path):
    """data.repeated_aug=true under DDP gives timm's sampler: each chosen image three times, in a row."""
    import torch.distributed as dist

    from crossvit.data.image_folder import RepeatAugDistributedSampler

    for i in range(256):  # timm's sampler keeps whole multiples of 256 images
        folder = tmp_path / "train" / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / f"{i}.jpg")
    (tmp_path / "val").symlink_to(image_root / "val")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        module = recipe_module(tmp_path, batch_size=8, num_workers=0, repeated_aug=True)
        module.setup("fit")
        sampler = module.train_dataloader().sampler
        assert isinstance(sampler, RepeatAugDistributedSampler)
        sampler.set_epoch(0)
        order = list(sampler)
    finally:
        dist.destroy_process_group()
    assert len(order) == 256
    runs = [order[i : i + 3] for i in range(0, 255, 3)]
    assert all(len(set(run)) == 1 for run in runs) and len({run[0] for run in runs}) == 85


def test_image_folder_resumes_mid_epoch_at_the_next_batch(image_root):
    """A checkpoint 2 batches into an epoch: the resumed loader yields that epoch's other batches, in order."""

    def epoch(module, number):
        loader = module.train_dataloader()
        loader.sampler.set_epoch(number)  # as Lightning does
        return [(b[0].tolist(), b[2].tolist()) for b in loader]  # decode=gpu: (lengths, bytes, labels) off the device

    whole = recipe_module(image_root, batch_size=8, num_workers=0, decode="gpu")
    whole.setup("fit")
    resumed = recipe_module(image_root, batch_size=8, num_workers=0, decode="gpu")
    resumed.setup("fit")
    resumed.load_state_dict({"train_batches_done": 2})
    full = epoch(whole, 1)
    assert len(full) == 6 and epoch(resumed, 1) == full[2:]
    assert epoch(resumed, 2) == epoch(whole, 2)  # the next epoch is whole again
