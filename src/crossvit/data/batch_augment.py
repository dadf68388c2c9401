"""The paper's (timm's) training augmentation on whole batches of decoded images, on whatever device holds them.

Each image still gets its own random parameters, drawn from the distributions timm's PIL transforms draw from
(`create_transform(is_training=True, auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, re_mode="pixel")`):
RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) + horizontal flip, RandAugment (2 layers of 15 ops, each applied
with p=0.5 at magnitude ~N(9, 0.5) clipped to [0, 10]), normalisation, then random erasing of one box with noise.
Parameters are drawn on the host (a few hundred numbers a batch, no device sync); pixels never leave the device.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF


def crop_box(height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """timm's RandomResizedCropAndInterpolation.get_params: (top, left, h, w), 10 tries, then a centre crop."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = random.uniform(*scale) * area
        aspect = math.exp(random.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return random.randint(0, height - h), random.randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def crop_resize(images: list[torch.Tensor], boxes: torch.Tensor, size: int, taps: int = 2) -> torch.Tensor:
    """Each uint8 [C, H, W] image's box (top, left, height, width; floats) resampled to size x size, as one batch.

    One pass for the whole batch, whatever the images' sizes (a per-image resize costs a few kernel launches an
    image, which on a GPU outlasts the arithmetic): bilinear samples on a `taps` x `taps` grid inside each output
    pixel, averaged, which stands in for PIL's antialiased bicubic when a crop shrinks. Returns float 0-255.
    """
    device = images[0].device
    c = images[0].shape[0]
    flat = torch.cat([img.reshape(-1) for img in images])
    hw = torch.tensor([img.shape[-2:] for img in images], device=device, dtype=torch.float32)
    numel = torch.tensor([img.numel() for img in images], device=device)
    start = (torch.cumsum(numel, 0) - numel).view(-1, 1, 1, 1)
    boxes = boxes.to(device=device, dtype=torch.float32)
    # Sample positions: pixel centres of the output grid, subdivided into taps x taps, in input pixel coordinates.
    steps = (torch.arange(size * taps, device=device, dtype=torch.float32) + 0.5) / (size * taps)
    ys = (boxes[:, :1] + steps * boxes[:, 2:3] - 0.5).clamp(min=0).minimum(hw[:, :1] - 1)  # [B, S*taps]
    xs = (boxes[:, 1:2] + steps * boxes[:, 3:4] - 0.5).clamp(min=0).minimum(hw[:, 1:] - 1)
    y0, x0 = ys.floor(), xs.floor()
    wy, wx = (ys - y0).view(len(images), 1, -1, 1), (xs - x0).view(len(images), 1, 1, -1)
    y1, x1 = (y0 + 1).minimum(hw[:, :1] - 1), (x0 + 1).minimum(hw[:, 1:] - 1)
    width = hw[:, 1:].long().view(-1, 1, 1, 1)
    plane = (hw[:, :1] * hw[:, 1:]).long().view(-1, 1, 1, 1) * torch.arange(c, device=device).view(1, c, 1, 1)
    base = start + plane

    def at(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        rows = y.long().view(len(images), 1, -1, 1) * width
        return flat[base + rows + x.long().view(len(images), 1, 1, -1)].float()

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    out = top * (1 - wy) + bottom * wy
    return F.avg_pool2d(out, taps) if taps > 1 else out


def random_resized_crop(images: list[torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [C, H, W] images of any sizes -> float [B, C, size, size] (0-255) crops with timm's random boxes."""
    boxes = torch.tensor([crop_box(img.shape[-2], img.shape[-1]) for img in images], dtype=torch.float32)
    return crop_resize(images, boxes, size), boxes


def resize_center_crop(images: list[torch.Tensor], size: int, crop_pct: float) -> torch.Tensor:
    """Evaluation: the short side to size / crop_pct, then the centre size x size (timm's eval transform)."""
    shapes = torch.tensor([img.shape[-2:] for img in images], dtype=torch.float32)
    side = size / (math.floor(size / crop_pct) / shapes.min(1).values)  # the crop's side in input pixels
    top, left = (shapes[:, 0] - side) / 2, (shapes[:, 1] - side) / 2
    return crop_resize(images, torch.stack([top, left, side, side], 1), size)


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """PIL's L conversion (ITU-R 601-2 luma)."""
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: other + factor * (x - other), clipped to 0-255."""
    return (other + _per_image(factor) * (x - other)).clamp_(0, 255)


def _affine(x: torch.Tensor, matrices: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Warp each image by its 2x3 pixel-space matrix (output pixel -> input pixel, as PIL's Image.transform)."""
    b, _, h, w = x.shape
    # Pixel centres p map to normalised n = (2p + 1) / size - 1 (align_corners=False).
    to_norm = torch.tensor([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]], device=x.device)
    from_norm = torch.linalg.inv(to_norm)
    full = torch.cat([matrices, torch.tensor([[[0, 0, 1.0]]], device=x.device).expand(b, 1, 3)], dim=1)
    theta = (to_norm @ full @ from_norm)[:, :2]
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    # A ones channel marks what came from inside the image; the rest takes the fill colour (the dataset mean).
    warped = F.grid_sample(torch.cat([x, torch.ones_like(x[:, :1])], 1), grid, "bicubic", "zeros", False)
    inside = warped[:, -1:].clamp(0, 1)
    return (warped[:, :-1] * inside + fill.view(1, -1, 1, 1) * (1 - inside)).clamp_(0, 255)


def _signed(m: torch.Tensor, sign: torch.Tensor, scale: float) -> torch.Tensor:
    return m / 10 * scale * sign


def auto_contrast(x, m, sign, fill):
    lo = x.amin((2, 3), keepdim=True)
    hi = x.amax((2, 3), keepdim=True)
    scale = torch.where(hi > lo, 255 / (hi - lo).clamp(min=1e-3), torch.ones_like(hi))
    return torch.where(hi > lo, (x - lo) * scale, x).clamp_(0, 255)


def equalize(x, m, sign, fill):
    return TF.equalize(x.round().to(torch.uint8)).float()


def invert(x, m, sign, fill):
    return 255 - x


def rotate(x, m, sign, fill):
    a = torch.deg2rad(_signed(m, sign, 30.0))
    b, _, h, w = x.shape
    cx, cy = w / 2, h / 2
    cos, sin = torch.cos(a), torch.sin(a)
    # PIL's rotate (counter-clockwise by a) as an output -> input map about the centre.
    rows = [
        torch.stack([cos, -sin, cx - cos * cx + sin * cy], -1),
        torch.stack([sin, cos, cy - sin * cx - cos * cy], -1),
    ]
    return _affine(x, torch.stack(rows, 1), fill)


def _shear_or_translate(x, row: int, col: int, value: torch.Tensor, fill):
    matrices = torch.eye(2, 3, device=x.device).repeat(x.shape[0], 1, 1)
    matrices[:, row, col] = value
    return _affine(x, matrices, fill)


def shear_x(x, m, sign, fill):
    return _shear_or_translate(x, 0, 1, _signed(m, sign, 0.3), fill)


def shear_y(x, m, sign, fill):
    return _shear_or_translate(x, 1, 0, _signed(m, sign, 0.3), fill)


def translate_x(x, m, sign, fill):
    return _shear_or_translate(x, 0, 2, _signed(m, sign, 0.45) * x.shape[-1], fill)


def translate_y(x, m, sign, fill):
    return _shear_or_translate(x, 1, 2, _signed(m, sign, 0.45) * x.shape[-2], fill)


def posterize(x, m, sign, fill):
    # Keep 4 down to 0 high bits; 0 bits is a black image, as timm means it (Pillow 13 refuses that level).
    bits = 4 - (m / 10 * 4).floor()
    mask = (256 - 2 ** (8 - bits)).to(torch.int32)
    return (x.round().to(torch.int32) & _per_image(mask)).float()


def solarize(x, m, sign, fill):
    threshold = 256 - (m / 10 * 256).floor()
    return torch.where(x.round() >= _per_image(threshold), 255 - x, x)


def solarize_add(x, m, sign, fill):
    add = (m / 10 * 110).floor().clamp(max=128)
    return torch.where(x.round() < 128, (x + _per_image(add)).clamp(max=255), x)


def _enhance_factor(m, sign):
    return (1 + _signed(m, sign, 0.9)).clamp(min=0.1)


def color(x, m, sign, fill):
    return _blend(x, _gray(x), _enhance_factor(m, sign))


def contrast(x, m, sign, fill):
    mean = _gray(x).mean((1, 2, 3), keepdim=True).round()
    return _blend(x, mean, _enhance_factor(m, sign))


def brightness(x, m, sign, fill):
    return _blend(x, torch.zeros_like(x), _enhance_factor(m, sign))


def sharpness(x, m, sign, fill):
    # PIL's SMOOTH filter (centre weight 5 of 13); border pixels keep their values.
    kernel = torch.ones(3, 3, device=x.device)
    kernel[1, 1] = 5
    kernel = (kernel / 13).expand(x.shape[1], 1, 3, 3)
    smooth = x.clone()
    smooth[:, :, 1:-1, 1:-1] = F.conv2d(x, kernel, groups=x.shape[1]).round()
    return _blend(x, smooth, _enhance_factor(m, sign))


# timm's _RAND_INCREASING_TRANSFORMS, in its order.
RAND_INCREASING_OPS = {
    "AutoContrast": auto_contrast,
    "Equalize": equalize,
    "Invert": invert,
    "Rotate": rotate,
    "PosterizeIncreasing": posterize,
    "SolarizeIncreasing": solarize,
    "SolarizeAdd": solarize_add,
    "ColorIncreasing": color,
    "ContrastIncreasing": contrast,
    "BrightnessIncreasing": brightness,
    "SharpnessIncreasing": sharpness,
    "ShearX": shear_x,
    "ShearY": shear_y,
    "TranslateXRel": translate_x,
    "TranslateYRel": translate_y,
}


def parse_rand_augment(config: str) -> dict[str, float]:
    """timm's config string, e.g. rand-m9-mstd0.5-inc1 -> {m: 9, n: 2, mstd: 0.5, p: 0.5}."""
    name, *sections = config.split("-")
    params = {"m": 10.0, "n": 2.0, "mstd": 0.0, "p": 0.5, "inc": 0.0}
    for section in sections:
        key = next((k for k in ("mstd", "inc", "m", "n", "p") if section.startswith(k)), None)
        if name != "rand" or key is None:
            raise ValueError(
                f"{config!r}: the GPU path implements timm's rand-... RandAugment only (m, n, mstd, p, inc)"
            )
        params[key] = float(section[len(key) :])
    if not params["inc"]:
        raise ValueError(f"{config!r}: the GPU path implements the increasing ops (inc1), the paper's choice")
    return params


class BatchRandAugment:
    """timm's RandAugment with per-image choices, magnitudes and signs, applied one op at a time to its images."""

    def __init__(self, config: str = "rand-m9-mstd0.5-inc1", fill: tuple[float, ...] = (124, 116, 104)) -> None:
        p = parse_rand_augment(config)
        self.magnitude, self.magnitude_std, self.prob, self.layers = p["m"], p["mstd"], p["p"], int(p["n"])
        self.ops = list(RAND_INCREASING_OPS.values())
        self.fill = torch.tensor(fill, dtype=torch.float32)

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per layer and image: op index, applied?, magnitude, sign (+1/-1), drawn on the host."""
        shape = (self.layers, batch)
        op = torch.randint(len(self.ops), shape)  # with replacement, as timm without choice weights
        applied = torch.rand(shape) < self.prob
        magnitude = (self.magnitude + self.magnitude_std * torch.randn(shape)).clamp(0, 10)
        sign = torch.where(torch.rand(shape) < 0.5, -1.0, 1.0)
        return op, applied, magnitude, sign

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        ops, applied, magnitude, sign = self.sample(x.shape[0])
        fill = self.fill.to(x.device)
        for layer in range(self.layers):
            for k, op in enumerate(self.ops):
                idx = torch.nonzero(applied[layer] & (ops[layer] == k)).flatten()
                if len(idx):
                    m, s = magnitude[layer, idx].to(x.device), sign[layer, idx].to(x.device)
                    dev_idx = idx.to(x.device, non_blocking=True)
                    x[dev_idx] = op(x[dev_idx], m, s, fill)
        return x


def random_erasing(x: torch.Tensor, prob: float = 0.25, area=(0.02, 1 / 3), aspect=(0.3, 1 / 0.3)) -> torch.Tensor:
    """timm's RandomErasing(mode="pixel", count 1) on a normalised batch: one box per chosen image, N(0, 1) noise."""
    b, _, h, w = x.shape
    log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
    boxes = torch.zeros(b, 4)  # top, left, bottom, right; empty where nothing is erased
    for i in range(b):
        if random.random() > prob:
            continue
        for _ in range(10):
            target = random.uniform(*area) * h * w
            aspect = math.exp(random.uniform(*log_aspect))
            eh, ew = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if ew < w and eh < h:
                top, left = random.randint(0, h - eh), random.randint(0, w - ew)
                boxes[i] = torch.tensor([top, left, top + eh, left + ew])
                break
    boxes = boxes.to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    top, left, bottom, right = (boxes[:, i].view(b, 1, 1) for i in range(4))
    inside = ((rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)).unsqueeze(1)
    return torch.where(inside, torch.randn_like(x), x)
