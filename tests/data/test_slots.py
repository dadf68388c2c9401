"""decode=hybrid with data.shared_slots: the workers' crops in shared slots made once (crossvit.data.slots)."""

import random
import time
import warnings

import pytest
import torch
from test_transforms import real_images

from crossvit.data import ImageFolderDataModule
from crossvit.data.slots import SharedSlots, SlotRef
from crossvit.errors import ConfigError

PLAIN = dict(auto_augment=None, color_jitter=None, re_prob=0.0, hflip=0.0)  # the device part leaves crops as resized


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("slots")
    for i, img in enumerate(real_images(48, seed=3)):
        for split in ("train", "val"):
            (root / split / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
            img.save(root / split / f"c{i % 3}" / f"{i}.jpg", quality=90)
    return root


def module(root, **kwargs) -> ImageFolderDataModule:
    args = dict(root=str(root), img_size=40, num_classes=3, batch_size=4, num_workers=2, decode="hybrid", **PLAIN)
    m = ImageFolderDataModule(**{**args, **kwargs})
    m.setup("fit")
    return m


def epochs(m: ImageFolderDataModule, n: int, lag: float = 0.0) -> list[tuple]:
    """n epochs of the training loader as Lightning reads it: each batch fetched one ahead of the one prepared
    (`lag` s to prepare each, while the workers run on); (what crossed from the worker, prepared images, labels)."""
    torch.manual_seed(0)  # the workers' crop boxes, and the sampler's order
    random.seed(0)  # the crop boxes where the main process collates (no workers)
    loader, out = m.train_dataloader(), []
    for epoch in range(n):
        loader.sampler.set_epoch(epoch)
        it = iter(loader)
        ahead = next(it, None)
        while ahead is not None:
            batch, ahead = ahead, next(it, None)
            time.sleep(lag)
            x, y = m.prepare(batch, torch.device("cpu"), True)
            out.append((batch[0], x, y))
    return out


def test_shared_slots_give_the_usual_batches_through_worker_processes(folder):
    """Each worker writes its crops into its own slots in turn and sends where they are; the prepared batches are
    the usual path's, bit for bit, over three epochs (18 batches a worker: each of its 4 slots written 4-5 times)
    with the reader slower than the workers, so they run as far ahead as the DataLoader lets them."""
    usual = epochs(module(folder, shared_slots=False), 3)
    slotted = epochs(module(folder, shared_slots=True, slot_mb=4), 3, lag=0.05)
    assert len(slotted) == len(usual) == 36
    assert all(isinstance(crossed, SlotRef) for crossed, _, _ in slotted)
    assert all(isinstance(crossed, torch.Tensor) for crossed, _, _ in usual)
    for (_, x, y), (_, x_usual, y_usual) in zip(slotted, usual):
        assert torch.equal(y, y_usual) and torch.equal(x, x_usual)
    assert {crossed.slot for crossed, _, _ in slotted} == set(range(8))  # 2 workers x (2 in hand + 2)


def test_a_batch_too_large_for_its_slot_goes_the_usual_way(folder):
    m = module(folder, shared_slots=True, slot_mb=1e-4, num_workers=0)  # 104 bytes: no batch of crops fits
    with pytest.warns(UserWarning, match="raise data.slot_mb"):
        batches = epochs(m, 1)
    usual = epochs(module(folder, num_workers=0, shared_slots=False), 1)
    assert all(isinstance(crossed, torch.Tensor) for crossed, _, _ in batches)
    assert all(torch.equal(x, x_usual) for (_, x, _), (_, x_usual, _) in zip(batches, usual))


def test_slots_are_one_per_turn_of_each_worker():
    """A worker's batches go round its own slots; the main process (no workers) counts as worker 0."""
    slots = SharedSlots(workers=0, per_worker=2, capacity=16)
    refs = []
    for i in range(3):
        refs.append(slots.take(6))
        slots.read(refs[-1]).fill_(i)
    assert [r.slot for r in refs] == [0, 1, 0] and all(r.nbytes == 6 for r in refs)
    assert torch.equal(slots.read(refs[2]), torch.full((6,), 2, dtype=torch.uint8))
    assert torch.equal(slots.read(refs[1]), torch.full((6,), 1, dtype=torch.uint8))
    with pytest.warns(UserWarning, match="raise data.slot_mb"):
        assert slots.take(17) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once a process, not once a batch
        assert slots.take(18) is None


def test_the_default_slots_hold_crops_of_images_larger_than_the_output(folder):
    """The crops cross at their decoded size (the device resizes them), so a slot is sized from the training images
    themselves: here 60-400 px images for 40 px outputs, where slots sized from the output would take no batch."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batches = epochs(module(folder, shared_slots=True, num_workers=0), 2)
    assert len(batches) == 24 and all(isinstance(crossed, SlotRef) for crossed, _, _ in batches)


def test_slot_size_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"data.slot_mb=0"):
        ImageFolderDataModule(root="/nowhere", img_size=32, decode="hybrid", shared_slots=True, slot_mb=0)
