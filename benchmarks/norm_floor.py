"""How far the step's memory-bound passes run from their bytes' floor (issue 14: 23 of crossvit_18's 62 ms).

    python benchmarks/norm_floor.py --models crossvit_18 crossvit_9 --out norm.json
    python benchmarks/norm_floor.py --smoke      # tiny, on the CPU, eager: checks that the script runs
    TRITON_INTERPRET=1 python benchmarks/norm_floor.py --smoke   # the same with our LayerNorm in the interpreter

At each branch's activation shape (M = batch x tokens rows), forward and backward of the two passes every block
makes: LayerNorm of the fp32 residual stream to a bf16 output (twice a block), and GELU over the MLP's bf16 hidden
activations (once a block). Each is timed eager (PyTorch's own kernels) and compiled (inductor's Triton, what the
step runs), LayerNorm also as benchmarks/triton_layer_norm.py's hand-written kernels, beside its floor: LayerNorm
reads x (fp32) and writes y (bf16), then reads dy (bf16) and x and writes dx (fp32): 16 bytes an element; GELU
reads and writes bf16 forward, reads dy and h and writes dh backward: 10 bytes. The floor is those bytes at the
device-to-device copy rate measured in the run. Summed over the blocks, the table says how much of the step a pass
nearer its floor (a hand-written kernel, say) could win.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from throughput import shape_benchmark, timed, write_shape_result

from crossvit.models import load_config


def shapes(name: str, batch: int) -> list[dict]:
    """The passes of one step, per branch: LayerNorm (2 a block) and GELU (1 a block), with their element counts."""
    cfg = load_config("model", name)
    rows = []
    for branch, (img, patch, dim, ratio) in enumerate(zip(cfg.img_size, cfg.patch_size, cfg.embed_dim, cfg.mlp_ratio)):
        m, blocks = batch * ((img // patch) ** 2 + 1), sum(stage[branch] for stage in cfg.depth)
        rows.append(dict(model=name, branch=branch, op="layer_norm", M=m, D=dim, count=2 * blocks, bytes_per=16))
        rows.append(dict(model=name, branch=branch, op="gelu", M=m, D=int(dim * ratio), count=blocks, bytes_per=10))
    return rows


def pass_of(op: str, d: int, device: torch.device) -> tuple[Callable, torch.dtype]:
    """The pass as a function of its input (LayerNorm's weight and bias inside it), and the input's dtype.
    "layer_norm_triton" is LayerNorm through benchmarks/triton_layer_norm.py's kernels, under autograd as the others."""
    if op.startswith("layer_norm"):
        w = torch.ones(d, device=device, requires_grad=True)
        b = torch.zeros(d, device=device, requires_grad=True)
        if op == "layer_norm_triton":
            from triton_layer_norm import layer_norm

            return (lambda x: layer_norm(x, w, b, 1e-5, torch.bfloat16)[0]), torch.float32
        return (lambda x: F.layer_norm(x, (d,), w, b).to(torch.bfloat16)), torch.float32
    return (lambda h: F.gelu(h)), torch.bfloat16


def measure(row: dict, device: torch.device, steps: int, warmup: int, compiled: bool, op: str | None = None) -> float:
    """ms of one forward and backward of the pass (the row's, or `op`) at the row's shape."""
    fn, dtype = pass_of(op or row["op"], row["D"], device)
    if compiled:
        fn = torch.compile(fn)
    x = torch.randn(row["M"], row["D"], device=device, dtype=dtype, requires_grad=True)
    dy = torch.randn(row["M"], row["D"], device=device, dtype=torch.bfloat16)

    def step():
        fn(x).backward(dy)
        x.grad = None

    return timed(step, device, steps, warmup) * 1e3


def main() -> None:
    args, device, env, rate = shape_benchmark(__doc__, ["crossvit_18", "crossvit_9"], "tiny and on the CPU, eager only")
    cuda = device.type == "cuda"
    print(
        "| model | branch | pass | M x D | x | eager ms | compiled ms | ours (Triton) ms | floor ms | compiled/floor |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows, totals = [], {}
    for name in args.models:
        for row in shapes(name, args.batch_size):
            row["eager_ms"] = round(measure(row, device, args.steps, args.warmup, compiled=False), 4)
            row["compiled_ms"] = round(measure(row, device, args.steps, args.warmup, compiled=cuda), 4)
            if row["op"] == "layer_norm" and (cuda or os.environ.get("TRITON_INTERPRET") == "1"):
                row["triton_ms"] = round(
                    measure(row, device, args.steps, args.warmup, compiled=False, op="layer_norm_triton"), 4
                )
            row["floor_ms"] = round(1e3 * row["bytes_per"] * row["M"] * row["D"] / rate, 4)
            rows.append(row)
            t = totals.setdefault(name, {})
            # LayerNorm's rows also sum on their own: ours against inductor's over the same rows
            parts = [("", k) for k in ("eager_ms", "compiled_ms", "floor_ms")]
            parts += [("layer_norm_", k) for k in ("compiled_ms", "triton_ms") if "triton_ms" in row]
            for prefix, key in parts:
                t[prefix + key] = t.get(prefix + key, 0.0) + row["count"] * row[key]
            print(
                f"| {name} | {row['branch']} | {row['op']} | {row['M']} x {row['D']} | {row['count']} | "
                f"{row['eager_ms']:.3f} | {row['compiled_ms']:.3f} | {row.get('triton_ms', float('nan')):.3f} | "
                f"{row['floor_ms']:.3f} | "
                f"{row['compiled_ms'] / row['floor_ms']:.2f} |",
                flush=True,
            )
    for name, t in totals.items():
        print(
            f"{name}: these passes a step {t['compiled_ms']:.2f} ms compiled, {t['eager_ms']:.2f} eager, "
            f"{t['floor_ms']:.2f} at the floor"
            + (
                f"; LayerNorm alone {t['layer_norm_compiled_ms']:.2f} compiled, {t['layer_norm_triton_ms']:.2f} ours"
                if "layer_norm_triton_ms" in t
                else ""
            )
        )
    write_shape_result(args.out, env, rows, totals)


if __name__ == "__main__":
    main()
