"""The paper's (timm's) training augmentation on whole batches of decoded images, on whatever device holds them.

Each image still gets its own random parameters, drawn from the distributions timm's PIL transforms draw from
(`create_transform(is_training=True, auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, re_mode="pixel")`):
RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) + horizontal flip, RandAugment (2 layers of 15 ops, each applied
with p=0.5 at magnitude ~N(9, 0.5) clipped to [0, 10]), normalisation, then random erasing of one box with noise.
Parameters are drawn on the host (a few hundred numbers a batch, no device sync); pixels never leave the device.

On a GPU the host's time to issue all this eagerly (~200 kernels and 30 small copies a batch: 8.7-11.6 ms for 256
images at 240 px on an H200 host) outlasted the device's (~3.7 ms). So each pass's pixel work is one function of
(images, per-image parameters) that `device_kernel` compiles once for any number of images on a GPU, and each pass's
parameters cross in one copy (2.95 ms a batch, docs/benchmarks.md). On a CPU (the tests, against timm's PIL
transforms) the same functions run eagerly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


def _first_fit(
    height: torch.Tensor,
    width: torch.Tensor,
    area: tuple[float, float],
    log_aspect: tuple[float, float],
    fits,
    generator: torch.Generator | None,
    tries: int = 10,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """timm's rejection sampling of a box, all images at once: (h, w, found) of each image's first fitting try."""
    n = len(height)
    target = _uniform((n, tries), *area, generator) * (height * width).view(-1, 1)
    aspect = torch.exp(_uniform((n, tries), *log_aspect, generator))
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    ok = fits(h, w, height.view(-1, 1), width.view(-1, 1))
    first = ok.double().argmax(1, keepdim=True)
    return h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1), ok.any(1)


def _offset(room: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """random.randint(0, room) for each image."""
    return (torch.rand(room.shape, generator=generator, dtype=torch.float64) * (room + 1)).floor().clamp(max=room)


def crop_boxes(
    sizes: torch.Tensor, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), generator: torch.Generator | None = None
) -> torch.Tensor:
    """timm's RandomResizedCropAndInterpolation.get_params for each (H, W) in `sizes`: [B, 4] (top, left, h, w).

    10 tries at a random area fraction and log aspect ratio; an image with no fitting try gets the centre crop.
    """
    height, width = sizes[:, 0].double(), sizes[:, 1].double()
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    h, w, found = _first_fit(
        height, width, scale, log_ratio, lambda h, w, hh, ww: (w > 0) & (h > 0) & (w <= ww) & (h <= hh), generator
    )
    # The fallback: the whole image, cut to the nearest allowed aspect ratio.
    in_ratio = width / height
    fw = torch.where(in_ratio < ratio[0], width, torch.where(in_ratio > ratio[1], (height * ratio[1]).round(), width))
    fh = torch.where(in_ratio < ratio[0], (width / ratio[0]).round(), height)
    h, w = torch.where(found, h, fh), torch.where(found, w, fw)
    top = torch.where(found, _offset(height - h, generator), ((height - h) / 2).floor())
    left = torch.where(found, _offset(width - w, generator), ((width - w) / 2).floor())
    return torch.stack([top, left, h, w], 1).float()


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device` without stalling the host (pinned, asynchronous copy)."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)


_COMPILED: dict[Callable, Callable] = {}


def device_kernel(fn: Callable, device: torch.device, compiled: bool = True) -> Callable:
    """`fn` compiled where `device` is a GPU and `compiled`, else `fn` itself. The first dimension of each tensor
    argument (the batch, or the chosen images) is compiled as a symbolic size, so one compilation serves every batch;
    the images' channels, height and width stay constants, which keeps the kernels' indexing cheap. Compilation
    happens on the first call: make that call from the main thread (ImageFolderDataModule.warm_up), as torch.compile
    must not compile in two threads at once."""
    if not compiled or device.type != "cuda":
        return fn
    if fn not in _COMPILED:
        _COMPILED[fn] = compile_batched(fn)
    return _COMPILED[fn]


_NESTED_FX_TRACE = "using FX to symbolically trace a dynamo-optimized function"  # dynamo's refusal, eval_frame.py


def compile_batched(fn: Callable, backend: str = "inductor") -> Callable:
    """torch.compile(fn) with the first dimension of each tensor argument of more than one row symbolic."""
    compiled = torch.compile(fn, fullgraph=True, backend=backend)

    def call(*args: torch.Tensor) -> torch.Tensor:
        for t in args:
            if t.dim() and t.shape[0] > 1:
                torch._dynamo.maybe_mark_dynamic(t, 0)
        try:
            return compiled(*args)
        except RuntimeError as error:
            # Before torch made FX's tracing flag per thread (pytorch/pytorch#168999; torch 2.11 has one flag a
            # process), dynamo refuses every compiled call while any thread traces: the prefetcher's thread, each
            # time the training thread compiled the model. The refusal comes before anything runs, so the batch
            # runs eagerly instead: the same values, a little slower, for the few batches that meet a compile.
            if _NESTED_FX_TRACE not in str(error):
                raise
            return fn(*args)

    return call


def _at_least_two(idx: torch.Tensor) -> torch.Tensor:
    """The chosen images' indices, the first repeated where only one was chosen: a compiled kernel sees sizes of 2
    and up, all one symbolic size, instead of compiling again for 1 (writing one image's result twice is harmless)."""
    return idx.repeat(2) if len(idx) == 1 else idx


def crop_resize(images: list[torch.Tensor], boxes: torch.Tensor, size: int, taps: int = 1) -> torch.Tensor:
    """Each uint8 [C, H, W] image's box (top, left, height, width; floats) resampled to size x size, as one batch."""
    flat = torch.cat([img.reshape(-1) for img in images])
    return crop_resize_flat(flat, torch.tensor([img.shape[-2:] for img in images]), boxes, size, taps)


def crop_resize_flat(
    flat: torch.Tensor, hw: torch.Tensor, boxes: torch.Tensor, size: int, taps: int = 1, channels_last: bool = False
) -> torch.Tensor:
    """`crop_resize` on images held back to back in one flat uint8 tensor (on the device), their (H, W) on the host;
    each image [C, H, W], or [H, W, C] with `channels_last` (as decoders write them). Returns [B, C, size, size].

    One pass for the whole batch, whatever the images' sizes (a per-image resize costs a few kernel launches an
    image, which on a GPU outlasts the arithmetic): bilinear samples, `taps` x `taps` of them averaged per output
    pixel (more taps stand in better for PIL's antialiased bicubic when a crop shrinks, at taps^2 the cost; one
    keeps ImageNet-sized crops within a grey level of PIL, tests/data/test_batch_augment.py). Returns float 0-255.
    """
    device, n = flat.device, len(hw)
    pixels = hw.long().prod(1)  # counts in int64: a batch holds more than float32's 2**24 exact integers
    c = flat.numel() // int(pixels.sum())
    start = to_device(torch.cumsum(pixels * c, 0) - pixels * c, device).view(-1, 1, 1, 1)
    plane = to_device(pixels, device).view(-1, 1, 1, 1)
    hw, boxes = to_device(hw.float(), device), to_device(boxes.float(), device)
    # Sample positions: pixel centres of the output grid, subdivided into taps x taps, in input pixel coordinates.
    steps = (torch.arange(size * taps, device=device, dtype=torch.float32) + 0.5) / (size * taps)
    ys = (boxes[:, :1] + steps * boxes[:, 2:3] - 0.5).clamp(min=0).minimum(hw[:, :1] - 1)  # [B, S*taps]
    xs = (boxes[:, 1:2] + steps * boxes[:, 3:4] - 0.5).clamp(min=0).minimum(hw[:, 1:] - 1)
    y0, x0 = ys.floor(), xs.floor()
    wy, wx = (ys - y0).view(n, 1, -1, 1), (xs - x0).view(n, 1, 1, -1)
    y1, x1 = (y0 + 1).minimum(hw[:, :1] - 1), (x0 + 1).minimum(hw[:, 1:] - 1)
    channel = torch.arange(c, device=device).view(1, c, 1, 1)
    if channels_last:  # pixel (y, x) of channel k at (y * W + x) * C + k
        row, col, base = hw[:, 1:].long().view(-1, 1, 1, 1) * c, c, start + channel
    else:  # at k * H * W + y * W + x
        row, col, base = hw[:, 1:].long().view(-1, 1, 1, 1), 1, start + plane * channel

    def at(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return flat[base + y.long().view(n, 1, -1, 1) * row + x.long().view(n, 1, 1, -1) * col].float()

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    out = top * (1 - wy) + bottom * wy
    return F.avg_pool2d(out, taps) if taps > 1 else out


def random_resized_crop(
    images: list[torch.Tensor], size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [C, H, W] images of any sizes -> float [B, C, size, size] (0-255) crops with timm's random boxes."""
    boxes = crop_boxes(torch.tensor([img.shape[-2:] for img in images]), generator=generator)
    return crop_resize(images, boxes, size), boxes


def resize_center_crop(images: list[torch.Tensor], size: int, crop_pct: float) -> torch.Tensor:
    """Evaluation: the short side to size / crop_pct, then the centre size x size (timm's eval transform)."""
    shapes = torch.tensor([img.shape[-2:] for img in images], dtype=torch.float32)
    side = size / (math.floor(size / crop_pct) / shapes.min(1).values)  # the crop's side in input pixels
    top, left = (shapes[:, 0] - side) / 2, (shapes[:, 1] - side) / 2
    return crop_resize(images, torch.stack([top, left, side, side], 1), size)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """PIL's L conversion (ITU-R 601-2 luma)."""
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _affine(x: torch.Tensor, matrices: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Warp each image by its 2x3 pixel-space matrix (output pixel -> input pixel, as PIL's Image.transform)."""
    b, _, h, w = x.shape
    # Pixel centres p map to normalised n = (2p + 1) / size - 1 (align_corners=False), so p = n * size / 2 +
    # (size - 1) / 2: theta = to_norm(M(from_norm(n))), written out.
    (a, bb, c), (d, e, f) = matrices[:, 0].unbind(-1), matrices[:, 1].unbind(-1)
    ox, oy = (w - 1) / 2, (h - 1) / 2
    theta = torch.stack(
        [
            torch.stack([a, bb * h / w, (a * ox + bb * oy + c) * 2 / w + 1 / w - 1], -1),
            torch.stack([d * w / h, e, (d * ox + e * oy + f) * 2 / h + 1 / h - 1], -1),
        ],
        1,
    )
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    # A ones channel marks what came from inside the image; the rest takes the fill colour (the dataset mean).
    warped = F.grid_sample(torch.cat([x, torch.ones_like(x[:, :1])], 1), grid, "bicubic", "zeros", False)
    inside = warped[:, -1:].clamp(0, 1)
    return (warped[:, :-1] * inside + fill.view(1, -1, 1, 1) * (1 - inside)).clamp_(0, 255)


# timm's _RAND_INCREASING_TRANSFORMS, in its order. The ops fall into three kinds, each applied to all the images
# that drew one of its ops in one pass: a per-image lookup table, a per-image affine warp, a per-image blend.
RAND_INCREASING_OPS = [
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
]
LUT_OPS = ("AutoContrast", "Equalize", "Invert", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd")
WARP_OPS = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
BLEND_OPS = ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing")
_ID = {name: i for i, name in enumerate(RAND_INCREASING_OPS)}


def _ids(names: tuple[str, ...]) -> torch.Tensor:
    return torch.tensor([_ID[n] for n in names])


def _static_lut(op: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """[n, 256] tables of the content-independent pixel ops (timm's levels); identity for the others."""
    v = torch.arange(256.0, device=op.device).expand(len(op), 256)
    m = m.view(-1, 1)
    bits = 4 - (m / 10 * 4).floor()  # keep 4 down to 0 high bits; 0 bits is black, as timm means it
    posterized = (v.long() & (256 - 2 ** (8 - bits)).long()).float()
    threshold = 256 - (m / 10 * 256).floor()
    solarized = torch.where(v >= threshold, 255 - v, v)
    added = torch.where(v < 128, (v + (m / 10 * 110).floor().clamp(max=128)).clamp(max=255), v)
    table = torch.where(op.view(-1, 1) == _ID["Invert"], 255 - v, v)
    table = torch.where(op.view(-1, 1) == _ID["PosterizeIncreasing"], posterized, table)
    table = torch.where(op.view(-1, 1) == _ID["SolarizeIncreasing"], solarized, table)
    return torch.where(op.view(-1, 1) == _ID["SolarizeAdd"], added, table)


def _lookup(x: torch.Tensor, op: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
    """Apply each image's table; AutoContrast's and Equalize's come from the image's own histogram, as PIL's."""
    n, c = x.shape[:2]
    pixels = x.round().clamp_(0, 255).long().view(n, c, -1)
    v = torch.arange(256.0, device=x.device)
    lo = pixels.amin(-1, keepdim=True).float()
    hi = pixels.amax(-1, keepdim=True).float()
    stretched = (v * (255 / (hi - lo).clamp(min=1)) - lo * (255 / (hi - lo).clamp(min=1))).floor().clamp(0, 255)
    autocontrast = torch.where(hi > lo, stretched, v)
    flat = pixels.view(n * c, -1)
    hist = torch.zeros(n * c, 256, device=x.device).scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float32))
    hist = hist.view(n, c, 256)
    last = hist.gather(2, (hist > 0).long().cumsum(2).argmax(2, keepdim=True))  # the count of the top value
    step = ((hist.sum(2, keepdim=True) - last) / 255).floor()
    equalized = ((step / 2).floor() + hist.cumsum(2) - hist).div(step.clamp(min=1)).floor().clamp(max=255)
    equalized = torch.where(step > 0, equalized, v)
    kind = op.view(-1, 1, 1)
    table = torch.where(kind == _ID["AutoContrast"], autocontrast, static.unsqueeze(1))
    table = torch.where(kind == _ID["Equalize"], equalized, table)
    return table.gather(2, pixels).view_as(x)


def _warp_matrices(op: torch.Tensor, m: torch.Tensor, sign: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[n, 2, 3] output -> input pixel maps of PIL's rotate (about the centre), shear and translate."""
    a = torch.deg2rad(m / 10 * 30 * sign)
    cos, sin = torch.cos(a), torch.sin(a)
    cx, cy = width / 2, height / 2
    zero, one = torch.zeros_like(m), torch.ones_like(m)
    shear, shift = m / 10 * 0.3 * sign, m / 10 * 0.45 * sign

    def chosen(name: str, value: torch.Tensor) -> torch.Tensor:
        return torch.where(op == _ID[name], value, zero)

    rows = [
        [one, chosen("ShearX", shear), chosen("TranslateXRel", shift * width)],
        [chosen("ShearY", shear), one, chosen("TranslateYRel", shift * height)],
    ]
    rotate = [[cos, -sin, cx - cos * cx + sin * cy], [sin, cos, cy - sin * cx - cos * cy]]
    is_rotate = op == _ID["Rotate"]
    return torch.stack(
        [torch.stack([torch.where(is_rotate, r, o) for r, o in zip(rot, row)], -1) for rot, row in zip(rotate, rows)],
        1,
    )


def _enhance(x: torch.Tensor, op: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: blend each image with its degenerate image (grey, mean grey, black or smoothed)."""
    gray = _gray(x)
    mean = gray.mean((1, 2, 3), keepdim=True).round()
    # PIL's SMOOTH filter (centre weight 5 of 13); border pixels keep their values.
    kernel = torch.ones(3, 3, device=x.device)
    kernel[1, 1] = 5
    smooth = x.clone()
    smooth[:, :, 1:-1, 1:-1] = F.conv2d(x, (kernel / 13).expand(x.shape[1], 1, 3, 3), groups=x.shape[1]).round()
    kind = op.view(-1, 1, 1, 1)
    other = torch.where(kind == _ID["ColorIncreasing"], gray, smooth)
    other = torch.where(kind == _ID["ContrastIncreasing"], mean, other)
    other = torch.where(kind == _ID["BrightnessIncreasing"], torch.zeros_like(mean), other)
    return (other + factor.view(-1, 1, 1, 1) * (x - other)).clamp_(0, 255)


def _lookup_pass(x: torch.Tensor, idx: torch.Tensor, op: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """The lookup ops of images `idx` (op and m hold every image's; device tensors)."""
    o = op[idx].long()
    return _lookup(x[idx], o, _static_lut(o, m[idx]))


def _warp_pass(
    x: torch.Tensor, idx: torch.Tensor, op: torch.Tensor, m: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor
) -> torch.Tensor:
    """The warps of images `idx`."""
    matrices = _warp_matrices(op[idx].long(), m[idx], sign[idx], x.shape[-2], x.shape[-1])
    return _affine(x[idx], matrices, fill)


def _blend_pass(
    x: torch.Tensor, idx: torch.Tensor, op: torch.Tensor, m: torch.Tensor, sign: torch.Tensor
) -> torch.Tensor:
    """The enhancements of images `idx`."""
    factor = (1 + m[idx] / 10 * 0.9 * sign[idx]).clamp(min=0.1)
    return _enhance(x[idx], op[idx].long(), factor)


def flip_images(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Images mirrored left to right where `flip` (bool, one an image)."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def normalise_images(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """0-255 images to the model's input scale ([1, C, 1, 1] mean and std, also 0-255)."""
    return (x - mean) / std


def _erase(x: torch.Tensor, boxes: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Noise inside each image's (top, left, bottom, right) box; an empty box leaves the image as it is."""
    b, _, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    top, left, bottom, right = (boxes[:, i].view(b, 1, 1) for i in range(4))
    inside = ((rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)).unsqueeze(1)
    return torch.where(inside, noise, x)


def normalise_and_erase(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, boxes: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    return _erase(normalise_images(x, mean, std), boxes, noise)


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
    """timm's RandAugment with per-image choices, magnitudes and signs; each layer is three batched passes."""

    def __init__(
        self, config: str = "rand-m9-mstd0.5-inc1", fill: tuple[float, ...] = (124, 116, 104), compiled: bool = True
    ) -> None:
        p = parse_rand_augment(config)
        self.magnitude, self.magnitude_std, self.prob, self.layers = p["m"], p["mstd"], p["p"], int(p["n"])
        self.ops = RAND_INCREASING_OPS
        self.fill = tuple(float(f) for f in fill)
        self.compiled = compiled  # on a GPU (device_kernel)

    def sample(
        self, batch: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per layer and image: op index, applied?, magnitude, sign (+1/-1), drawn on the host."""
        shape = (self.layers, batch)
        op = torch.randint(len(self.ops), shape, generator=generator)  # with replacement, as timm without weights
        applied = torch.rand(shape, generator=generator) < self.prob
        magnitude = (self.magnitude + self.magnitude_std * torch.randn(shape, generator=generator)).clamp(0, 10)
        sign = torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0)
        return op, applied, magnitude, sign

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for op, applied, magnitude, sign in zip(*self.sample(x.shape[0], generator)):
            x = self.apply_layer(x, op, applied, magnitude, sign)
        return x

    def apply_layer(
        self, x: torch.Tensor, op: torch.Tensor, applied: torch.Tensor, m: torch.Tensor, sign: torch.Tensor
    ) -> torch.Tensor:
        """One layer: image i gets op[i] at magnitude m[i] with sign[i] where applied[i] (host tensors)."""
        device, n = x.device, len(op)
        chosen = [
            torch.nonzero(applied & torch.isin(op, _ids(kind))).flatten() for kind in (LUT_OPS, WARP_OPS, BLEND_OPS)
        ]
        chosen = [_at_least_two(c) for c in chosen]
        # One copy for the layer: every image's op, magnitude and sign, then each pass's chosen images, the fill.
        params = torch.cat([op.float(), m.float(), sign.float(), *(c.float() for c in chosen), torch.tensor(self.fill)])
        params = to_device(params, device)
        op_d, m_d, sign_d = params[:n], params[n : 2 * n], params[2 * n : 3 * n]
        fill = params[-len(self.fill) :]
        start = 3 * n
        passes = ((_lookup_pass, (m_d,)), (_warp_pass, (m_d, sign_d, fill)), (_blend_pass, (m_d, sign_d)))
        for c, (pass_, extra) in zip(chosen, passes):
            if len(c):
                idx = params[start : start + len(c)].long()
                x[idx] = device_kernel(pass_, device, self.compiled)(x, idx, op_d, *extra)
            start += len(c)
        return x


def erasing_boxes(
    shape: torch.Size,
    prob: float = 0.25,
    area=(0.02, 1 / 3),
    aspect=(0.3, 1 / 0.3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """timm's RandomErasing(mode="pixel", count 1) boxes for a batch of `shape`: [B, 4] (top, left, bottom, right),
    empty for the images not erased. On the host."""
    b, _, h, w = shape
    size = torch.full((b,), float(h), dtype=torch.float64), torch.full((b,), float(w), dtype=torch.float64)
    log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
    eh, ew, found = _first_fit(*size, area, log_aspect, lambda h, w, hh, ww: (w < ww) & (h < hh), generator)
    erase = found & (torch.rand(b, generator=generator) < prob)
    top, left = _offset(size[0] - eh, generator), _offset(size[1] - ew, generator)
    return torch.stack([top, left, top + eh, left + ew], 1).float() * erase.view(-1, 1)


def erasing_noise(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, 1) noise like `x`; on a GPU from a generator of its own, seeded from `generator`."""
    if generator is not None and x.device.type == "cuda":
        seed = int(torch.randint(2**62, (1,), generator=generator))
        return torch.randn(x.shape, device=x.device, generator=torch.Generator(x.device).manual_seed(seed))
    return torch.randn(x.shape, device=x.device, generator=generator)


def random_erasing(x: torch.Tensor, prob: float = 0.25, generator: torch.Generator | None = None) -> torch.Tensor:
    """timm's RandomErasing(mode="pixel", count 1) on a normalised batch: one box per chosen image, N(0, 1) noise."""
    boxes = to_device(erasing_boxes(x.shape, prob, generator=generator), x.device)
    return _erase(x, boxes, erasing_noise(x, generator))
