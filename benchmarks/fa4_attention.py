"""FlashAttention-4 (the flash-attn-4 package: CuTe DSL kernels, Hopper's included) for the blocks' self-attention,
issue 14's last attention candidate, against cuDNN's SDPA.

    python benchmarks/fa4_attention.py --out fa4.json   # on the GPU: each branch's shape, checked, then timed
    python benchmarks/throughput.py --models crossvit_18 --modes reduce-overhead --no-timm --sdpa fa4-packed

Two ways into the step, both ours-only variants of throughput.py and profile_step.py:
- `--sdpa fa4`: SDPA's self-attention calls (timm's Attention) go to the kernels on q, k and v as SDPA gets them;
  autograd then stacks dq, dk and dv into the qkv projection's gradient, as it does for cuDNN's.
- `--sdpa fa4-packed`: the framework's `kernels.attention=fa4` (crossvit.models.kernels): timm's Attention.forward
  hands the kernels the qkv projection's output (B, N, 3, H, D) as it is, and the backward writes dq, dk and dv
  into one buffer of that layout: no permute, no stack.

The kernels run inside custom ops (`crossvit_bench::fa4_*` here, `crossvit::fa4_packed_*` in the framework, with
fake kernels and an autograd rule) so that torch.compile and CUDA graphs take each launch whole. flash-attn-4 and
the CuTe DSL travel to the GPU machine in two parts that benchmarks/fa4_parts.sh builds from
requirements-hopper.lock (docs/benchmarks.md, "Issue 14, fifth session").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from kernel_timing import captured, forward_swapped, kernel_parser, time_ms, write_rows
from timm.models.vision_transformer import Attention
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from crossvit.models.kernels import (
    FA4_INFERENCE_MAX_HEAD_DIM,
    FWD_TILES,
    fa4_attend,
    fa4_attend_backward,
    fa4_fake_attend,
    fa4_packed_forward_upto,
    fa4_packed_fwd,
    fa4_setup_context,
    use_fa4_tiles,
)


@torch.library.custom_op("crossvit_bench::fa4_fwd", mutates_args=())
def fa4_fwd(q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    return fa4_attend(q, k, v, scale)


@fa4_fwd.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    return fa4_fake_attend(q, k, v)


@torch.library.custom_op("crossvit_bench::fa4_bwd", mutates_args=())
def fa4_bwd(
    q: Tensor, k: Tensor, v: Tensor, out: Tensor, dout: Tensor, lse: Tensor, scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    dq, dk, dv = (torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v))
    fa4_attend_backward(q, k, v, out, dout, lse, scale, dq, dk, dv)
    return dq, dk, dv


@fa4_bwd.register_fake
def _(q, k, v, out, dout, lse, scale):
    return tuple(torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v))


def _fa4_backward(ctx, dout: Tensor, dlse: Tensor | None):
    q, k, v, out, lse = ctx.saved_tensors
    return *fa4_bwd(q, k, v, out, dout, lse, ctx.scale), None


fa4_fwd.register_autograd(_fa4_backward, setup_context=fa4_setup_context)


def attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None) -> Tensor:
    """`--sdpa fa4`: the kernels on (B, N, H, D) views of SDPA's (B, H, N, D) q, k and v (throughput.py's
    self_attention_through sends them only self-attention)."""
    out, _ = fa4_fwd(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale or q.shape[-1] ** -0.5)
    return out.transpose(1, 2)


def packed_attention(model: nn.Module, inference: str = "framework") -> AbstractContextManager[nn.Module]:
    """`--sdpa fa4-packed`: each of `model`'s timm Attention modules runs the framework's `kernels.attention=fa4`
    forward (crossvit.models.kernels) inside the block: FA4 in training, and in inference where the head dim is at
    most FA4_INFERENCE_MAX_HEAD_DIM. `inference="all"` (`fa4-packed-all`): FA4 in every inference, as before the tenth
    session; `"none"` (`fa4-packed-train`): SDPA in every inference."""
    max_head_dim = {"framework": FA4_INFERENCE_MAX_HEAD_DIM, "all": sys.maxsize, "none": 0}[inference]
    return forward_swapped(model, Attention, fa4_packed_forward_upto(max_head_dim))


# (model, branch): (heads, tokens, head dim), batch 256 as in throughput.py
SHAPES = {
    ("crossvit_18", "large"): (7, 197, 64),
    ("crossvit_18", "small"): (7, 401, 32),
    ("crossvit_9", "large"): (4, 197, 64),
    ("crossvit_9", "small"): (4, 401, 32),
}


def _sdpa_attention(qkv: Tensor) -> Tensor:
    """What timm's Attention does around SDPA, from the qkv projection's output to the (B, N, C) result."""
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)


def _fa4_attention(qkv: Tensor) -> Tensor:
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    return attention(q, k, v, None).transpose(1, 2).flatten(2)


def _fa4_packed_attention(qkv: Tensor) -> Tensor:
    return fa4_packed_fwd(qkv, qkv.shape[-1] ** -0.5)[0].flatten(2)


def _cudnn_attention(qkv: Tensor) -> Tensor:
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        return _sdpa_attention(qkv)


VARIANTS = {"cudnn": _cudnn_attention, "fa4": _fa4_attention, "fa4-packed": _fa4_packed_attention}


def _errors(fn: Callable[[Tensor], Tensor], qkv: Tensor, dout: Tensor) -> dict:
    """Max abs error of the output and of the qkv gradient against SDPA's math in fp32."""
    ref_in = qkv.detach().float().requires_grad_()
    with sdpa_kernel(SDPBackend.MATH):
        ref = _sdpa_attention(ref_in)
    (ref_grad,) = torch.autograd.grad(ref, ref_in, dout.float())
    x = qkv.detach().requires_grad_()
    out = fn(x)
    (grad,) = torch.autograd.grad(out, x, dout)
    return dict(out_err=(out.float() - ref).abs().max().item(), grad_err=(grad.float() - ref_grad).abs().max().item())


def _graph_diff(fn: Callable[[Tensor], Tensor], qkv: Tensor, dout: Tensor) -> float:
    """Forward and backward captured in a CUDA graph and replayed: the largest difference of its qkv gradient from
    the eager one (not 0 where a backward sums dq with atomics, as both kernels do at 401 tokens and head dim 32)."""
    x = qkv.detach().requires_grad_()
    expected = torch.autograd.grad(fn(x), x, dout)[0]
    graph, (grad,) = captured(lambda: torch.autograd.grad(fn(x), x, dout))
    graph.replay()
    torch.cuda.synchronize()
    return (grad.float() - expected.float()).abs().max().item()


def _measured(fn: Callable[[Tensor], Tensor], qkv: Tensor, dout: Tensor, args: argparse.Namespace) -> dict:
    """Errors, then ms a call: eager (flash-attn-4's Python launch path included) and replayed from a CUDA graph
    (the kernels alone, as in the step under reduce-overhead)."""
    small = qkv[: args.check_batch].detach(), dout[: args.check_batch]
    row = _errors(fn, *small)
    with torch.no_grad():
        row["fwd_ms"] = time_ms(lambda: fn(qkv), args.steps, args.warmup)
        row["fwd_graph_ms"] = time_ms(captured(lambda: fn(qkv))[0].replay, args.steps, args.warmup)

    def step() -> tuple[Tensor, ...]:
        return torch.autograd.grad(fn(qkv), qkv, dout)

    row["fwd_bwd_ms"] = time_ms(step, args.steps, args.warmup)
    row["fwd_bwd_graph_ms"] = time_ms(captured(step)[0].replay, args.steps, args.warmup)
    row["graph_diff"] = _graph_diff(fn, *small)
    return row


# the tiles `--tune` tries at each head dim; the first of each is flash-attn-4's own choice for head dims <= 64
FWD_CANDIDATES = (
    [(192, 128, True, True)]
    + [
        (m, n, True, True)
        for m, n in ((128, 128), (128, 144), (128, 208), (128, 224), (192, 208), (64, 208), (128, 256))
    ]
    + [(128, 208, False, True)]
)
_BWD_DEFAULT = dict(
    m_block_size=128,
    n_block_size=128,
    num_stages_Q=2,
    num_stages_dO=2,
    num_stages_PdS=2,
    SdP_swapAB=True,
    dKV_swapAB=False,
    dQ_swapAB=False,
    AtomLayoutMSdP=1,
    AtomLayoutNdKV=2,
    AtomLayoutMdQ=2,
)
BWD_CANDIDATES = [_BWD_DEFAULT] + [
    {**_BWD_DEFAULT, **change}
    for change in (
        dict(m_block_size=64, AtomLayoutMdQ=1),
        dict(m_block_size=80, dQ_swapAB=True, AtomLayoutMdQ=1),
        dict(m_block_size=112, dQ_swapAB=True, AtomLayoutMdQ=1),
        dict(n_block_size=64, AtomLayoutNdKV=1),
        dict(num_stages_Q=1, num_stages_dO=1),
    )
]


def _fastest(rows: list[dict]) -> object:
    """The tile of the fastest row whose results are the default's within bf16 rounding."""
    return min((r for r in rows if r.get("diff", 1.0) < 2e-2), key=lambda r: r["ms"])["tile"]


def _tune_shape(heads: int, tokens: int, head_dim: int, args: argparse.Namespace) -> tuple[list[dict], dict]:
    from flash_attn.cute import interface

    q, k, v = torch.randn(args.batch_size, tokens, 3, heads, head_dim, device="cuda", dtype=torch.bfloat16).unbind(2)
    dout, scale = torch.randn_like(q), head_dim**-0.5
    fwd_rows, bwd_rows = [], []
    for tile in FWD_CANDIDATES:
        row = dict(pass_="fwd", tokens=tokens, head_dim=head_dim, tile=list(tile))
        FWD_TILES[head_dim] = tile
        try:
            out = fa4_attend(q, k, v, scale)[0].float()
            row["diff"] = (out - (fwd_rows[0]["out"] if fwd_rows else out)).abs().max().item()
            row["ms"] = time_ms(partial(fa4_attend, q, k, v, scale), args.steps, args.warmup)
            row["out"] = out
        except Exception as error:  # a tile that does not compile or fit is a row with its error
            row["error"] = f"{type(error).__name__}: {error}"[:300]
        fwd_rows.append(row)
    best = {"fwd": _fastest(fwd_rows)}
    FWD_TILES[head_dim] = tuple(best["fwd"])
    out, lse = fa4_attend(q, k, v, scale)
    grads = [torch.empty_like(t) for t in (q, k, v)]
    default = interface._tile_size_bwd_sm90
    for cfg in BWD_CANDIDATES:
        row = dict(pass_="bwd", tokens=tokens, head_dim=head_dim, tile=cfg)
        interface._tile_size_bwd_sm90 = partial(lambda *_, cfg, **__: interface.BwdConfig(**cfg), cfg=cfg)
        try:
            fa4_attend_backward(q, k, v, out, dout, lse, scale, *grads)
            now = torch.cat([g.flatten() for g in grads]).float()
            row["diff"] = (now - (bwd_rows[0]["grads"] if bwd_rows else now)).abs().max().item()
            row["ms"] = time_ms(
                partial(fa4_attend_backward, q, k, v, out, dout, lse, scale, *grads), args.steps, args.warmup
            )
            row["grads"] = now
        except Exception as error:
            row["error"] = f"{type(error).__name__}: {error}"[:300]
        finally:
            interface._tile_size_bwd_sm90 = default
        bwd_rows.append(row)
    best["bwd"] = _fastest(bwd_rows)
    rows = [{key: value for key, value in r.items() if key not in ("out", "grads")} for r in fwd_rows + bwd_rows]
    return rows, best


def tune(args: argparse.Namespace) -> list[dict]:
    """Each candidate tile at each branch shape of crossvit_18 (the batch, 7 heads): the forward alone, then the
    backward alone (after the fastest forward), timed against flash-attn-4's own choice, the first candidate; one
    whose results leave the first's by more than bf16 rounding is not taken. The fastest go to `args.tiles_out`."""
    rows, best = [], {}
    print(f"{'pass':<5} {'tokens':>6} {'head dim':>8} {'ms':>7} {'diff':>8} tile")
    for heads, tokens, head_dim in sorted({SHAPES[("crossvit_18", branch)] for branch in ("large", "small")}):
        shape_rows, best[head_dim] = _tune_shape(heads, tokens, head_dim, args)
        for r in shape_rows:
            print(
                f"{r['pass_']:<5} {tokens:>6} {head_dim:>8} {r.get('ms', float('nan')):7.3f} "
                f"{r.get('diff', float('nan')):8.1e} {r['tile']} {r.get('error', '')}",
                flush=True,
            )
        rows += shape_rows
    with open(args.tiles_out, "w") as f:
        json.dump(best, f, indent=1)
    print("tiles:", json.dumps(best))
    return rows


def table(args: argparse.Namespace) -> list[dict]:
    """Each branch shape's attention, every variant: errors against fp32 math, then ms a call eager and replayed from
    a CUDA graph, cuDNN's first."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    rows = []
    print(
        f"{'model':<12} {'branch':<6} {'variant':<11} {'fwd ms':>7} {'fwd+bwd ms':>10} {'x cuDNN':>8} "
        f"{'graphed':>8} {'x cuDNN':>8} "
        f"{'out err':>8} {'grad err':>8} {'graph diff':>10}"
    )
    for (model, branch), (heads, tokens, head_dim) in SHAPES.items():
        shape = (args.batch_size, tokens, 3, heads, head_dim)
        qkv = torch.randn(shape, device=device, dtype=torch.bfloat16, requires_grad=True)
        dout = torch.randn(args.batch_size, tokens, heads * head_dim, device=device, dtype=torch.bfloat16)
        base = None
        for name, fn in VARIANTS.items():
            row = dict(
                model=model,
                branch=branch,
                variant=name,
                batch=args.batch_size,
                heads=heads,
                tokens=tokens,
                head_dim=head_dim,
            )
            try:
                row.update(_measured(fn, qkv, dout, args))
            except Exception as error:  # a variant that fails is a row with its error, the others still run
                row["error"] = f"{type(error).__name__}: {error}"[:500]
            if name == "cudnn":
                base = row
            if "error" not in row and "error" not in base:
                row["x_cudnn"] = base["fwd_bwd_ms"] / row["fwd_bwd_ms"]
                row["x_cudnn_graph"] = base["fwd_bwd_graph_ms"] / row["fwd_bwd_graph_ms"]
            rows.append(row)
            print(
                f"{model:<12} {branch:<6} {name:<11} {row.get('fwd_ms', float('nan')):7.3f} "
                f"{row.get('fwd_bwd_ms', float('nan')):10.3f} {row.get('x_cudnn', float('nan')):8.2f} "
                f"{row.get('fwd_bwd_graph_ms', float('nan')):8.3f} {row.get('x_cudnn_graph', float('nan')):8.2f} "
                f"{row.get('out_err', float('nan')):8.1e} {row.get('grad_err', float('nan')):8.1e} "
                f"{row.get('graph_diff', float('nan')):10.1e} {row.get('error', '')}",
                flush=True,
            )
    return rows


def main() -> None:
    parser = kernel_parser(__doc__)
    parser.add_argument("--tune", action="store_true", help="time candidate tiles instead; the best to --tiles-out")
    parser.add_argument("--tiles-out", default="fa4_tiles.json")
    parser.add_argument("--tiles", default="", help="a --tune run's tiles for the table")
    args = parser.parse_args()
    if args.tiles and not args.tune:  # the search starts from flash-attn-4's own tiles
        use_fa4_tiles(args.tiles)
    rows = tune(args) if args.tune else table(args)
    write_rows(args.out, rows)


if __name__ == "__main__":
    main()
