"""data.decode=gpu's batched augmentation against timm's PIL transforms, the paper's reference.

Each op must produce timm's pixels for the same magnitude and sign, and every random choice must follow timm's
distribution; both are checked on real photographs, on the CPU (the same code runs on the GPU).
"""

import math
import random

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from conftest import needs_fmnist
from PIL import Image
from test_transforms import real_images
from timm.data.auto_augment import AugmentOp, rand_augment_transform
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import RandomResizedCropAndInterpolation

from crossvit.data.batch_augment import (
    RAND_INCREASING_OPS,
    BatchRandAugment,
    compile_batched,
    crop_boxes,
    crop_resize,
    crop_resize_flat,
    normalise_and_erase,
    random_erasing,
)

pytestmark = needs_fmnist
FILL = (124, 116, 104)  # timm's img_mean for ImageNet's mean colour
HPARAMS = dict(translate_const=108, img_mean=FILL, interpolation=Image.BICUBIC)  # what create_transform passes


@pytest.fixture(autouse=True)
def seeded():
    """The statistical comparisons draw from timm's transforms (Python's and NumPy's global generators) and from
    torch's: each test starts from the same state, so its tolerances are checked once, not re-rolled every run (at a
    few standard errors over many statistics, an unseeded run fails now and then with nothing broken)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def photos() -> tuple[list[Image.Image], torch.Tensor]:
    images = [im.resize((240, 240), Image.BICUBIC) for im in real_images(6, seed=3)]
    return images, torch.stack([TF.pil_to_tensor(im) for im in images]).float()


def timm_op(name: str, magnitude: float, negate: bool, image: Image.Image) -> torch.Tensor:
    op = AugmentOp(name, prob=1.0, magnitude=magnitude, hparams=HPARAMS)
    # timm negates a signed level when random.random() > 0.5: seed 0 draws 0.84, seed 1 draws 0.13.
    random.seed(0 if negate else 1)
    return TF.pil_to_tensor(op(image)).float()


@pytest.mark.parametrize("name", RAND_INCREASING_OPS)
def test_each_op_gives_timms_pixels(photos, name):
    images, x = photos
    augment = BatchRandAugment("rand-m9-mstd0.5-inc1", FILL)
    n = len(images)
    for magnitude in (3.0, 9.0, 10.0):
        for negate in (False, True):
            reference = torch.stack([timm_op(name, magnitude, negate, im) for im in images])
            op = torch.full((n,), RAND_INCREASING_OPS.index(name))
            sign = torch.full((n,), -1.0 if negate else 1.0)
            ours = augment.apply_layer(
                x.clone(), op, torch.ones(n, dtype=torch.bool), torch.full((n,), magnitude), sign
            )
            diff = (ours - reference).abs()
            # Within a grey level on average; resampling (rotate, shear, translate) differs at a few edge pixels.
            assert diff.mean() < 1.5 and (diff > 8).float().mean() < 0.02, (name, magnitude, negate, diff.mean())


def test_one_layer_applies_each_image_its_own_op(photos):
    images, x = photos
    augment = BatchRandAugment("rand-m9-mstd0.5-inc1", FILL)
    op = torch.tensor([0, 3, 4, 7, 10, 13])  # AutoContrast, Rotate, Posterize, Color, Sharpness, TranslateX
    applied = torch.tensor([True, True, True, True, True, False])
    m, sign = torch.full((6,), 9.0), torch.ones(6)
    ours = augment.apply_layer(x.clone(), op, applied, m, sign)
    for i in range(5):
        reference = timm_op(RAND_INCREASING_OPS[int(op[i])], 9.0, False, images[i])
        assert (ours[i] - reference).abs().mean() < 1.5, i
    assert torch.equal(ours[5], x[5])  # not applied: untouched


@pytest.mark.parametrize(("height", "width"), [(375, 500), (60, 600), (600, 60)])  # 2, 3: centre-crop fallbacks
def test_random_resized_crop_draws_timms_boxes(height, width):
    n = 4000
    generator = torch.Generator().manual_seed(0)
    ours = crop_boxes(torch.tensor([[height, width]] * n), generator=generator).long().tolist()
    image = Image.new("RGB", (width, height))
    theirs = [RandomResizedCropAndInterpolation.get_params(image, (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(n)]
    for boxes in (ours, theirs):
        assert all(min(t, left) >= 0 and t + h <= height and left + w <= width for t, left, h, w in boxes)

    def stats(boxes):
        area = np.array([h * w / (height * width) for _, _, h, w in boxes])
        log_aspect = np.array([math.log(w / h) for _, _, h, w in boxes])
        centre_x = np.array([(left + w / 2) / width for _, left, _, w in boxes])
        return np.array([area.mean(), area.std(), np.median(area), log_aspect.mean(), log_aspect.std(), centre_x.std()])

    # Means of 4,000 draws: a few standard errors apart at most.
    assert np.abs(stats(ours) - stats(theirs)).max() < 0.02, (stats(ours), stats(theirs))
    # The smallest crops (timm's scale starts at 8% of the image): the 1% quantile's standard error is ~0.0015.
    smallest = [np.quantile([h * w / (height * width) for _, _, h, w in b], 0.01) for b in (ours, theirs)]
    assert abs(smallest[0] - smallest[1]) < 0.006, smallest


def test_batched_crop_resize_gives_pils_pixels():
    """One gather pass for the whole batch against PIL's antialiased bicubic resize of each crop (timm's)."""
    images = [im.resize((500, 375), Image.BICUBIC) for im in real_images(16, seed=5)]
    boxes = crop_boxes(torch.tensor([[375, 500]] * len(images)), generator=torch.Generator().manual_seed(0))
    ours = crop_resize([TF.pil_to_tensor(im) for im in images], boxes, 240)
    reference = [
        im.resize((240, 240), Image.BICUBIC, box=(int(left), int(top), int(left + w), int(top + h)))
        for im, (top, left, h, w) in zip(images, boxes.tolist())
    ]
    diff = (ours - torch.stack([TF.pil_to_tensor(r) for r in reference]).float()).abs()
    assert diff.mean() < 1.0 and (diff > 8).float().mean() < 0.01, diff.mean()


@pytest.mark.parametrize("channels_last", [False, True])
def test_crop_resize_of_a_batch_larger_than_float32_counts_exactly(channels_last):
    """A batch of 256 ImageNet photographs holds ~35M pixels, past float32's exact integers (2**24): the offsets of
    each image and channel must still be exact. Three uniform 3001 x 2001 images, each channel its own value."""
    h, w, n = 3001, 2001, 3
    values = torch.arange(1, 3 * n + 1, dtype=torch.uint8).view(n, 3) * 20
    shape = (n, h, w, 3) if channels_last else (n, 3, h, w)
    view = values.view(n, 1, 1, 3) if channels_last else values.view(n, 3, 1, 1)
    flat = view.expand(shape).reshape(-1)
    hw = torch.tensor([[h, w]] * n)
    boxes = torch.tensor([[0.0, 0.0, h, w]] * n)
    out = crop_resize_flat(flat, hw, boxes, 8, channels_last=channels_last)
    assert out.shape == (n, 3, 8, 8)
    assert torch.equal(out, values.float().view(n, 3, 1, 1).expand(n, 3, 8, 8))


def test_rand_augment_choices_follow_timm():
    n = 20000
    ours = BatchRandAugment("rand-m9-mstd0.5-inc1", FILL)
    op, applied, magnitude, _ = ours.sample(n)
    counts = torch.bincount(op[applied], minlength=15).float() / applied.sum()
    # timm's own choices, recorded by its ops as they run.
    record = []
    ra = rand_augment_transform("rand-m9-mstd0.5-inc1", dict(HPARAMS))
    for k, timm_op_ in enumerate(ra.ops):
        timm_op_.aug_fn = lambda img, *args, k=k, **kw: record.append(k) or img
        timm_op_.level_fn = lambda m, hp, k=k: (record.append(m),)
    image = Image.new("RGB", (8, 8))
    for _ in range(n // 2):
        ra(image)
    ops_timm, mags_timm = record[1::2], np.array(record[0::2])
    assert len(ra.ops) == len(ours.ops) == 15
    assert abs(len(ops_timm) / n - float(applied.float().mean())) < 0.02  # each layer applies with p=0.5
    timm_counts = torch.bincount(torch.tensor(ops_timm), minlength=15).float() / len(ops_timm)
    assert (counts - timm_counts).abs().max() < 0.01  # uniform over the 15 ops, with replacement
    ours_m = magnitude[applied].numpy()
    assert abs(ours_m.mean() - mags_timm.mean()) < 0.02 and abs(ours_m.std() - mags_timm.std()) < 0.02
    assert abs((ours_m == 10).mean() - (mags_timm == 10).mean()) < 0.01  # clipped at 10, ~2.3%


def test_random_erasing_draws_timms_boxes():
    n, size = 3000, 240
    generator = torch.Generator().manual_seed(0)
    ours = random_erasing(torch.zeros(n, 1, size, size), 0.25, generator=generator).ne(0).float().mean((1, 2, 3))
    erase = RandomErasing(probability=0.25, mode="pixel", device="cpu")
    theirs = torch.stack([erase(torch.zeros(1, size, size)) for _ in range(n)]).ne(0).float().mean((1, 2, 3))
    for fraction in (ours, theirs):
        assert fraction.max() <= 1 / 3 + 0.01
    assert abs(ours.gt(0).float().mean() - theirs.gt(0).float().mean()) < 0.03  # p = 0.25
    assert abs(ours[ours > 0].mean() - theirs[theirs > 0].mean()) < 0.02  # mean erased area, ~0.18


def test_a_compiled_pass_serves_every_number_of_images():
    """On a GPU each pass is compiled once, in the main thread before the prefetcher's starts: a batch or a chosen set
    of another size must not compile again (in that thread), while the images' size stays a constant of the kernels.
    Dynamo's tracing alone (backend="eager") decides this, so it is checked here without a GPU."""
    kernel = compile_batched(normalise_and_erase, backend="eager")
    mean, std = torch.full((1, 3, 1, 1), 100.0), torch.full((1, 3, 1, 1), 50.0)

    def args(n: int, size: int = 8) -> tuple[torch.Tensor, ...]:
        boxes = torch.tensor([[1.0, 2.0, 5.0, 7.0]] * n)
        boxes[0] = 0  # the first image not erased
        return torch.rand(n, 3, size, size) * 255, mean, std, boxes, torch.randn(n, 3, size, size)

    kernel(*args(6))  # the warm-up's size
    # dynamo's own patch: monkeypatch's undo leaves this key unreadable in torch 2.14, failing any later recompile
    with torch._dynamo.config.patch(error_on_recompile=True):
        for n in (2, 256, 37):
            a = args(n)
            assert torch.equal(kernel(*a), normalise_and_erase(*a))
        with pytest.raises(torch._dynamo.exc.RecompileError):  # another image size is another kernel
            kernel(*args(4, size=12))


def test_a_compiled_pass_runs_eagerly_while_another_thread_traces():
    """torch 2.11 keeps FX's tracing flag once a process, so while the training thread compiles the model dynamo
    refuses the prefetcher's compiled passes (a 2-GPU run died of it): such a batch runs eagerly instead. The flag is
    set here as the prefetcher's thread sees it then; other errors still reach the caller."""
    from torch.fx._symbolic_trace import _is_fx_tracing_context

    kernel = compile_batched(normalise_and_erase, backend="eager")
    mean, std = torch.full((1, 3, 1, 1), 100.0), torch.full((1, 3, 1, 1), 50.0)
    a = torch.rand(4, 3, 8, 8) * 255, mean, std, torch.tensor([[1.0, 2.0, 5.0, 7.0]] * 4), torch.randn(4, 3, 8, 8)
    with _is_fx_tracing_context(True):
        assert torch.equal(kernel(*a), normalise_and_erase(*a))

    def fails(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("not dynamo's refusal")

    with pytest.raises(RuntimeError, match="not dynamo's refusal"):
        compile_batched(fails, backend="eager")(torch.zeros(2))


def test_flip_rate_and_whole_pipeline(tmp_path):
    from crossvit.data import ImageFolderDataModule

    # One image whose left half is dark: a flipped crop is brighter on the left.
    pixels = np.zeros((300, 400, 3), np.uint8)
    pixels[:, 200:] = 230
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a").mkdir(parents=True)
    Image.fromarray(pixels).save(tmp_path / "train" / "a" / "0.jpg")
    Image.fromarray(pixels).save(tmp_path / "val" / "a" / "0.jpg")
    module = ImageFolderDataModule(
        root=str(tmp_path),
        img_size=32,
        num_classes=1,
        decode="gpu",
        auto_augment=None,
        color_jitter=None,
        re_prob=0,
        batch_size=1,
    )
    module.setup("fit")
    batch = module.train_dataloader().collate_fn([module.train_set[0]] * 800)
    x, _ = module.prepare(batch, torch.device("cpu"), train=True)
    left, right = x[..., :16].mean((1, 2, 3)), x[..., 16:].mean((1, 2, 3))
    decided = (left - right).abs() > 0.5  # crops of one half only cannot tell
    flipped = (left > right)[decided].float().mean()
    assert decided.sum() > 300 and abs(flipped - 0.5) < 0.08


def test_gpu_decoding_path_through_worker_processes(tmp_path):
    """Workers hand over bytes (three tensors a batch); a PNG named .jpg is converted to JPEG in the worker."""
    from crossvit.data import ImageFolderDataModule

    for split, offset in (("train", 0), ("val", 100)):
        for i, img in enumerate(real_images(24, seed=offset)):
            folder = tmp_path / split / f"c{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{i}.jpg", format="PNG" if i == 5 else "JPEG", quality=90)
    module = ImageFolderDataModule(
        root=str(tmp_path), img_size=48, num_classes=2, decode="gpu", batch_size=8, num_workers=2
    )
    module.setup("fit")
    train = [module.prepare(b, torch.device("cpu"), train=True)[0] for b in module.train_dataloader()]
    val = [module.evaluate(module.decode_batch(d, n, torch.device("cpu"))) for d, n, _ in module.val_dataloader()]
    assert len(train) == 3 and len(val) == 3
    for x in train + val:
        assert x.shape == (8, 3, 48, 48) and torch.isfinite(x).all()
    # Evaluation is deterministic and matches timm's eval transform (resize 48/0.875, centre crop) on the CPU path.
    cpu = ImageFolderDataModule(root=str(tmp_path), img_size=48, num_classes=2, batch_size=8, num_workers=0)
    cpu.setup("fit")
    reference = torch.cat([x for x, _ in cpu.val_dataloader()])
    assert (torch.cat(val) - reference).abs().mean() < 0.05  # normalised units: about 3 grey levels of 255


def test_prefetcher_yields_the_synchronous_batches_and_stops_cleanly(tmp_path):
    """The threaded prefetcher (on the CPU here; a side CUDA stream on a GPU) against the plain loop, same seed."""
    import threading

    from crossvit.data import ImageFolderDataModule
    from crossvit.data.image_folder import Prefetcher

    for i, img in enumerate(real_images(48, seed=7)):
        for split in ("train", "val"):
            (tmp_path / split / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
            img.save(tmp_path / split / f"c{i % 2}" / f"{i}.jpg", quality=90)
    module = ImageFolderDataModule(
        root=str(tmp_path), img_size=32, num_classes=2, decode="gpu", batch_size=8, num_workers=2
    )
    module.setup("fit")
    cpu = torch.device("cpu")

    def epoch(prefetch: bool, stop_after: int | None = None) -> list[torch.Tensor]:
        torch.manual_seed(0)
        loader = module.train_dataloader()
        loader.sampler.set_epoch(3)
        if prefetch:
            source = Prefetcher(loader, lambda b, g: module.prepare(b, cpu, True, g), cpu, timeout_s=60)
        else:  # the generator the prefetcher seeds from the global one
            generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
            source = (module.prepare(b, cpu, True, generator) for b in loader)
        out = []
        for x, _ in source:
            out.append(x)
            if len(out) == stop_after:
                break
        del source
        return out

    plain, prefetched = epoch(False), epoch(True)
    assert len(prefetched) == len(plain) == 6
    assert all(torch.equal(a, b) for a, b in zip(plain, prefetched))
    assert len(epoch(True, stop_after=2)) == 2  # stopping early ends the thread
    assert len(epoch(True, stop_after=4)) == 4  # also when the thread has finished and its queue is full
    assert not [t for t in threading.enumerate() if t.name == "prefetcher"]


def test_hybrid_path_cuts_timms_boxes_in_the_workers_and_finishes_on_the_device(tmp_path):
    """decode=hybrid: the workers decode and cut timm's random box (the same draws as timm's own crop); the device
    resizes. Without flip, RandAugment and erasing, its batches are decode=cpu's (timm's whole transform) for the same
    seed, up to the resize's interpolation; with the recipe, the device part changes the pixels."""
    from crossvit.data import ImageFolderDataModule

    for i, img in enumerate(real_images(32, seed=11)):
        for split in ("train", "val"):
            (tmp_path / split / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
            img.save(tmp_path / split / f"c{i % 2}" / f"{i}.jpg", quality=90)
    cpu = torch.device("cpu")

    def first_epoch(decode: str, **recipe) -> tuple[torch.Tensor, torch.Tensor]:
        module = ImageFolderDataModule(
            root=str(tmp_path), img_size=48, num_classes=2, batch_size=8, num_workers=2, decode=decode, **recipe
        )
        module.setup("fit")
        torch.manual_seed(0)  # the workers' seeds, and the sampler's order
        batches = [module.prepare(b, cpu, True) if decode == "hybrid" else b for b in module.train_dataloader()]
        return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])

    plain = dict(auto_augment=None, color_jitter=None, re_prob=0.0, hflip=0.0)
    (timm_x, timm_y), (ours_x, ours_y) = first_epoch("cpu", **plain), first_epoch("hybrid", **plain)
    assert ours_x.shape == timm_x.shape == (32, 3, 48, 48) and torch.equal(ours_y, timm_y)
    per_image = (ours_x - timm_x).abs().mean((1, 2, 3))  # normalised units: 0.05 is about 3 grey levels of 255
    assert per_image.max() < 0.05, per_image
    assert (ours_x - timm_x.roll(1, 0)).abs().mean((1, 2, 3)).min() > 0.1  # another image's crop is far off
    recipe_x, _ = first_epoch("hybrid")  # flip, RandAugment rand-m9-mstd0.5-inc1 and erasing, on the "device"
    changed = (recipe_x - ours_x).abs().amax((1, 2, 3)) > 0.1
    assert torch.isfinite(recipe_x).all() and 0.3 < changed.float().mean() < 1.0


def test_decode_auto_takes_hybrid_on_a_gpu_unless_the_recipe_needs_timms_cpu_transform(tmp_path):
    from types import SimpleNamespace

    from crossvit.data import ImageFolderDataModule
    from crossvit.data.image_folder import collate_crops
    from crossvit.errors import ConfigError

    for split in ("train", "val"):
        for i, img in enumerate(real_images(4, seed=5)):
            (tmp_path / split / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
            img.save(tmp_path / split / f"c{i % 2}" / f"{i}.jpg")

    def chosen(device: str, **recipe) -> ImageFolderDataModule:
        module = ImageFolderDataModule(root=str(tmp_path), img_size=32, num_classes=2, batch_size=2, **recipe)
        assert module.decode is None  # not before the device is known
        # Only what setup reads of the trainer: where training runs, and how many processes share the data.
        module.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), world_size=1)
        module.setup("fit")
        return module

    gpu = chosen("cuda")
    assert gpu.decode == "hybrid" and gpu.train_collate is collate_crops
    assert gpu.rand_augment is not None  # the recipe's RandAugment, on the device
    assert chosen("cpu").decode == "cpu"
    assert chosen("cuda", re_mode="const").decode == "cpu"  # erasing with a constant: timm's transform only
    assert chosen("cuda", auto_augment=None).decode == "cpu"  # colour jitter instead of RandAugment: likewise
    with pytest.raises(ConfigError, match="data.decode=hybrid implements RandAugment, not colour jitter"):
        ImageFolderDataModule(root=str(tmp_path), img_size=32, decode="hybrid", auto_augment=None)
    with pytest.raises(ConfigError, match="data.re_mode=const"):
        ImageFolderDataModule(root=str(tmp_path), img_size=32, decode="hybrid", re_mode="const")


def test_dali_crops_follow_timms_random_resized_crop(tmp_path):
    """decode=dali: DALI's region decoder (its CPU backend here) draws the crop sizes timm's RandomResizedCrop would
    on the same image: two-sample Kolmogorov-Smirnov on the area fraction and the log aspect ratio."""
    from scipy.stats import ks_2samp

    from crossvit.data.dali import DaliCropDecoder
    from crossvit.data.image_folder import collate_encoded, read_encoded

    image = real_images(1, seed=9)[0].resize((400, 300), Image.BICUBIC)
    image.save(tmp_path / "photo.jpg", quality=95)
    data, lengths, _ = collate_encoded([(read_encoded(str(tmp_path / "photo.jpg")), 0)] * 256)
    decoder = DaliCropDecoder(None, 256, torch.device("cpu"), seed=1)
    ours = [tuple(c.shape[:2]) for _ in range(4) for c in decoder(data, lengths)]  # (h, w) of 1,024 crops
    theirs = [RandomResizedCropAndInterpolation.get_params(image, (0.08, 1.0), (3 / 4, 4 / 3))[2:] for _ in range(4000)]

    def area(boxes):
        return [h * w / (300 * 400) for h, w in boxes]

    def log_aspect(boxes):
        return [math.log(w / h) for h, w in boxes]

    assert ks_2samp(area(ours), area(theirs)).pvalue > 1e-3
    assert ks_2samp(log_aspect(ours), log_aspect(theirs)).pvalue > 1e-3


def colour_folder(root, n: int = 32) -> None:
    """n JPEGs of assorted sizes in 2 classes, each of a colour of its own that any crop of it keeps."""
    rng = np.random.default_rng(13)
    for i in range(n):
        colour = np.array([(i * 8) % 256, 255 - i * 7, (i * 37) % 256])
        pixels = (colour + rng.normal(0, 4, (int(rng.integers(60, 200)), int(rng.integers(60, 200)), 3))).clip(0, 255)
        for split in ("train", "val"):
            (root / split / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.astype(np.uint8)).save(root / split / f"c{i % 2}" / f"{i}.jpg", quality=90)


@pytest.mark.parametrize("share", [1.0, 0.4])
def test_dali_path_reads_in_the_samplers_order_and_augments_on_the_device(tmp_path, share):
    """decode=dali: the workers read the files in the sampler's order (the labels are decode=cpu's for the same
    seed), DALI decodes and resizes the crops, and the recipe's augmentation runs after it. With data.dali_share=0.4
    the workers decode the first 5 files of each batch of 8 and DALI the last 3: each crop still sits with its
    file's label."""
    from crossvit.data import ImageFolderDataModule

    colour_folder(tmp_path)
    cpu = torch.device("cpu")

    def first_epoch(decode: str, **recipe) -> tuple[torch.Tensor, torch.Tensor]:
        dali = dict(dali_share=share) if decode == "dali" else {}
        module = ImageFolderDataModule(
            root=str(tmp_path), img_size=48, num_classes=2, batch_size=8, num_workers=2, decode=decode, **recipe, **dali
        )
        module.setup("fit")
        torch.manual_seed(0)
        batches = [module.prepare(b, cpu, True) if decode == "dali" else b for b in module.train_dataloader()]
        return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])

    plain = dict(auto_augment=None, color_jitter=None, re_prob=0.0, hflip=0.0)
    (timm_x, timm_y), (ours_x, ours_y) = first_epoch("cpu", **plain), first_epoch("dali", **plain)
    assert ours_x.shape == timm_x.shape == (32, 3, 48, 48) and torch.equal(ours_y, timm_y)
    # Each output is a crop of the file the sampler chose there: its colour is nearest timm's crop of that file.
    nearest = torch.cdist(ours_x.mean((2, 3)), timm_x.mean((2, 3))).argmin(1)
    assert torch.equal(nearest, torch.arange(32))
    recipe_x, recipe_y = first_epoch("dali")  # flip, RandAugment rand-m9-mstd0.5-inc1 and erasing
    assert torch.equal(recipe_y, timm_y) and torch.isfinite(recipe_x).all()
    assert (recipe_x - ours_x).abs().amax((1, 2, 3)).gt(0.1).float().mean() > 0.3


def test_a_dali_share_near_one_can_leave_the_workers_no_file(tmp_path):
    """data.dali_share=0.99 on batches of 8: DALI decodes all 8 (at least one file always goes to DALI), the workers
    none, and the batch comes out whole."""
    from crossvit.data import ImageFolderDataModule

    colour_folder(tmp_path, n=8)
    module = ImageFolderDataModule(
        root=str(tmp_path), img_size=48, num_classes=2, batch_size=8, num_workers=0, decode="dali", dali_share=0.99
    )
    module.setup("fit")
    (batch,) = list(module.train_dataloader())
    data, lengths, flat, hw, y = batch
    assert len(lengths) == 8 and len(hw) == 0 and flat.numel() == 0
    x, labels = module.prepare(batch, torch.device("cpu"), True)
    assert x.shape == (8, 3, 48, 48) and torch.equal(labels, y)


def test_dali_errors_are_one_line_naming_the_fix(monkeypatch):
    """decode=dali without DALI installed, and a file DALI cannot decode: one line each, naming what to do."""
    import sys

    from crossvit.data import ImageFolderDataModule
    from crossvit.data.dali import DaliCropDecoder
    from crossvit.errors import ConfigError

    decoder = DaliCropDecoder(32, 2, torch.device("cpu"), seed=0)
    garbage = torch.randint(0, 255, (200,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=r"cannot be decoded by DALI \(nvImageCodec failure.*data.skip_corrupt=true"):
        decoder(garbage, torch.tensor([100, 100]))
    for share in (0, 1.5):
        with pytest.raises(ConfigError, match=rf"data.dali_share={share}: .*above 0 and at most 1.*data.decode=hybrid"):
            ImageFolderDataModule(root="/nowhere", img_size=32, decode="dali", dali_share=share)
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # as if not installed: said when the module is made
    with pytest.raises(ConfigError, match="needs NVIDIA DALI .*pip install nvidia-dali-cuda130.*data.decode=hybrid"):
        ImageFolderDataModule(root="/nowhere", img_size=32, decode="dali")


@pytest.mark.parametrize("share", [1.0, 0.4])
def test_dali_prefetched_stream_decodes_ahead_and_keeps_each_crop_with_its_label(tmp_path, share):
    """On a GPU the prefetcher's thread takes DALI's crops one batch ahead (DaliBatches): the same batches as DALI a
    batch at a time for the same seed; and after an epoch stopped early, with a batch still decoding, each crop
    is still its own file's and its label's."""
    from crossvit.data import ImageFolderDataModule

    colour_folder(tmp_path)
    cpu = torch.device("cpu")
    plain = dict(auto_augment=None, color_jitter=None, re_prob=0.0, hflip=0.0)

    def module_and_loader():
        module = ImageFolderDataModule(
            root=str(tmp_path),
            img_size=48,
            num_classes=2,
            batch_size=8,
            num_workers=0,
            decode="dali",
            dali_share=share,
            **plain,
        )
        module.setup("fit")
        torch.manual_seed(0)
        random.seed(0)  # the workers' crop boxes (timm's draws; in this process, with no worker processes)
        loader = module.train_dataloader()
        loader.sampler.set_epoch(1)
        return module, loader

    module, loader = module_and_loader()
    one_by_one = [module.prepare(b, cpu, True) for b in loader]
    module, loader = module_and_loader()
    prefetched = module.prefetched(loader, cpu)
    stopped = []
    for batch in prefetched:
        stopped.append(batch)
        if len(stopped) == 2:  # the third batch is decoding now
            break
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(stopped, one_by_one))
    again = list(prefetched)
    assert len(again) == len(one_by_one) == 4
    x, y = torch.cat([b[0] for b in again]), torch.cat([b[1] for b in again])
    reference_x, reference_y = torch.cat([b[0] for b in one_by_one]), torch.cat([b[1] for b in one_by_one])
    assert torch.equal(y, reference_y) and not torch.equal(x, reference_x)  # new crops, the same files in order
    assert torch.equal(torch.cdist(x.mean((2, 3)), reference_x.mean((2, 3))).argmin(1), torch.arange(32))


@pytest.mark.parametrize("decode", ["hybrid", "dali"])
def test_stream_priority_reaches_the_prefetcher(tmp_path, decode):
    """data.stream_priority is the CUDA priority of the prefetcher's stream, where the data path's kernels run (what
    it does to the GPU's ordering is measured in docs/benchmarks.md, not here)."""
    from crossvit.data import ImageFolderDataModule

    colour_folder(tmp_path)
    module = ImageFolderDataModule(
        root=str(tmp_path), img_size=48, num_classes=2, batch_size=8, num_workers=0, decode=decode, stream_priority=-3
    )
    module.setup("fit")
    assert module.prefetched(module.train_dataloader(), torch.device("cpu")).priority == -3
