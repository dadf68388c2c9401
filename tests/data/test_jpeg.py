"""decode=hybrid's worker decoding: only timm's crop region decoded, and the same pixels as the whole image cut."""

import io
import random
import sys

import numpy as np
import pytest
import torch
from conftest import needs_fmnist
from PIL import Image
from test_transforms import real_images

from crossvit.data.jpeg import CropDecoder

pytestmark = needs_fmnist


def encoded(image: Image.Image, **save) -> torch.Tensor:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **save)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def jpeg_kinds() -> dict[str, torch.Tensor]:
    """The JPEGs an image folder holds: chroma subsampled 4:2:0 (most), 4:2:2 and 4:4:4, progressive, grey, sizes
    that are no multiple of the 16-pixel block, sharp colour noise (where chroma upsampling shows), and an EXIF
    orientation that timm's PIL decoder ignores."""
    photo, odd = real_images(2, seed=4)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (123, 157, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees to display"
    return {
        "420": encoded(photo, quality=90),
        "422": encoded(photo, quality=90, subsampling=1),
        "444": encoded(photo, quality=95, subsampling=0),
        "progressive": encoded(photo, quality=90, progressive=True),
        "grey": encoded(photo.convert("L"), quality=90),
        "odd_size": encoded(odd.resize((101, 67)), quality=90),
        "noise": encoded(noise, quality=85),
        "exif_rotated": encoded(noise, quality=90, exif=exif),
    }


@pytest.mark.skipif(sys.platform != "linux", reason="nvImageCodec has Linux wheels only; elsewhere torchvision decodes")
def test_region_decode_gives_the_whole_image_decode_cut_to_timms_box():
    files = jpeg_kinds()
    region, whole = CropDecoder(), CropDecoder(backend="torchvision")
    assert region.backend == "nvimgcodec"  # the lock installs it: the workers decode regions
    for name, data in files.items():
        for seed in range(12):  # boxes from 8% of the image to all of it, at every offset parity
            random.seed(seed)
            (ours,) = region([data])
            random.seed(seed)
            (reference,) = whole([data])
            assert ours.shape == reference.shape and ours.shape[2] == 3, (name, seed)
            assert torch.equal(ours, reference), (name, seed, (ours.float() - reference.float()).abs().max())
    assert region.whole_decodes == 0  # every file decoded as a region, none fell back to the whole image


def test_a_batch_draws_one_box_a_file_in_order_and_a_truncated_file_raises():
    files = list(jpeg_kinds().values())
    random.seed(7)
    batch = CropDecoder()(files)  # the boxes drawn first, then the regions decoded together
    random.seed(7)
    one_by_one = CropDecoder(backend="torchvision")(files)  # each box drawn after its file's decode
    assert [c.shape for c in batch] == [c.shape for c in one_by_one]
    assert all(torch.equal(a, b) for a, b in zip(batch, one_by_one))
    truncated = files[0][: len(files[0]) // 3]
    with pytest.raises(RuntimeError):  # collate_crops turns it into a ConfigError that says how to find the file
        CropDecoder()([files[1], truncated])
