"""quack-kernels' fused GEMM epilogues for the blocks' MLPs (issue 14): fc1's bias and exact GELU computed in fc1's
GEMM epilogue, and GELU's derivative in the epilogue of fc2's input-gradient GEMM, against cuBLAS with inductor's
GELU passes. The fourth session's oracle bounds it: GELU made free took crossvit_18's step 6.4% faster.

    python benchmarks/quack_mlp.py --out quack.json   # on the GPU: each branch's MLP, checked, then timed
    python benchmarks/quack_mlp.py --per-gemm          # each of its products alone, quack against cuBLAS; over
                                                       # 9 minutes for two MLPs, most of it quack's autotuning
    python benchmarks/throughput.py --models crossvit_18 --modes reduce-overhead --no-timm --quack-mlp default

`--quack-mlp MODE` (throughput.py and profile_step.py, ours only) swaps each timm Mlp.forward of ours for the
framework's (crossvit.models.kernels, where `kernels.mlp=quack` is `epilogues-tuned`): quack's autograd Functions
(`LinearActFunc` for fc1, `DActLinearFunc` for fc2, over quack's custom ops, which torch.compile takes whole):
- `default`, `tuned`: every GEMM of the MLP on quack's CuTe DSL kernels, with quack's own tile choice or its
  autotuning (a sweep of tiles at each shape, on the first call). Slower than cuBLAS in training (s6call3); the
  weight gradients' few output tiles, 0.05-0.7x cuBLAS's (`--per-gemm`, s7call2).
- `epilogues`, `epilogues-tuned`: quack's kernels only for the two GEMMs whose epilogue fuses something (fc1's
  forward, fc2's input gradient); the plain ones (fc2's forward, fc1's input gradient, both weight gradients) on
  cuBLAS, through the same autograd Functions.
The rest of the block stays on cuBLAS. quack-kernels travels with flash-attn-4's parts (benchmarks/fa4_parts.sh,
from requirements-hopper.lock).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
import torch.nn as nn
import torch.nn.functional as F
from kernel_timing import captured, forward_swapped, kernel_parser, time_ms, write_rows
from timm.layers import Mlp
from torch import Tensor

from crossvit.models.kernels import QUACK_ACTIVATION as ACTIVATION
from crossvit.models.kernels import QUACK_MLP_MODES, plain_mlp, quack_kernels, quack_mlp_forward

MODES = QUACK_MLP_MODES


def fused_mlp(model: nn.Module, mode: str = "default") -> AbstractContextManager[nn.Module]:
    """`--quack-mlp MODE` (MODES): each of `model`'s timm Mlp modules runs the fused forward inside the block
    (`epilogues-tuned` is the framework's `kernels.mlp=quack`)."""
    if mode not in MODES:
        raise ValueError(f"--quack-mlp {mode}: not one of {', '.join(MODES)}")
    if not all(plain_mlp(m) for m in model.modules() if type(m) is Mlp):
        raise ValueError("--quack-mlp takes timm's Mlp with an exact GELU, no norm and no dropout")
    return forward_swapped(model, Mlp, quack_mlp_forward(mode))


# (model, branch): (tokens, width, hidden), batch 256 as in throughput.py
SHAPES = {
    ("crossvit_18", "large"): (197, 448, 1344),
    ("crossvit_18", "small"): (401, 224, 672),
    ("crossvit_9", "large"): (197, 256, 768),
    ("crossvit_9", "small"): (401, 128, 384),
}


def _step(mlp: nn.Module, x: Tensor, dout: Tensor) -> Callable[[], object]:
    """Forward and backward under bf16 autocast, as in the step: the gradients of the input and every weight."""
    params = list(mlp.parameters())

    def step() -> tuple[Tensor, ...]:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = mlp(x)
        return torch.autograd.grad(out, [x, *params], dout)

    return step


def _errors(got: tuple[Tensor, ...], reference: tuple[Tensor, ...]) -> dict:
    """Max abs errors of the input and weight gradients against fp32's."""
    return dict(
        dx_err=(got[0].float() - reference[0]).abs().max().item(),
        dw_err=max((g.float() - r).abs().max().item() for g, r in zip(got[1:], reference[1:])),
    )


def _dgelu(grad: Tensor, preact: Tensor) -> Tensor:
    """The exact GELU's backward, as inductor fuses it after cuBLAS's input-gradient product."""
    x = preact.float()
    cdf = 0.5 * (1 + torch.erf(x * 0.5**0.5))
    return (grad.float() * (cdf + x * torch.exp(-0.5 * x * x) * (2 * torch.pi) ** -0.5)).to(grad.dtype)


def _products(x: Tensor, dout: Tensor, w1: Tensor, w2: Tensor, b1: Tensor, preact: Tensor) -> dict:
    """per_gemm's products at one shape: {product: {variant: a call}}, cuBLAS's first."""
    from quack.gemm_interface import gemm, gemm_act, gemm_dact

    cublas_fc1 = torch.compile(lambda x, w, b: F.gelu(F.linear(x, w, b)))
    cublas_dact = torch.compile(lambda dout, w, preact: _dgelu(dout @ w, preact))

    return {
        "fc1 fwd+GELU": {
            "cublas": lambda: cublas_fc1(x, w1, b1.to(x.dtype)),
            "quack": lambda: gemm_act(x, w1.T, bias=b1, activation=ACTIVATION, tuned=False),
            "quack tuned": lambda: gemm_act(x, w1.T, bias=b1, activation=ACTIVATION, tuned=True),
        },
        "fc2 dgrad+dGELU": {
            "cublas": lambda: cublas_dact(dout, w2, preact),
            "quack": lambda: gemm_dact(dout, w2, preact, activation=ACTIVATION, tuned=False),
            "quack tuned": lambda: gemm_dact(dout, w2, preact, activation=ACTIVATION, tuned=True),
        },
        "fc1 wgrad": {
            "cublas": lambda: torch.mm(preact.T, x),
            "quack": lambda: gemm(preact.T, x, dynamic_scheduler=True, tuned=False),
            "quack tuned": lambda: gemm(preact.T, x, dynamic_scheduler=True, tuned=True),
            "quack split-K": lambda: gemm(preact.T, x, tuned=True, split_k=None),
        },
        "fc2 wgrad": {
            "cublas": lambda: torch.mm(dout.T, preact),
            "quack": lambda: gemm(dout.T, preact, dynamic_scheduler=True, tuned=False),
            "quack tuned": lambda: gemm(dout.T, preact, dynamic_scheduler=True, tuned=True),
            "quack split-K": lambda: gemm(dout.T, preact, tuned=True, split_k=None),
        },
    }


def per_gemm(args: argparse.Namespace) -> list[dict]:
    """Each product of an MLP alone, ms a call replayed from a CUDA graph: the two quack fuses GELU into (fc1's
    forward, fc2's input gradient) against cuBLAS with inductor's GELU pass, and the two weight gradients (long K,
    few output tiles) against cuBLAS, with quack's own tiles, its autotuning and split-K."""
    quack_kernels()  # quack's references learn the exact GELU
    rows = []
    print(f"{'model':<12} {'branch':<6} {'product':<12} {'variant':<16} {'ms':>7} {'x cuBLAS':>8}")
    for (model, branch), (tokens, width, hidden) in SHAPES.items():
        if f"{model}/{branch}" not in args.shapes:
            continue
        m, bf16 = args.batch_size * tokens, dict(device="cuda", dtype=torch.bfloat16)
        x, dout = torch.randn(m, width, **bf16), torch.randn(m, width, **bf16)
        w1, w2 = torch.randn(hidden, width, **bf16) * width**-0.5, torch.randn(width, hidden, **bf16) * hidden**-0.5
        b1 = torch.randn(hidden, device="cuda")  # fp32, as the parameter under autocast
        preact = torch.randn(m, hidden, **bf16)
        products = _products(x, dout, w1, w2, b1, preact)
        for product, variants in products.items():
            base = None
            for variant, fn in variants.items():
                row = dict(model=model, branch=branch, product=product, variant=variant, m=m, width=width)
                row["hidden"] = hidden
                try:
                    row["graphed_ms"] = time_ms(captured(fn)[0].replay, args.steps, args.warmup)
                except Exception as error:  # a variant that fails is a row with its error, the others still run
                    row["error"] = f"{type(error).__name__}: {error}"[:300]
                base = base or row
                if "error" not in row and "error" not in base:
                    row["x_cublas"] = base["graphed_ms"] / row["graphed_ms"]
                rows.append(row)
                write_rows(args.out, rows)  # as they come: a run cut at its deadline keeps what it measured
                print(
                    f"{model:<12} {branch:<6} {product:<12} {variant:<16} {row.get('graphed_ms', float('nan')):7.3f} "
                    f"{row.get('x_cublas', float('nan')):8.2f} {row.get('error', '')}",
                    flush=True,
                )
    return rows


def mlps(args: argparse.Namespace) -> list[dict]:
    """Each branch's MLP, forward and backward under bf16 autocast: errors against fp32, then ms a call eager and
    replayed from a CUDA graph, inductor's (cuBLAS and its GELU) first."""
    device = torch.device("cuda")
    rows = []
    print(
        f"{'model':<12} {'branch':<6} {'variant':<12} {'fwd+bwd ms':>10} {'graphed':>8} {'x inductor':>10} "
        f"{'dx err':>8} {'dw err':>8}"
    )
    for (model, branch), (tokens, width, hidden) in SHAPES.items():
        mlp = Mlp(width, hidden).to(device)
        x = torch.randn(args.batch_size, tokens, width, device=device, requires_grad=True)
        dout = torch.randn(args.batch_size, tokens, width, device=device)
        small = x[: args.check_batch].detach().requires_grad_(), dout[: args.check_batch]
        reference = torch.autograd.grad(mlp(small[0]), [small[0], *mlp.parameters()], small[1])  # fp32
        base = None
        for variant in args.variants:
            row = dict(model=model, branch=branch, variant=variant, batch=args.batch_size, tokens=tokens)
            row.update(width=width, hidden=hidden)
            try:
                if variant == "inductor":
                    compiled = torch.compile(mlp)
                    row.update(_errors(_step(compiled, *small)(), reference))
                    step = _step(compiled, x, dout)
                    row["fwd_bwd_ms"] = time_ms(step, args.steps, args.warmup)
                    row["graphed_ms"] = time_ms(captured(step)[0].replay, args.steps, args.warmup)
                else:
                    with fused_mlp(mlp, variant):
                        row.update(_errors(_step(mlp, *small)(), reference))
                        step = _step(mlp, x, dout)
                        row["fwd_bwd_ms"] = time_ms(step, args.steps, args.warmup)
                        row["graphed_ms"] = time_ms(captured(step)[0].replay, args.steps, args.warmup)
            except Exception as error:  # a variant that fails is a row with its error, the others still run
                row["error"] = f"{type(error).__name__}: {error}"[:500]
            if variant == "inductor":
                base = row
            if base and "error" not in row and "error" not in base:
                row["x_inductor"] = base["graphed_ms"] / row["graphed_ms"]
            rows.append(row)
            write_rows(args.out, rows)
            print(
                f"{model:<12} {branch:<6} {variant:<12} {row.get('fwd_bwd_ms', float('nan')):10.3f} "
                f"{row.get('graphed_ms', float('nan')):8.3f} {row.get('x_inductor', float('nan')):10.2f} "
                f"{row.get('dx_err', float('nan')):8.1e} {row.get('dw_err', float('nan')):8.1e} "
                f"{row.get('error', '')}",
                flush=True,
            )
    return rows


def main() -> None:
    parser = kernel_parser(__doc__)
    parser.add_argument("--variants", nargs="+", default=["inductor", *MODES], choices=["inductor", *MODES])
    parser.add_argument("--per-gemm", action="store_true", help="each product alone instead (per_gemm)")
    every = [f"{model}/{branch}" for model, branch in SHAPES]
    parser.add_argument("--shapes", nargs="+", default=every, choices=every, help="--per-gemm's MLPs")
    args = parser.parse_args()
    torch.manual_seed(0)
    per_gemm(args) if args.per_gemm else mlps(args)  # each writes its rows as they come


if __name__ == "__main__":
    main()
