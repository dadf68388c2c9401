"""The blocks' kernels (`kernels=` in conf/train.yaml and conf/eval.yaml): PyTorch's by default; on Hopper GPUs
(sm90 and newer), two beta packages outside requirements.lock, pinned in requirements-hopper.lock:

- `mlp: quack`: quack-kernels' GEMMs for the two products of each timm Mlp whose epilogue takes an elementwise pass
  away: fc1 with its bias and the exact GELU, and fc2's input gradient with GELU's derivative, each autotuned at its
  shape on the first call (or its winner read from `kernels.quack_tuning`). The plain products (fc2's forward,
  fc1's input gradient, both weight gradients) stay on cuBLAS, which beats quack's there (docs/benchmarks.md,
  "Issue 14, seventh session").
- `attention: fa4`: FlashAttention-4 for the blocks' self-attention in training, reading q, k and v in the qkv
  projection's layout (B, N, 3, H, D) and writing their gradients into one buffer of it: no permute, no stack.
  Without a backward (inference, validation), PyTorch's SDPA stays at head dims over 32, where cuDNN's forward is
  the faster one.

On one H200 (batch 256, CUDA graphs) the pair trained crossvit_18 6.5% and crossvit_9 8.0% faster; `mlp: quack`
alone ran inference 11% faster. Either is a swap of the modules' forward: weights, state_dict keys and checkpoints
are the same as PyTorch's. The kernels run inside custom ops (fake kernels and autograd rules) or quack's own, so
torch.compile and CUDA graphs take each launch whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import types
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from timm.layers import Mlp
from timm.models.vision_transformer import Attention
from torch import Tensor

from crossvit.errors import ConfigError

MLPS = ("torch", "quack")
ATTENTIONS = ("sdpa", "fa4")
LOCK = "requirements-hopper.lock"

# quack's MLP modes: every GEMM of the MLP on quack, or (epilogues*) only the two that fuse GELU; quack's own tiles,
# or its autotuning (*tuned). `mlp: quack` is epilogues-tuned, the fastest measured; benchmarks/quack_mlp.py has all.
QUACK_MLP_MODES = ("default", "tuned", "epilogues", "epilogues-tuned")
QUACK_ACTIVATION = "gelu_erf"  # timm's nn.GELU(): the exact GELU (quack's torch-facing default is the tanh one)


def swap_forward(model: nn.Module, module_type: type, forward: Callable) -> list[nn.Module]:
    """Each of `model`'s modules of exactly `module_type` runs `forward(module, ...)` from now on (deleting the
    instance attribute `forward` restores the class's); returns them."""
    swapped = [m for m in model.modules() if type(m) is module_type]
    for module in swapped:
        module.forward = types.MethodType(forward, module)
    return swapped


@contextlib.contextmanager
def class_forwards(model: nn.Module) -> Iterator[None]:
    """Inside, every module of `model` runs its class's forward (the swapped ones restored after): what counts the
    architecture (crossvit.flops) sees PyTorch's ops, in fp32 on any device, not the kernels' custom ops."""
    swapped = {m: vars(m).pop("forward") for m in model.modules() if "forward" in vars(m)}
    try:
        yield
    finally:
        for module, forward in swapped.items():
            module.forward = forward


# --- quack-kernels: GELU in the GEMM epilogues ---


def _cublas_mm(a: Tensor, b: Tensor, bias: Tensor | None = None, out_dtype: torch.dtype | None = None) -> Tensor:
    """quack's `gemm(A, B, bias=, out_dtype=)` as its autograd Functions call it, on cuBLAS."""
    out = torch.mm(a, b) if bias is None else torch.addmm(bias.to(a.dtype), a, b)
    return out if out_dtype is None else out.to(out_dtype)


def quack_kernels(cublas_plain: bool = False) -> tuple[Callable, Callable]:
    """fc1 with the activation in its epilogue and fc2 with the activation's gradient in its backward's, as
    `(x, weight, activation, bias, store_preact, tuned) -> (preact, postact)` and
    `(preact, weight, postact, activation, bias, tuned) -> out`; with `cublas_plain`, the GEMMs that fuse nothing
    run on cuBLAS. The tests swap this for a PyTorch reference on the CPU."""
    from quack import gemm_interface, linear
    from quack.gemm_interface import gemm_act, gemm_dact

    # the kernels' epilogues know the exact GELU; quack's PyTorch references (its recompute path) do not yet
    gemm_interface.act_to_pytorch_fn_map.setdefault(QUACK_ACTIVATION, F.gelu)
    if not cublas_plain:
        return linear.linear_act_func, linear.act_linear_func

    def ops(tuned: bool) -> tuple[type, type]:
        class Fc1(linear._LinearActOps):  # LinearActFunc's: quack's fused forward, cuBLAS backward
            matmul_fwd_fn = partial(gemm_act, tuned=tuned)
            matmul_bwd_dx = matmul_bwd_dw = staticmethod(_cublas_mm)

        class Fc2(linear._DActLinearOps):  # DActLinearFunc's: quack's fused input gradient, the rest cuBLAS
            matmul_fwd_fn = matmul_bwd_dw = staticmethod(_cublas_mm)
            matmul_bwd_dx = partial(gemm_dact, dynamic_scheduler=True, tuned=tuned)

        return Fc1, Fc2

    by_tuned = {tuned: ops(tuned) for tuned in (False, True)}

    def linear_act(x, weight, activation, bias=None, store_preact=True, tuned=True):
        return linear.LinearActFunc.apply(x, weight, activation, bias, store_preact, False, by_tuned[tuned][0])

    def act_linear(preact, weight, x, activation, bias=None, tuned=True):
        return linear.DActLinearFunc.apply(preact, weight, x, activation, bias, False, by_tuned[tuned][1])

    return linear_act, act_linear


def quack_mlp_forward(mode: str = "epilogues-tuned") -> Callable[[Mlp, Tensor], Tensor]:
    """timm's Mlp.forward (fc1, GELU, fc2) with GELU inside fc1's GEMM and its derivative inside fc2's backward,
    the GEMMs as `mode` (QUACK_MLP_MODES) asks. A closure, not a partial: dynamo traces functions."""
    if mode not in QUACK_MLP_MODES:
        raise ValueError(f"quack MLP mode {mode}: not one of {', '.join(QUACK_MLP_MODES)}")
    linear_act, act_linear = quack_kernels(cublas_plain=mode.startswith("epilogues"))
    tuned = mode.endswith("tuned")

    def forward(self: Mlp, x: Tensor) -> Tensor:
        training = torch.is_grad_enabled()
        fc1, fc2 = self.fc1, self.fc2
        preact, postact = linear_act(x, fc1.weight, QUACK_ACTIVATION, fc1.bias, store_preact=training, tuned=tuned)
        if not training:  # inference needs neither the pre-activation nor fc2's backward: fc2 stays on cuBLAS
            return F.linear(postact, fc2.weight, fc2.bias)
        return act_linear(preact, fc2.weight, postact, QUACK_ACTIVATION, fc2.bias, tuned=tuned)

    return forward


def plain_mlp(mlp: Mlp) -> bool:
    """What quack's fused pair computes: fc1, the exact GELU, fc2; no norm, no dropout."""
    return (
        type(mlp.act) is nn.GELU
        and mlp.act.approximate == "none"
        and isinstance(mlp.norm, nn.Identity)
        and not (mlp.drop1.p or mlp.drop2.p)
    )


# --- FlashAttention-4 on the qkv projection's layout ---


def fa4_kernels() -> tuple[Callable, Callable]:
    """flash-attn-4's forward and backward; the tests swap this for a PyTorch reference on the CPU."""
    from flash_attn.cute import interface

    return interface._flash_attn_fwd, interface._flash_attn_bwd


# head dim -> the forward's tile (tile_m, tile_n, mma_pv_is_rs, intra_wg_overlap) and the backward's BwdConfig
# fields, where `benchmarks/fa4_attention.py --tune` found better than flash-attn-4's own choice for Hopper (tuned on
# H100 at long sequences: at 197 tokens its 192-row forward tile computes 384 rows)
FWD_TILES: dict[int, tuple[int, int, bool, bool]] = {}
BWD_TILES: dict[int, dict] = {}


def use_fa4_tiles(path: str) -> None:
    """The tiles of a `fa4_attention.py --tune` run's JSON ({head dim: {"fwd": [...], "bwd": {...}}}) for every
    call after this, process-wide as flash-attn-4's own choice is."""
    from flash_attn.cute import interface

    with open(path) as f:
        tiles = {int(head_dim): cfg for head_dim, cfg in json.load(f).items()}
    FWD_TILES.update({d: tuple(cfg["fwd"]) for d, cfg in tiles.items() if cfg.get("fwd")})
    BWD_TILES.update({d: cfg["bwd"] for d, cfg in tiles.items() if cfg.get("bwd")})
    default = getattr(interface._tile_size_bwd_sm90, "default", interface._tile_size_bwd_sm90)

    def tuned_bwd(head_dim, head_dim_v, causal, local, sparse_block_size_q=None):
        cfg = BWD_TILES.get(head_dim)
        if cfg is None or causal or local or sparse_block_size_q is not None or head_dim_v != head_dim:
            return default(head_dim, head_dim_v, causal, local, sparse_block_size_q)
        return interface.BwdConfig(**cfg)

    tuned_bwd.default = default  # a second call wraps flash-attn-4's own choice, not the last wrapper
    interface._tile_size_bwd_sm90 = tuned_bwd


def read_quack_tuning(path: str) -> dict:
    """`kernels.quack_tuning`'s file, or a ConfigError naming the key and what the file must be."""
    made_by = "a `benchmarks/quack_tuning.py` JSON"
    if not Path(path).is_file():
        raise ConfigError(f"kernels.quack_tuning={path}: no such file ({made_by})")
    try:
        tuning = json.loads(Path(path).read_text())
    except ValueError:
        tuning = None
    if not isinstance(tuning, dict) or not {"gpu", "quack", "shapes"} <= tuning.keys():
        raise ConfigError(f"kernels.quack_tuning={path}: not {made_by} (gpu, quack and shapes)")
    return tuning


def seed_quack_tuning(path: str, device: torch.device) -> int:
    """Each shape's winner from `path` (a `benchmarks/quack_tuning.py` JSON) put into quack's autotuning cache where
    it holds none of its own, if this GPU and quack are the ones it was measured with: the first steps then compile
    one config a shape instead of timing all of them. Returns how many it put."""
    import quack
    from quack.autotuner import FileCacheManager  # quack's cache, where QUACK_CACHE_DIR or its default puts it

    tuning = read_quack_tuning(path)
    gpu = torch.cuda.get_device_name(device)
    if (tuning["gpu"], tuning["quack"]) != (gpu, quack.__version__):
        rank_zero_info(
            f"kernels.quack_tuning={path}: measured on the {tuning['gpu']} with quack {tuning['quack']}, not this "
            f"{gpu} with quack {quack.__version__}; quack autotunes each shape"
        )
        return 0
    put = 0
    for shape in tuning["shapes"]:
        cache = FileCacheManager(shape["cache_key"])
        if cache.get_file(shape["file"]) is None:  # this machine's own autotuning stands
            cache.put(
                json.dumps({"key": shape["key"], "configs_timings": [shape["winner"]]}), shape["file"], binary=False
            )
            put += 1
    rank_zero_info(
        f"kernels.quack_tuning: {put} of {len(tuning['shapes'])} shapes' winners put into quack's autotuning cache "
        "(the rest were there)"
    )
    return put


def _fwd_tile_kwargs(head_dim: int) -> dict:
    tile = FWD_TILES.get(head_dim)
    if tile is None:
        return {}
    return dict(tile_mn=tile[:2], mma_pv_is_rs=tile[2], intra_wg_overlap=tile[3])


def fa4_attend(q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """q, k, v (B, N, H, D), any strides with a contiguous last dim; out (B, N, H, D), lse (B, H, N) in fp32."""
    out, lse, *_ = fa4_kernels()[0](q, k, v, softmax_scale=scale, return_lse=True, **_fwd_tile_kwargs(q.shape[-1]))
    return out.contiguous(), lse.contiguous()  # the layouts the fake kernels promise (flash-attn-4's already)


def fa4_fake_attend(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    batch, tokens, heads, _ = q.shape
    return q.new_empty(batch, tokens, heads, v.shape[-1]), q.new_empty(batch, heads, tokens, dtype=torch.float32)


def fa4_attend_backward(q, k, v, out, dout, lse, scale: float, dq: Tensor, dk: Tensor, dv: Tensor) -> None:
    fa4_kernels()[1](q, k, v, out, dout.contiguous(), lse, softmax_scale=scale, dq=dq, dk=dk, dv=dv)


def fa4_setup_context(ctx, inputs, output) -> None:
    *tensors, ctx.scale = inputs
    ctx.save_for_backward(*tensors, *output)


@torch.library.custom_op("crossvit::fa4_packed_fwd", mutates_args=())
def fa4_packed_fwd(qkv: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """qkv: the qkv projection's output as (B, N, 3, H, D)."""
    return fa4_attend(*qkv.unbind(2), scale)


@fa4_packed_fwd.register_fake
def _(qkv: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    return fa4_fake_attend(*qkv.unbind(2))


@torch.library.custom_op("crossvit::fa4_packed_bwd", mutates_args=())
def fa4_packed_bwd(qkv: Tensor, out: Tensor, dout: Tensor, lse: Tensor, scale: float) -> Tensor:
    dqkv = torch.empty(qkv.shape, dtype=qkv.dtype, device=qkv.device)
    fa4_attend_backward(*qkv.unbind(2), out, dout, lse, scale, *dqkv.unbind(2))
    return dqkv


@fa4_packed_bwd.register_fake
def _(qkv, out, dout, lse, scale):
    return torch.empty(qkv.shape, dtype=qkv.dtype, device=qkv.device)


def _packed_backward(ctx, dout: Tensor, dlse: Tensor | None):
    qkv, out, lse = ctx.saved_tensors
    return fa4_packed_bwd(qkv, out, dout, lse, ctx.scale), None


fa4_packed_fwd.register_autograd(_packed_backward, setup_context=fa4_setup_context)


def plain_attention(attn: Attention) -> bool:
    """What the packed kernels compute: self-attention with no gate, q/k norm or attention dropout."""
    return (
        getattr(attn, "gate", None) is None  # timm >= 1.0.30's gated attention
        and isinstance(attn.q_norm, nn.Identity)
        and isinstance(attn.k_norm, nn.Identity)
        and not attn.attn_drop.p
    )


# Without a backward, FA4's gain (the packed qkv gradient) is gone and its forward alone, graphed, is slower than
# cuDNN's at head dim 64 (197 tokens: 0.135 against 0.106 ms on crossvit_18) and faster at 32 (401 tokens: 0.286
# against 0.335); docs/speed_notes.md, fifth and tenth sessions
FA4_INFERENCE_MAX_HEAD_DIM = 32


def fa4_packed_forward_upto(max_inference_head_dim: int) -> Callable[..., Tensor]:
    """timm's Attention.forward with the kernels reading q, k and v in the qkv projection's layout where a backward
    follows, or the head dim is at most `max_inference_head_dim`; otherwise (inference, validation at wider heads)
    timm's own (PyTorch's SDPA, cuDNN on Hopper). A closure, not a partial: dynamo traces functions."""

    def forward(self: Attention, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        if attn_mask is not None or is_causal or not plain_attention(self):
            raise ValueError("attention=fa4 takes plain self-attention: no mask, causality, gate, q/k norm or dropout")
        if not torch.is_grad_enabled() and self.head_dim > max_inference_head_dim:
            return Attention.forward(self, x)
        return fa4_packed_attention(self, x)

    return forward


def fa4_packed_attention(self: Attention, x: Tensor) -> Tensor:
    """FlashAttention-4 on the qkv projection's layout, forward and backward."""
    batch, tokens, _ = x.shape
    qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
    out, _ = fa4_packed_fwd(qkv, self.scale)
    return self.proj_drop(self.proj(self.norm(out.flatten(2))))


fa4_packed_forward = fa4_packed_forward_upto(FA4_INFERENCE_MAX_HEAD_DIM)  # kernels.attention=fa4's


# --- the framework's switch ---


def _require(package: str, module: str, key: str) -> None:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(
            f"{key} needs {package} ({error}): .venv/bin/uv pip install --no-deps -r {LOCK}; or set {key} to "
            f"{'torch' if key.endswith('mlp') else 'sdpa'}"
        ) from None


def check_kernels(
    mlp: str = "torch",
    attention: str = "sdpa",
    fa4_tiles: str | None = None,
    quack_tuning: str | None = None,
    device: torch.device | None = None,
    precision: str | None = None,
) -> None:
    """`kernels=`'s choices against the GPU the run will use (`device`), its precision (Lightning's, e.g.
    "bf16-mixed") and the packages installed, before any data or checkpoint is read: a ConfigError names the key
    and the fix."""
    if mlp not in MLPS:
        raise ConfigError(f"kernels.mlp={mlp}: not one of {', '.join(MLPS)}")
    if attention not in ATTENTIONS:
        raise ConfigError(f"kernels.attention={attention}: not one of {', '.join(ATTENTIONS)}")
    if fa4_tiles and attention != "fa4":
        raise ConfigError(f"kernels.fa4_tiles={fa4_tiles} is for kernels.attention=fa4 (now {attention})")
    if quack_tuning and mlp != "quack":
        raise ConfigError(f"kernels.quack_tuning={quack_tuning} is for kernels.mlp=quack (now {mlp})")
    asked = [
        f"kernels.{key}={value}"
        for key, value, default in (("mlp", mlp, "torch"), ("attention", attention, "sdpa"))
        if value != default
    ]
    if not asked:
        return
    need = "need" if len(asked) > 1 else "needs"
    asked = " and ".join(asked)
    if device is None or device.type != "cuda":
        raise ConfigError(f"{asked} {need} a CUDA GPU, Hopper (sm90) or newer, not {device}; or use kernels=default")
    if torch.cuda.get_device_capability(device)[0] < 9:
        name = torch.cuda.get_device_name(device)
        raise ConfigError(f"{asked} {need} a Hopper (sm90) GPU or newer, not the {name}; or use kernels=default")
    if precision is not None and not str(precision).startswith(("bf16", "16")):
        raise ConfigError(
            f"{asked} {need} 16-bit activations, not trainer.precision={precision}: use bf16-mixed (trainer=gpu's) "
            "or kernels=default"
        )
    if mlp == "quack":
        _require("quack-kernels", "quack.linear", "kernels.mlp")
    if attention == "fa4":
        # Read once, at import: without it every process compiles each kernel again (quack's cache is on by default)
        os.environ.setdefault("FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED", "1")
        _require("flash-attn-4", "flash_attn.cute.interface", "kernels.attention")
    if fa4_tiles and not Path(fa4_tiles).is_file():
        raise ConfigError(f"kernels.fa4_tiles={fa4_tiles}: no such file (a `fa4_attention.py --tune` JSON)")
    if quack_tuning:
        read_quack_tuning(quack_tuning)


def use_kernels(
    model: nn.Module,
    mlp: str = "torch",
    attention: str = "sdpa",
    fa4_tiles: str | None = None,
    quack_tuning: str | None = None,
    device: torch.device | None = None,
    precision: str | None = None,
) -> None:
    """`kernels=`: after check_kernels, each timm Mlp and Attention of `model` runs the kernels asked, in place and
    from now on (before torch.compile traces it)."""
    check_kernels(mlp, attention, fa4_tiles, quack_tuning, device, precision)
    if mlp == "quack" and not all(plain_mlp(m) for m in model.modules() if type(m) is Mlp):
        raise ConfigError("kernels.mlp=quack takes MLPs with the exact GELU and no dropout; or use kernels.mlp=torch")
    if attention == "fa4" and not all(plain_attention(m) for m in model.modules() if type(m) is Attention):
        raise ConfigError("kernels.attention=fa4 takes attention with no dropout; or use kernels.attention=sdpa")
    if mlp == "quack":
        if quack_tuning:
            seed_quack_tuning(quack_tuning, device)
        swap_forward(model, Mlp, quack_mlp_forward())
    if attention == "fa4":
        if fa4_tiles:
            use_fa4_tiles(fa4_tiles)
        swap_forward(model, Attention, fa4_packed_forward)
    if mlp != "torch" or attention != "sdpa":
        rank_zero_info(
            f"kernels: mlp={mlp}, attention={attention}. The first steps at each new batch shape compile them and "
            "autotune quack's GEMMs, except for shapes in kernels.quack_tuning: minutes on a machine new to the "
            "shapes (crossvit_18 on a fresh H200 without it: 5 minutes to its second step). Later runs there read "
            "their disk caches (QUACK_CACHE_DIR, FLASH_ATTENTION_CUTE_DSL_CACHE_DIR)"
        )
