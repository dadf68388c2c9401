"""Do FP8 matrix products pay at CrossViT's widths? (issue 14's last candidate)

    python benchmarks/fp8_gemm.py --models crossvit_9 crossvit_18 --out fp8.json
    python benchmarks/fp8_gemm.py --smoke      # tiny, on the CPU: checks the scaling, not the speed

For every linear layer of the models' transformer blocks (qkv, proj, fc1, fc2 of each branch; M = batch x tokens
rows), the three products of a training step (forward; the input's and the weight's gradients) are timed in bf16
and as tensorwise-scaled FP8 through `torch._scaled_mm` (e4m3 activations and weights, e5m2 gradients: the recipe
of torchao's float8 training), plus what FP8 adds: each operand's amax, scale and cast, and the transposed copies
that `_scaled_mm`'s layouts need (row-major first operand, column-major second), compiled. Beside the casts as
compiled here stands their floor: 4 bytes an element of the input and the gradient (read bf16 once, write FP8 and its
transpose), at the copy rate measured in the run, as if the amax came free from the producing kernel. Summed over
the blocks, these bound what FP8 could save on the step's block GEMMs; the fp8/bf16 ratios decide.
"""

from __future__ import annotations

import torch
from throughput import shape_benchmark, timed, write_shape_result

from crossvit.models import load_config

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2


def block_linears(name: str, batch: int) -> list[dict]:
    """One row per distinct linear of the blocks: its (M, K, N) and how many of it a step runs."""
    cfg = load_config("model", name)
    rows = []
    for branch, (img, patch, dim, ratio) in enumerate(zip(cfg.img_size, cfg.patch_size, cfg.embed_dim, cfg.mlp_ratio)):
        tokens, blocks = (img // patch) ** 2 + 1, sum(stage[branch] for stage in cfg.depth)
        hidden = int(dim * ratio)
        for layer, k, n in (("qkv", dim, 3 * dim), ("proj", dim, dim), ("fc1", dim, hidden), ("fc2", hidden, dim)):
            rows.append(dict(model=name, branch=branch, layer=layer, M=batch * tokens, K=k, N=n, count=blocks))
    return rows


def to_fp8(t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tensorwise scaling: t and its transpose in FP8 (both row-major) and the inverse scale _scaled_mm takes."""
    fmax = torch.finfo(dtype).max
    scale = fmax / t.abs().amax().float().clamp(min=1e-12)
    q = (t.float() * scale).clamp(-fmax, fmax).to(dtype)
    return q, q.t().contiguous(), scale.reciprocal()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def measure(shape: dict, device: torch.device, steps: int, warmup: int, sets: int, cast) -> dict:
    """bf16 and FP8 times (ms) of one linear's three products, the FP8 casts apart, and FP8's relative error."""
    m, k, n = shape["M"], shape["K"], shape["N"]
    bf = torch.bfloat16
    # several input sets in turn, so that the timed products do not run out of L2
    xs = [torch.randn(m, k, device=device, dtype=bf) for _ in range(sets)]
    gs = [torch.randn(m, n, device=device, dtype=bf) for _ in range(sets)]
    w = torch.randn(n, k, device=device, dtype=bf) / k**0.5
    turn = iter(range(10**9))

    def bf16_step(i: int):
        x, g = xs[i], gs[i]
        return x @ w.t(), g @ w, g.t() @ x

    def casts(i: int):
        return cast(xs[i], E4M3), cast(gs[i], E5M2), cast(w, E4M3)

    quantized = [casts(i) for i in range(sets)]

    def fp8_step(i: int):
        (xq, xtq, xs_), (gq, gtq, gs_), (wq, wtq, ws_) = quantized[i]
        y = torch._scaled_mm(xq, wq.t(), scale_a=xs_, scale_b=ws_, out_dtype=bf)
        dx = torch._scaled_mm(gq, wtq.t(), scale_a=gs_, scale_b=ws_, out_dtype=bf)
        dw = torch._scaled_mm(gtq, xtq.t(), scale_a=gs_, scale_b=xs_, out_dtype=bf)
        return y, dx, dw

    errors = [rel(a, b) for a, b in zip(fp8_step(0), bf16_step(0))]  # the same inputs for both
    times = dict(
        bf16_ms=timed(lambda: bf16_step(next(turn) % sets), device, steps, warmup) * 1e3,
        fp8_gemm_ms=timed(lambda: fp8_step(next(turn) % sets), device, steps, warmup) * 1e3,
        fp8_cast_ms=timed(lambda: casts(next(turn) % sets), device, steps, warmup) * 1e3,
    )
    return {**shape, **{key: round(v, 4) for key, v in times.items()}, "fp8_rel_err": [round(e, 4) for e in errors]}


def main() -> None:
    args, device, env, bytes_rate = shape_benchmark(
        __doc__, ["crossvit_9", "crossvit_18"], "tiny and on the CPU, eager casts"
    )
    cuda = device.type == "cuda"
    cast = torch.compile(to_fp8) if cuda else to_fp8
    rows, totals = [], {}
    head = "model, branch, layer, M x K x N, x, bf16 ms, fp8 GEMMs ms, fp8 casts ms, casts' floor ms, fp8 / bf16, error"
    print("| " + head.replace(", ", " | ") + " |\n" + "|---" * (head.count(",") + 1) + "|")
    for name in args.models:
        for shape in block_linears(name, args.batch_size):
            r = measure(shape, device, args.steps, args.warmup, 2 if args.smoke else 3, cast)
            r["cast_floor_ms"] = round(1e3 * 4 * r["M"] * (r["K"] + r["N"]) / bytes_rate, 4)
            r["ratio"] = round((r["fp8_gemm_ms"] + r["fp8_cast_ms"]) / r["bf16_ms"], 3)
            rows.append(r)
            t = totals.setdefault(name, dict(bf16_ms=0.0, fp8_ms=0.0, fp8_floor_ms=0.0))
            t["bf16_ms"] += r["count"] * r["bf16_ms"]
            t["fp8_ms"] += r["count"] * (r["fp8_gemm_ms"] + r["fp8_cast_ms"])
            t["fp8_floor_ms"] += r["count"] * (r["fp8_gemm_ms"] + r["cast_floor_ms"])
            print(
                f"| {name} | {r['branch']} | {r['layer']} | {r['M']} x {r['K']} x {r['N']} | {r['count']} | "
                f"{r['bf16_ms']:.3f} | {r['fp8_gemm_ms']:.3f} | {r['fp8_cast_ms']:.3f} | {r['cast_floor_ms']:.3f} | "
                f"{r['ratio']:.2f} | "
                f"{max(r['fp8_rel_err']):.3f} |",
                flush=True,
            )
    for name, t in totals.items():
        t["ratio"], t["floor_ratio"] = round(t["fp8_ms"] / t["bf16_ms"], 3), round(t["fp8_floor_ms"] / t["bf16_ms"], 3)
        print(
            f"{name}: block linears a step {t['bf16_ms']:.2f} ms in bf16, {t['fp8_ms']:.2f} ms in fp8 ({t['ratio']}x), "
            f"{t['fp8_floor_ms']:.2f} ms with casts at their floor ({t['floor_ratio']}x)"
        )
    write_shape_result(args.out, env, rows, totals)


if __name__ == "__main__":
    main()
