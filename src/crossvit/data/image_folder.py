"""ImageNet-layout folders (root/train/<class>/*, root/val/<class>/*) with the paper's timm augmentation.

`decode="cpu"`: workers decode with PIL and run timm's transforms. `decode="gpu"`: workers only read the files'
bytes; the batch is decoded where training runs (nvJPEG on a GPU) and augmented there as a whole
(crossvit.data.batch_augment), drawing from the same distributions. `decode="hybrid"`: workers decode timm's random
crop box of each file (only that region where nvImageCodec is installed: crossvit.data.jpeg), not resized; the batch
of crops is resized, flipped and augmented where training runs, as for decode=gpu. `decode="dali"`: workers read the
files' bytes; NVIDIA DALI decodes each one's random crop region and resizes it (crossvit.data.dali: the GPU's JPEG
engines, or DALI's CPU backend), then the batch is augmented as for decode=gpu; `dali_share` below 1 leaves the
first files of each batch to the workers, decoded as for decode=hybrid, so the host's cores and the GPU's JPEG engines
share the decoding. `decode="auto"` (the default) takes hybrid on a GPU, the fastest there in the Lightning loop
(docs/benchmarks.md), and cpu elsewhere.
"""

from __future__ import annotations

import io
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import DataLoader, DistributedSampler
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.io import ImageReadMode, decode_jpeg, read_file

from crossvit.errors import ConfigError, check_one_batch

from . import jpeg
from .batch_augment import (
    RAND_INCREASING_OPS,
    BatchRandAugment,
    crop_resize_flat,
    device_kernel,
    erasing_boxes,
    erasing_noise,
    flip_images,
    normalise_and_erase,
    normalise_images,
    random_resized_crop,
    resize_center_crop,
    to_device,
)
from .dali import DaliCropDecoder, require_dali
from .resume import MidEpochResume, ResumableDistributedSampler, SkipStart
from .slots import SharedSlots, SlotRef

DECODES = {
    "cpu": "PIL decoding and timm's transforms in the workers",
    "gpu": "the workers read the files; nvJPEG and the augmentation on the device",
    "hybrid": "decoding and timm's random crop in the workers; resize and augmentation on the device",
    "dali": "the workers read the files; NVIDIA DALI decodes and resizes the crops; the augmentation on the device",
}


class RepeatAugDistributedSampler(SkipStart, RepeatAugSampler, DistributedSampler):
    """timm's repeated-augmentation sampler. Also a DistributedSampler, so Lightning does not wrap it in another."""


def load_image(path: str) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as e:
        raise ConfigError(f"{path} is not a readable image ({e}); remove it, or set data.skip_corrupt=true") from None


def read_encoded(path: str) -> torch.Tensor:
    """A JPEG's bytes as uint8 [N], left for the device to decode. Whatever nvJPEG may not take (ImageNet holds a
    PNG named .JPEG and a few CMYK JPEGs) is converted here, once, to an RGB JPEG."""
    try:
        with Image.open(path) as img:  # reads the header only
            if img.format == "JPEG" and img.mode in ("RGB", "L"):
                return read_file(path)
    except Exception:
        pass  # load_image names the file
    buffer = io.BytesIO()
    load_image(path).save(buffer, format="JPEG", quality=95)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def collate_encoded(samples: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One flat byte tensor, the files' lengths and the labels: three tensors cross from a worker, not one a file."""
    data = [s[0] for s in samples]
    return torch.cat(data), torch.tensor([len(d) for d in data]), torch.tensor([s[1] for s in samples])


def collate_crops(
    samples: list[tuple[torch.Tensor, int]], slots: SharedSlots | None = None
) -> tuple[torch.Tensor | SlotRef, torch.Tensor, torch.Tensor]:
    """decode=hybrid's batches, made in the workers: timm's random crop box of each file, decoded (only that region,
    where nvImageCodec is installed: crossvit.data.jpeg). Returns (crops back to back: flat uint8 HWC, or where
    `slots` holds them; their (h, w); labels)."""
    return _decoded_crops([data for data, _ in samples], slots) + (torch.tensor([y for _, y in samples]),)


class SplitCollate:
    """decode=dali with data.dali_share < 1: the workers decode the first files of each batch as decode=hybrid's do,
    and leave the last `share` of them encoded for DALI. Returns (DALI's files back to back, their lengths, the
    workers' crops back to back, their (h, w), the labels of the whole batch in its order)."""

    def __init__(self, share: float) -> None:
        self.share = share

    def __call__(self, samples: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, ...]:
        here = len(samples) - max(1, round(self.share * len(samples)))
        flat, hw = _decoded_crops([data for data, _ in samples[:here]])
        data, lengths, _ = collate_encoded(samples[here:])
        return data, lengths, flat, hw, torch.tensor([y for _, y in samples])


def _decoded_crops(
    files: list[torch.Tensor], slots: SharedSlots | None = None
) -> tuple[torch.Tensor | SlotRef, torch.Tensor]:
    """timm's random crop of each file, decoded: (the crops back to back, flat uint8 HWC, or where `slots` holds
    them; their (h, w))."""
    try:  # read_encoded made every file an RGB or grey JPEG
        crops = jpeg.CropDecoder()(files)
    except RuntimeError as e:
        raise ConfigError(
            f"a JPEG in this batch cannot be decoded ({e}); find it with data.decode=cpu, which names the file, "
            f"or set data.skip_corrupt=true"
        ) from None
    sizes = [c.numel() for c in crops]
    ref = slots.take(sum(sizes)) if slots is not None else None
    flat = slots.read(ref) if ref is not None else torch.empty(sum(sizes), dtype=torch.uint8)
    for crop, part in zip(crops, flat.split(sizes)):  # one copy of each crop (a strided view, where cut)
        part.view(crop.shape).copy_(crop)
    return flat if ref is None else ref, torch.tensor([c.shape[:2] for c in crops], dtype=torch.long).view(-1, 2)


def _is_readable(path: str) -> bool:
    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:
        return False


class ImageFolderDataModule(MidEpochResume, L.LightningDataModule):
    """Train on root/train, validate and test on root/val (ImageNet's public split)."""

    def __init__(
        self,
        root: str,
        img_size: int,
        in_chans: int = 3,
        num_classes: int = 1000,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 8,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        auto_augment: str | None = "rand-m9-mstd0.5-inc1",
        color_jitter: float = 0.4,
        re_prob: float = 0.25,
        re_mode: str = "pixel",
        interpolation: str = "bicubic",
        crop_pct: float = 224 / 256,
        mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
        std: tuple[float, ...] = IMAGENET_DEFAULT_STD,
        repeated_aug: bool = False,
        skip_corrupt: bool = False,
        decode: str = "auto",
        prefetch: int = 2,
        hflip: float = 0.5,
        compile_augment: bool = True,
        dali_threads: int = 4,
        dali_share: float = 1.0,
        stream_priority: int = 0,
        shared_slots: bool = True,
        slot_mb: float | None = None,
    ) -> None:
        super().__init__()
        if in_chans != 3:
            raise ConfigError(f"data.in_chans={in_chans}: image_folder decodes images as RGB; set data.in_chans=3")
        if decode not in ("auto", *DECODES):
            raise ConfigError(
                f"data.decode={decode}: choose auto (hybrid on a GPU, else cpu), cpu (PIL and timm in the workers), "
                f"gpu (nvJPEG and the augmentation on the device), hybrid (decoding and cropping in the workers, "
                f"the rest on the device) or dali (NVIDIA DALI decodes and resizes the crops)"
            )
        if prefetch < 0:
            raise ConfigError(f"data.prefetch={prefetch}: the number of batches prepared ahead; 0 turns it off")
        if not 0 < dali_share <= 1:
            raise ConfigError(
                f"data.dali_share={dali_share}: the share of each decode=dali batch DALI decodes (the workers the "
                f"rest), above 0 and at most 1; for none, set data.decode=hybrid"
            )
        if slot_mb is not None and slot_mb <= 0:
            raise ConfigError(
                f"data.slot_mb={slot_mb}: a slot's size in MiB, above 0; null sizes it from the training images"
            )
        self.prefetch, self.compile_augment = prefetch, compile_augment
        # decode=hybrid: the workers' crops in page-locked shared slots (crossvit.data.slots), made with the loader
        self.shared_slots, self.slot_mb, self.slots = shared_slots, slot_mb, None
        # of the prefetcher's CUDA stream; DALI 2.4 sets none for its own (its default_cuda_stream_priority is inert)
        self.stream_priority = stream_priority
        # decode=dali: its pipeline, built where it first runs; its seed, set per run and rank by train_dataloader
        self.dali_threads, self.dali_share, self._dali, self._dali_seed = dali_threads, dali_share, None, 0
        self._warm = False  # the device augmentation compiled (warm_up)
        self.recipe = dict(
            auto_augment=auto_augment,
            color_jitter=color_jitter,
            re_prob=re_prob,
            re_mode=re_mode,
            interpolation=interpolation,
            mean=mean,
            std=std,
        )
        self.img_size, self.crop_pct, self.hflip, self.re_prob = img_size, crop_pct, hflip, re_prob
        self.mean = torch.tensor(mean).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std).view(1, -1, 1, 1) * 255
        self.root = Path(root)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.loader_args = dict(
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers and num_workers > 0,
        )
        self.repeated_aug = repeated_aug
        self.skip_corrupt = skip_corrupt
        self.train_set = self.val_set = None
        self.decode = None  # decode=auto: chosen in setup, once the device is known
        if decode != "auto":
            self._use(decode)

    def _use(self, decode: str) -> None:
        """Where decoding and augmentation run: the transforms, what crosses from the workers, RandAugment."""
        r = self.recipe
        bicubic_only = decode in ("gpu", "dali")  # their resize is bicubic; hybrid's takes timm's interpolation
        if decode != "cpu" and (r["re_mode"] != "pixel" or bicubic_only and r["interpolation"] != "bicubic"):
            raise ConfigError(
                f"data.decode={decode} implements the paper's re_mode=pixel and interpolation=bicubic, not "
                f"data.re_mode={r['re_mode']} data.interpolation={r['interpolation']}; set data.decode=cpu for those"
            )
        if decode != "cpu" and r["color_jitter"] and not r["auto_augment"]:
            raise ConfigError(
                f"data.decode={decode} implements RandAugment, not colour jitter (data.auto_augment=null, "
                f"data.color_jitter={r['color_jitter']}); set data.color_jitter=null, or data.decode=cpu"
            )
        try:
            fill = tuple(round(255 * m) for m in r["mean"])  # timm fills RandAugment's warps with the mean colour
            self.rand_augment = (
                BatchRandAugment(r["auto_augment"], fill, self.compile_augment)
                if decode != "cpu" and r["auto_augment"]
                else None
            )
        except ValueError as e:
            raise ConfigError(f"data.auto_augment: {e}; or set data.decode=cpu") from None
        if decode == "dali":
            require_dali()
        self.decode = decode
        if decode == "hybrid":
            rank_zero_info(
                "data.decode=hybrid: the workers decode only timm's crop region of each JPEG (nvImageCodec)"
                if jpeg.default_backend() == "nvimgcodec"
                else "data.decode=hybrid: the workers decode whole JPEGs, then cut timm's crop (torchvision); "
                "install nvidia-nvimgcodec-cu13 to decode only the region, 1.2x the images a worker"
            )
        # What leaves the workers: decoded images (cpu; hybrid's and dali's evaluation), files' bytes (gpu, dali),
        # crops (hybrid; dali's below data.dali_share).
        dali = collate_encoded if self.dali_share == 1 else SplitCollate(self.dali_share)
        collates = {"cpu": None, "gpu": collate_encoded, "hybrid": collate_crops, "dali": dali}
        self.train_collate = collates[decode]
        self.eval_collate = collate_encoded if decode == "gpu" else None
        self.train_transform = self.eval_transform = None  # decode=gpu: crossvit.data.batch_augment instead
        if decode == "cpu":
            self.train_transform = create_transform(self.img_size, is_training=True, hflip=self.hflip, **r)
        if decode != "gpu":
            # Resize the short side to img_size / crop_pct, then centre-crop img_size (the paper's 256/224 rule).
            self.eval_transform = create_transform(
                self.img_size,
                is_training=False,
                interpolation=r["interpolation"],
                crop_pct=self.crop_pct,
                mean=r["mean"],
                std=r["std"],
            )

    def _choose(self) -> str:
        """decode=auto: hybrid on a GPU (measured fastest there: docs/benchmarks.md), unless the recipe asks for what
        only timm's CPU transform does; cpu otherwise."""
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        r = self.recipe
        device_recipe = r["re_mode"] == "pixel" and not (r["color_jitter"] and not r["auto_augment"])
        decode = "hybrid" if device.type == "cuda" and device_recipe else "cpu"
        rank_zero_info(f"data.decode=auto: {decode} ({DECODES[decode]}) for {device}")
        return decode

    def _folder(self, split: str, transform, loader: Callable) -> ImageFolder:
        path = self.root / split
        if not path.is_dir():
            raise ConfigError(
                f"data.root={self.root} has no {split}/ folder; image_folder expects root/train/<class>/*.jpg and "
                f"root/val/<class>/*.jpg (ImageNet's layout)"
            )
        ds = ImageFolder(
            str(path),
            transform=transform,
            loader=loader,
            is_valid_file=lambda p: p.lower().endswith(IMG_EXTENSIONS),
        )
        if self.skip_corrupt:
            good = [(p, c) for p, c in ds.samples if _is_readable(p)]
            if len(good) < len(ds.samples):
                print(f"data.skip_corrupt: skipped {len(ds.samples) - len(good)} unreadable files in {path}")
            ds.samples = ds.imgs = good
            ds.targets = [c for _, c in good]
        return ds

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if self.decode is None:
            self._use(self._choose())
        # decode=hybrid and dali evaluate with timm's PIL transform, as decode=cpu.
        self.train_set = self._folder(
            "train", self.train_transform, load_image if self.decode == "cpu" else read_encoded
        )
        self.val_set = self._folder("val", self.eval_transform, read_encoded if self.decode == "gpu" else load_image)
        if self.train_set.classes != self.val_set.classes:
            only_train = sorted(set(self.train_set.classes) - set(self.val_set.classes))[:5]
            only_val = sorted(set(self.val_set.classes) - set(self.train_set.classes))[:5]
            raise ConfigError(
                f"{self.root}/train and {self.root}/val hold different class folders (only in train: "
                f"{only_train}, only in val: {only_val}); both need the same classes"
            )
        if stage in (None, "fit"):
            self._check_one_batch()
        if len(self.train_set.classes) != self.num_classes:
            raise ConfigError(
                f"data.num_classes={self.num_classes} but {self.root}/train has "
                f"{len(self.train_set.classes)} class folders; set data.num_classes="
                f"{len(self.train_set.classes)}"
            )

    def _check_one_batch(self) -> None:
        devices = self.trainer.world_size if self.trainer is not None else 1
        images, what = len(self.train_set), f"the {len(self.train_set)} images in {self.root}/train"
        if self.repeated_aug and devices > 1:  # timm's sampler keeps whole multiples of 256 images, then splits them
            images, what = len(self.train_set) // 256 * 256, f"{what} with data.repeated_aug=true (multiples of 256)"
        check_one_batch(images, devices, self.batch_size, what, "add images or lower data.batch_size")

    def train_dataloader(self) -> DataLoader | Prefetcher:
        distributed = dist.is_available() and dist.is_initialized()
        replicas, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
        # Our own sampler also on one process: Lightning injects none into a prefetcher, and its order depends only
        # on (run seed, epoch), the same on every rank (seed_everything). Lightning calls its set_epoch.
        if self.repeated_aug and distributed:  # timm's, ordered by the epoch alone
            sampler = RepeatAugDistributedSampler(self.train_set, replicas, rank, shuffle=True)
        else:
            seed = torch.initial_seed() % 2**32
            sampler = ResumableDistributedSampler(self.train_set, replicas, rank, shuffle=True, seed=seed)
        self.resume_sampler(sampler, self.batch_size)
        self._dali_seed = (torch.initial_seed() + 7919 * rank) % 2**31  # decode=dali's crops: per run and rank
        collate, args = self.train_collate, self.loader_args
        if self.decode == "hybrid" and self.shared_slots:
            collate, args = partial(collate_crops, slots=self._make_slots()), {**args, "pin_memory": False}
        loader = DataLoader(
            self.train_set, self.batch_size, sampler=sampler, drop_last=True, collate_fn=collate, **args
        )
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.warm_up(device)
        if self.decode != "cpu" and device.type == "cuda" and self.prefetch:
            return self.prefetched(loader, device)
        return loader

    def _make_slots(self) -> SharedSlots:
        """decode=hybrid's slots, once a run: two more a worker than the batches it may hold (slots.py says why),
        each data.slot_mb, by default 3/4 of a batch of whole training images (`_mean_image_pixels`): timm's crops
        average about half an image, and a batch's total stays far from 3/4 at any usual batch size."""
        if self.slots is None:
            workers = self.loader_args["num_workers"]
            per_worker = (2 if workers else 0) + 2  # the DataLoader's prefetch_factor: 2 a worker
            if self.slot_mb is not None:
                mb = self.slot_mb
            else:
                mb = 0.75 * self.batch_size * 3 * self._mean_image_pixels() / 2**20  # RGB
            self.slots = SharedSlots(workers, per_worker, max(1, int(mb * 2**20)))
            rank_zero_info(
                f"data.shared_slots: {self.slots.gib:.1f} GiB of shared memory in "
                f"{self.slots.workers * per_worker} slots of {mb:.0f} MiB (data.slot_mb)"
            )
        return self.slots

    def _mean_image_pixels(self, sample: int = 64) -> float:
        """The mean pixel count of up to `sample` training images spread over the folder (their headers only)."""
        paths = [p for p, _ in self.train_set.samples]
        sizes = []
        for p in paths[:: max(1, len(paths) // sample)][:sample]:
            try:
                with Image.open(p) as img:
                    sizes.append(img.width * img.height)
            except OSError:  # the workers' decoding names an unreadable file, and the fix
                continue
        return sum(sizes) / len(sizes) if sizes else 4 * self.img_size**2

    def prefetched(self, loader: DataLoader, device: torch.device) -> Prefetcher:
        """The training batches prepared ahead in a thread (on a side stream on a GPU); decode=dali's crops decoded
        by DALI one batch further ahead of the one being augmented."""
        ahead = dict(depth=self.prefetch, priority=self.stream_priority)
        if self.decode == "dali":
            batches = DaliBatches(loader, lambda: self._dali_decoder(device))
            return Prefetcher(batches, lambda b, g: self._augment_crops(*b, generator=g), device, **ahead)
        return Prefetcher(loader, lambda batch, g: self.prepare(batch, device, True, g), device, **ahead)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, self.eval_batch_size, collate_fn=self.eval_collate, **self.loader_args)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        # Still to prepare: decode=gpu's and dali's encoded files, decode=hybrid's training crops. Whatever the
        # prefetcher prepared, and hybrid's and dali's evaluation batches (timm's, in the workers), are
        # (images, labels).
        if self.decode != "cpu" and len(batch) > 2:
            return self.prepare(batch, device, train=self.trainer is not None and self.trainer.training)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def prepare(
        self, batch, device: torch.device, train: bool, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch from the workers -> augmented (train) or resized (eval) images on `device`. decode=gpu: encoded
        files, decoded here; decode=hybrid: training crops, resized here; decode=dali: training files, DALI's here."""
        if self.decode == "dali":
            data, lengths, *rest = batch
            return self._augment_crops(self._dali_decoder(device)(data, lengths), *rest, generator=generator)
        if self.decode == "hybrid":
            flat, hw, y = batch
            x = self.augment(self._resize_crops(flat, hw, device), generator)
        else:
            data, lengths, y = batch
            images = self.decode_batch(data, lengths, device)
            if train:
                x = self.augment(random_resized_crop(images, self.img_size, generator)[0], generator)
            else:
                x = self.evaluate(images)
        return x, y.to(device, non_blocking=True)

    def _dali_decoder(self, device: torch.device) -> DaliCropDecoder:
        """decode=dali's pipeline, built where it first runs (the prefetcher's thread on a GPU)."""
        if self._dali is None or self._dali.device.type != device.type:
            self._dali = DaliCropDecoder(self.img_size, self.batch_size, device, self._dali_seed, self.dali_threads)
        return self._dali

    def _resize_crops(self, flat: torch.Tensor | SlotRef, hw: torch.Tensor, device: torch.device) -> torch.Tensor:
        """decode=hybrid's crops from the workers (or where in the shared slots they are), resized on `device`."""
        boxes = torch.cat([torch.zeros_like(hw), hw], 1)  # each crop is its own box
        flat = self.slots.to_device(flat, device) if isinstance(flat, SlotRef) else to_device(flat, device)
        return crop_resize_flat(flat, hw, boxes, self.img_size, channels_last=True)

    def _augment_crops(
        self, crops: torch.Tensor, *rest: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DALI's crops (the last data.dali_share of the batch: the workers' crops come first, with the labels in
        `rest`), augmented, and the labels, on DALI's device."""
        *workers, y = rest
        if workers and len(workers[1]):  # a share near 1 can leave the workers no file of a small batch
            crops = torch.cat([self._resize_crops(*workers, crops.device), crops])
        return self.augment(crops, generator), y.to(crops.device, non_blocking=True)

    @staticmethod
    def decode_batch(data: torch.Tensor, lengths: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
        """The batch's JPEGs (concatenated bytes) decoded in one batched call on `device`: nvJPEG on a GPU."""
        if device.type == "cuda":
            # torchvision allocates the outputs on this stream but has nvJPEG write them from its own stream without
            # waiting for this one, so it can be handed (and overwrite) memory that kernels queued here still read:
            # NaNs and device-side asserts downstream (pytorch/vision#9606; benchmarks/check_nvjpeg_stream.py).
            torch.cuda.current_stream(device).synchronize()
        try:
            return decode_jpeg(list(data.split(lengths.tolist())), mode=ImageReadMode.RGB, device=device)
        except RuntimeError as e:
            raise ConfigError(
                f"a JPEG in this batch cannot be decoded on {device} ({e}); find it with data.decode=cpu, which "
                f"names the file, or set data.skip_corrupt=true"
            ) from None

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The training transform after the crop, on float 0-255 crops: flip, RandAugment, normalise, erase."""
        device = x.device
        if self.hflip > 0:
            flip = to_device(torch.rand(len(x), generator=generator) < self.hflip, device)
            x = device_kernel(flip_images, device, self.compile_augment)(x, flip)
        if self.rand_augment is not None:
            x = self.rand_augment(x, generator)
        mean, std = self._mean_std(device)
        if self.re_prob <= 0:
            return device_kernel(normalise_images, device, self.compile_augment)(x, mean, std)
        boxes = to_device(erasing_boxes(x.shape, self.re_prob, generator=generator), device)
        erase = device_kernel(normalise_and_erase, device, self.compile_augment)
        return erase(x, mean, std, boxes, erasing_noise(x, generator))

    def warm_up(self, device: torch.device) -> None:
        """Compile the device augmentation's kernels now, in the calling (main) thread, rather than in the
        prefetcher's thread while the main one compiles the model: torch.compile must not run in two at once."""
        if self.decode == "cpu" or device.type != "cuda" or not self.compile_augment or self._warm:
            return
        self._warm, start = True, time.perf_counter()
        # Two images for each of RandAugment's passes (a lookup, a warp, a blend), then flip, normalise and erase.
        op = torch.tensor([RAND_INCREASING_OPS.index(name) for name in ("Equalize", "Rotate", "ColorIncreasing")])
        op, n = op.repeat_interleave(2), 6
        x = torch.zeros(n, 3, self.img_size, self.img_size, device=device)
        try:
            if self.rand_augment is not None:
                applied, m, sign = torch.ones(n, dtype=torch.bool), torch.full((n,), 9.0), torch.ones(n)
                self.rand_augment.apply_layer(x, op, applied, m, sign)
            self.augment(x, torch.Generator().manual_seed(0))
        except Exception as e:  # torch.compile's backend failing on this GPU or install: a long trace otherwise
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ConfigError(
                f"data.compile_augment: compiling the device augmentation failed on {device} "
                f"({type(e).__name__}: {first[:200]}); set data.compile_augment=false to run it eagerly"
            ) from e
        rank_zero_info(
            f"data.compile_augment: the device augmentation compiled in {time.perf_counter() - start:.0f} s "
            f"(once a run; data.compile_augment=false skips it)"
        )

    def evaluate(self, images: list[torch.Tensor]) -> torch.Tensor:
        return self.normalise(resize_center_crop(images, self.img_size, self.crop_pct))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return normalise_images(x, *self._mean_std(x.device))

    def _mean_std(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mean.device != device:  # copied once, not every batch
            self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self.mean, self.std


class DaliBatches:
    """decode=dali's training batches for the Prefetcher: the loader's (files, lengths, labels) with DALI's crops in
    place of the files, DALI decoding the next batch while the thread augments this one."""

    def __init__(self, loader: DataLoader, decoder: Callable[[], DaliCropDecoder]) -> None:
        self.loader, self.decoder = loader, decoder  # decoder: built in the thread that iterates
        self.sampler = loader.sampler  # Lightning calls its set_epoch through the Prefetcher

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.decoder().stream(self.loader)


class Prefetcher:
    """Yields `prepare(batch, generator)` for each batch of `loader`, prepared ahead in a thread (on a CUDA stream of
    its own on a GPU), so decoding (nvJPEG's host part) and augmenting overlap the training step instead of
    preceding it.

    The thread draws its random parameters from a generator seeded once an epoch from the global one, so runs with
    one seed see the same augmentation whatever the threads' timing. `timeout_s` turns a stalled producer into an
    error instead of a silent hang.
    """

    def __init__(
        self,
        loader: DataLoader,
        prepare: Callable,
        device: torch.device,
        depth: int = 2,
        timeout_s: float = 600,
        priority: int = 0,
    ) -> None:
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.loader, self.prepare, self.device = loader, prepare, device
        self.depth, self.timeout_s = depth, timeout_s
        self.priority = priority  # of its CUDA stream: negative runs the data kernels ahead of the step's
        self.sampler = loader.sampler  # Lightning calls its set_epoch through this attribute

    def __len__(self) -> int:
        return len(self.loader)

    @staticmethod
    def _put(out: queue.Queue, item: tuple, stop: threading.Event) -> bool:
        """Queue `item` unless the consumer has stopped (it joins this thread then and takes nothing more)."""
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, out: queue.Queue, stop: threading.Event, seed: int) -> None:
        cuda = self.device.type == "cuda"
        try:
            generator = torch.Generator().manual_seed(seed)
            if cuda:
                torch.cuda.set_device(self.device)
            stream = torch.cuda.Stream(self.device, priority=self.priority) if cuda else None
            with torch.cuda.stream(stream) if cuda else nullcontext():
                for batch in self.loader:
                    prepared = self.prepare(batch, generator)
                    ready = torch.cuda.Event() if cuda else None
                    if cuda:
                        ready.record(stream)
                    if not self._put(out, (prepared, ready, None), stop):
                        return
        except BaseException as e:  # handed to the consumer, which raises it
            self._put(out, (None, None, e), stop)
            return
        self._put(out, (None, None, None), stop)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        out: queue.Queue = queue.Queue(self.depth)
        stop = threading.Event()
        seed = int(torch.randint(2**62, (1,)))
        thread = threading.Thread(target=self._produce, args=(out, stop, seed), daemon=True, name="prefetcher")
        thread.start()
        main = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        try:
            while True:
                try:
                    prepared, ready, error = out.get(timeout=self.timeout_s)
                except queue.Empty:
                    raise RuntimeError(f"the data prefetcher produced no batch in {self.timeout_s:.0f} s") from None
                if error is not None:
                    raise error
                if prepared is None:
                    return
                if main is not None:
                    main.wait_event(ready)
                    for t in prepared:  # made on the thread's stream, used and freed on the main one
                        t.record_stream(main)
                yield prepared
        finally:
            stop.set()
            thread.join()
