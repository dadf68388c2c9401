"""decode=hybrid's decoding in the workers: timm's random crop box, drawn from the JPEG's header, then only that
region decoded.

nvImageCodec's libjpeg-turbo decoder gives a region's pixels exactly as torchvision's whole-image decode cut to the
same box (tests/data/test_jpeg.py), in less time: 1.18x the images a core decodes on the lent H200 hosts, 1.20-1.23x
a worker's batches on this project's CPU machine, +8% for crossvit_9's JPEG training in the loop
(docs/benchmarks.md). Where nvImageCodec is not installed (its wheels are Linux-only), or cannot read a file's
header, the whole image is decoded with torchvision and cut.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np
import torch
from timm.data.transforms import RandomResizedCropAndInterpolation
from torchvision.io import ImageReadMode, decode_jpeg

BACKENDS = ("nvimgcodec", "torchvision")


@contextmanager
def _quiet_stderr():
    """nvImageCodec's import prints red errors for codecs it cannot load (JPEG 2000, TIFF) that no JPEG needs."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@cache
def _nvimgcodec() -> Any | None:
    try:
        with _quiet_stderr():
            from nvidia import nvimgcodec
    except ImportError:
        return None
    return nvimgcodec


@cache
def _region_decoder(pid: int) -> Any:
    """One single-threaded CPU decoder a process (`pid`: its thread pool does not survive a DataLoader's fork)."""
    n = _nvimgcodec()
    return n.Decoder(
        device_id=n.NVIMGCODEC_DEVICE_CPU_ONLY, max_num_cpu_threads=1, backends=[n.Backend(n.BackendKind.CPU_ONLY)]
    )


def default_backend() -> str:
    return "nvimgcodec" if _nvimgcodec() is not None else "torchvision"


def crop_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """timm's RandomResizedCropAndInterpolation box (top, left, h, w) for an image of this size: the same draws
    from Python's `random`, without the image."""
    return RandomResizedCropAndInterpolation.get_params(torch.empty(1, 1, 1).expand(3, height, width), scale, ratio)


class CropDecoder:
    """Encoded JPEGs (uint8 [N] each) -> timm's random crop of each, uint8 [h, w, 3], not resized (the device
    resizes the batch). `backend`: nvimgcodec (region decoding) or torchvision (whole images, then cut); both draw
    the same boxes from `random` and give the same pixels."""

    def __init__(
        self,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        backend: str | None = None,
    ) -> None:
        self.scale, self.ratio = scale, ratio
        self.whole_decodes = 0  # files decoded whole and then cut
        self.backend = backend or default_backend()
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend}: choose one of {BACKENDS}")

    def __call__(self, files: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.backend == "torchvision":
            return [self._whole_then_cut(f) for f in files]
        n = _nvimgcodec()
        regions, boxes = [], []
        for f in files:
            try:
                stream = n.CodeStream(f.numpy())
                height, width = stream.height, stream.width
            except Exception:  # a header it cannot read: torchvision decodes the file, or names the error
                boxes.append(None)
                continue
            boxes.append(crop_box(height, width, self.scale, self.ratio))
            top, left, h, w = boxes[-1]
            regions.append(stream.get_sub_code_stream(region=n.Region(top, left, top + h, left + w)))
        # torchvision (and PIL, timm's decoder) ignore EXIF orientation; so must the region decode.
        params = n.DecodeParams(apply_exif_orientation=False)
        images = iter(_region_decoder(os.getpid()).decode(regions, params=params) if regions else [])
        crops = []
        for f, box in zip(files, boxes):
            image = next(images) if box is not None else None
            # What it could not decode is cut from torchvision's decode, with the box already drawn for it.
            crops.append(torch.from_numpy(np.asarray(image)) if image is not None else self._whole_then_cut(f, box))
        return crops

    def _whole_then_cut(self, data: torch.Tensor, box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        self.whole_decodes += 1
        image = decode_jpeg(data, mode=ImageReadMode.RGB)  # [3, H, W], a view of HWC
        top, left, h, w = box or crop_box(*image.shape[1:], self.scale, self.ratio)
        return image.permute(1, 2, 0)[top : top + h, left : left + w]
