"""A hand-written LayerNorm, forward and backward, in Triton: the fp32 residual stream in, bf16 out, as CrossViT's
blocks use it under autocast. benchmarks/norm_floor.py times it beside PyTorch's and inductor's LayerNorm to see
whether a kernel of ours gets nearer the bytes' floor, and `throughput.py --triton-norm` puts it in our model's
step (issue 14). Not used by the model otherwise: on an H100 it was slower than inductor's compiled LayerNorm, alone
(0.711 against 0.509 ms at 102,656 x 224) and in crossvit_18's step (-7.7%; docs/speed_notes.md, third session).

    python benchmarks/triton_layer_norm.py           # on a GPU: checks it against F.layer_norm
    TRITON_INTERPRET=1 python benchmarks/triton_layer_norm.py --cpu   # the same check in Triton's interpreter

Forward: a program normalises ROWS rows at a time (the row, up to BLOCK = next power of two of D wide, stays in
registers) and keeps each row's mean and 1/std. Backward: a program walks its share of rows in tiles of ROWS,
writes dx, and sums dy * xhat and dy over its rows into one partial row of dw and db; the partials are summed after.
In the interpreter, Triton's fp32 -> bf16 cast truncates where the GPU rounds to nearest, so there y lands one bf16
step off torch's rounding in half the elements (4e-3); dx, dw and db match fp32 to 1e-7.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import nn


@triton.jit
def _forward(X, Y, W, B, Mean, Rstd, M, N, eps, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK)
    row_ok, col_ok = rows < M, cols < N
    mask = row_ok[:, None] & col_ok[None, :]
    offsets = rows[:, None] * N + cols[None, :]
    x = tl.load(X + offsets, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1) / N
    xc = tl.where(mask, x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=1) / N + eps)
    w = tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)
    b = tl.load(B + cols, mask=col_ok, other=0.0).to(tl.float32)
    y = xc * rstd[:, None] * w[None, :] + b[None, :]
    tl.store(Y + offsets, y.to(Y.dtype.element_ty), mask=mask)
    tl.store(Mean + rows, mean, mask=row_ok)
    tl.store(Rstd + rows, rstd, mask=row_ok)


@triton.jit
def _backward(DY, X, W, Mean, Rstd, DX, DW, DB, M, N, rows_per_program, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    col_ok = cols < N
    w = tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK], dtype=tl.float32)
    db = tl.zeros([BLOCK], dtype=tl.float32)
    first = pid * rows_per_program
    for start in range(first, first + rows_per_program, ROWS):
        rows = start + tl.arange(0, ROWS)
        row_ok = (rows < M) & (rows < first + rows_per_program)
        mask = row_ok[:, None] & col_ok[None, :]
        offsets = rows[:, None] * N + cols[None, :]
        x = tl.load(X + offsets, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + offsets, mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(Mean + rows, mask=row_ok, other=0.0)
        rstd = tl.load(Rstd + rows, mask=row_ok, other=0.0)
        xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
        g = dy * w[None, :]
        c1 = tl.sum(g * xhat, axis=1) / N
        c2 = tl.sum(g, axis=1) / N
        dx = (g - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
        tl.store(DX + offsets, dx.to(DX.dtype.element_ty), mask=mask)
        dw += tl.sum(dy * xhat, axis=0)
        db += tl.sum(dy, axis=0)
    tl.store(DW + pid * N + cols, dw, mask=col_ok)
    tl.store(DB + pid * N + cols, db, mask=col_ok)


def forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float = 1e-5, out_dtype=torch.bfloat16, rows=8):
    """(y in out_dtype, mean, rstd) of a LayerNorm over the last dim of the 2-D, contiguous `x`."""
    m, n = x.shape
    y = torch.empty(m, n, device=x.device, dtype=out_dtype)
    mean = torch.empty(m, device=x.device, dtype=torch.float32)
    rstd = torch.empty(m, device=x.device, dtype=torch.float32)
    _forward[(triton.cdiv(m, rows),)](x, y, w, b, mean, rstd, m, n, eps, ROWS=rows, BLOCK=triton.next_power_of_2(n))
    return y, mean, rstd


def backward(dy, x, w, mean, rstd, programs: int = 264, rows: int = 8):
    """(dx in x's dtype, dw, db) from the output's gradient and forward's mean and rstd."""
    m, n = x.shape
    per = triton.cdiv(m, programs)
    programs = triton.cdiv(m, per)
    dx = torch.empty_like(x)
    dw = torch.empty(programs, n, device=x.device, dtype=torch.float32)
    db = torch.empty(programs, n, device=x.device, dtype=torch.float32)
    _backward[(programs,)](dy, x, w, mean, rstd, dx, dw, db, m, n, per, ROWS=rows, BLOCK=triton.next_power_of_2(n))
    return dx, dw.sum(0), db.sum(0)


# Custom ops, so that torch.compile and CUDA graphs take each kernel whole instead of tracing the launch.
@torch.library.custom_op("crossvit_bench::layer_norm", mutates_args=())
def layer_norm(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float, out_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, mean, rstd) over the last dim of `x`, of any leading shape."""
    y, mean, rstd = forward(x.reshape(-1, x.shape[-1]).contiguous(), w, b, eps, out_dtype)
    return y.view(x.shape), mean, rstd


@layer_norm.register_fake
def _(x, w, b, eps, out_dtype):
    rows = x.numel() // x.shape[-1]
    return x.new_empty(x.shape, dtype=out_dtype), x.new_empty(rows), x.new_empty(rows)


@torch.library.custom_op("crossvit_bench::layer_norm_backward", mutates_args=())
def layer_norm_backward(
    dy: torch.Tensor, x: torch.Tensor, w: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx in x's dtype, dw, db in w's dtype)."""
    n = x.shape[-1]
    dx, dw, db = backward(dy.reshape(-1, n).contiguous(), x.reshape(-1, n).contiguous(), w, mean, rstd)
    return dx.view(x.shape), dw.to(w.dtype), db.to(w.dtype)


@layer_norm_backward.register_fake
def _(dy, x, w, mean, rstd):
    return torch.empty_like(x), torch.empty_like(w), torch.empty_like(w)


def _setup_context(ctx, inputs, output):
    x, w, _, _, _ = inputs
    _, mean, rstd = output
    ctx.save_for_backward(x, w, mean, rstd)


def _backward_rule(ctx, dy, _dmean, _drstd):
    x, w, mean, rstd = ctx.saved_tensors
    dx, dw, db = layer_norm_backward(dy, x, w, mean, rstd)
    return dx, dw, db, None, None


layer_norm.register_autograd(_backward_rule, setup_context=_setup_context)


class TritonLayerNorm(nn.LayerNorm):
    """nn.LayerNorm through the kernels above; under autocast it writes the autocast dtype, as the next linear
    layer would cast it anyway (PyTorch's LayerNorm writes fp32 there, and inductor folds the cast in)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device.type
        out_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        return layer_norm(x, self.weight, self.bias, self.eps, out_dtype)[0]


def use_in(model: nn.Module) -> int:
    """Every nn.LayerNorm of `model` runs through TritonLayerNorm (same parameters and state_dict); returns how
    many."""
    norms = [m for m in model.modules() if type(m) is nn.LayerNorm]
    for m in norms:
        m.__class__ = TritonLayerNorm
    return len(norms)


def check(m: int, n: int, device: torch.device) -> dict[str, float]:
    """Relative L2 errors of y, dx, dw, db against F.layer_norm in fp32 (y against its bf16 rounding)."""
    x = torch.randn(m, n, device=device) * 3 + 1
    w, b = torch.randn(n, device=device), torch.randn(n, device=device)
    dy = torch.randn(m, n, device=device).to(torch.bfloat16)
    xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
    ref = F.layer_norm(xr, (n,), wr, br)
    ref.backward(dy.float())
    y, mean, rstd = forward(x, w, b)
    dx, dw, db = backward(dy, x, w, mean, rstd)

    def rel(a, r):
        return ((a.float() - r.float()).norm() / r.float().norm()).item()

    return dict(y=rel(y, ref.to(torch.bfloat16)), dx=rel(dx, xr.grad), dw=rel(dw, wr.grad), db=rel(db, br.grad))


def check_module(device: torch.device) -> dict[str, float]:
    """TritonLayerNorm against nn.LayerNorm with the same parameters on a [2, 37, 96] input: output and gradients."""
    ref = nn.LayerNorm(96, eps=1e-6).to(device)
    nn.init.normal_(ref.weight), nn.init.normal_(ref.bias)
    ours = nn.Sequential(nn.LayerNorm(96, eps=1e-6)).to(device)
    ours[0].load_state_dict(ref.state_dict())
    assert use_in(ours) == 1
    x = torch.randn(2, 37, 96, device=device)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    dy = torch.randn(2, 37, 96, device=device)
    ref(xa).backward(dy)
    ours(xb).backward(dy)

    def rel(a, r):
        return ((a.float() - r.float()).norm() / r.float().norm()).item()

    w, b = ours[0].weight.grad, ours[0].bias.grad
    return dict(dx=rel(xb.grad, xa.grad), dw=rel(w, ref.weight.grad), db=rel(b, ref.bias.grad))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="small shapes on the CPU (set TRITON_INTERPRET=1)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.cpu else "cuda")
    for m, n in ((37, 96), (50, 224), (19, 448)) if args.cpu else ((50432, 448), (102656, 224), (1000, 1344)):
        print(f"{m} x {n}:", {k: f"{v:.1e}" for k, v in check(m, n, device).items()})
    print("TritonLayerNorm against nn.LayerNorm (fp32):", {k: f"{v:.1e}" for k, v in check_module(device).items()})
