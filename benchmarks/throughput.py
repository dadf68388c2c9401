"""Training and inference throughput of our CrossViT against timm's, side by side in one process.

    python benchmarks/throughput.py --models crossvit_9 crossvit_18 --batch-size 256 --out results.json
    python benchmarks/throughput.py --smoke      # tiny, on the CPU (make test runs it)
    python benchmarks/throughput.py --models crossvit_18 --no-timm --sdpa flash --inductor coordinate_descent_tuning=1
    python benchmarks/throughput.py --models crossvit_9 crossvit_18 --modes reduce-overhead --require-ratio 1.05

Variants (issue 14's candidates): `--sdpa` picks PyTorch's attention backend, `--inductor KEY=VALUE` sets
torch._inductor.config entries, `--bf16-weights` runs the model in bf16 without autocast (activations, the residual
stream included, in bf16) and AdamW on fp32 master copies of the weights. Each row records the variant and the
seconds its first step took (compilation, autotuning, graph capture). `--require-ratio 1.05` is the regression
guard: the script exits 1, naming the model, when ours trains at under 1.05x timm's best.

`--sdpa flex`, `fa4` and `fa4-packed` route the blocks' self-attention to FlexAttention or FlashAttention-4
(benchmarks/fa4_attention.py, ours only; `--fa4-tiles` takes the tiles its `--tune` found).

`--free norm gelu attention` is an oracle, not a model: ours with those ops swapped for stand-ins that cost nothing
(LayerNorm and GELU become identities, attention returns its values), so its img/s bounds what any kernel that fuses
them away (a LayerNorm prologue, a GELU epilogue, a faster attention) could give.

A train step is forward, backward and fused AdamW under bf16 autocast on GPU-resident random data (the model's
own cost, no data loading). MFU = 3 x 2 x MACs/image x img/s / the bf16 matmul rate measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import date
from functools import partial

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from quack_mlp import MODES as QUACK_MLP_MODES
from quack_mlp import fused_mlp
from timm.layers import DropPath
from timm.optim import create_optimizer_v2
from torch.nn.attention import flex_attention as flex

from crossvit.flops import count
from crossvit.models import create_model, load_config
from crossvit.weights import TIMM_NAMES


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device, steps: int, warmup: int) -> float:
    """Median seconds per call over `steps` calls after `warmup` calls (CUDA events on the GPU)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def matmul_rate(device: torch.device) -> float:
    """Measured bf16 matmul FLOP/s (2 per multiply-add) on an 8192^3 product."""
    if device.type != "cuda":
        return float("nan")
    n = 8192
    a, b = (
        torch.randn(n, n, device=device, dtype=torch.bfloat16),
        torch.randn(n, n, device=device, dtype=torch.bfloat16),
    )
    return 2 * n**3 / timed(lambda: a @ b, device, steps=20, warmup=5)


def copy_rate(device: torch.device) -> float:
    """Measured device memory bytes/s of a 1 GiB device-to-device copy (bytes read plus bytes written)."""
    if device.type != "cuda":
        return float("nan")
    src = torch.empty(2**30, dtype=torch.uint8, device=device).random_()
    dst = torch.empty_like(src)
    return 2 * src.numel() / timed(lambda: dst.copy_(src), device, steps=20, warmup=5)


def shape_benchmark(doc: str, models: list[str], smoke: str) -> tuple[argparse.Namespace, torch.device, dict, float]:
    """The per-shape benchmarks' (fp8_gemm.py, norm_floor.py) command line, device, env (printed) and copy rate:
    --models, --batch-size, --steps, --warmup, --out, and --smoke (`smoke` says what it does; crossvit_tiny, batch 1,
    one step, on the CPU)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=models)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help=smoke)
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if args.smoke:
        args.models, args.batch_size, args.steps, args.warmup = ["crossvit_tiny"], 1, 1, 0
    rate = copy_rate(device)
    env = dict(
        date=str(date.today()),
        device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        torch=torch.__version__,
        batch_size=args.batch_size,
        copy_gb_s=round(rate / 1e9, 1),
    )
    print(json.dumps(env))
    return args, device, env, rate


def write_shape_result(out: str | None, env: dict, rows: list[dict], totals: dict) -> None:
    """A per-shape benchmark's --out file: {"env", "rows", "totals"}, as docs/speed_2026-11-27.json keeps them."""
    if out:
        with open(out, "w") as f:
            json.dump({"env": env, "rows": rows, "totals": totals}, f, indent=1)


SDPA_BACKENDS = ("default", "cudnn", "flash", "efficient", "math")
# kernels of their own, inside each run (variant_run)
SDPA_STAND_INS = ("flex", "fa4", "fa4-packed", "fa4-packed-all", "fa4-packed-train")


def add_variant_args(parser: argparse.ArgumentParser) -> None:
    """The step's variants, shared with profile_step.py."""
    parser.add_argument(
        "--sdpa",
        default="default",
        choices=SDPA_BACKENDS + SDPA_STAND_INS,
        help="the only SDPA backend allowed; flex: self-attention through FlexAttention (Triton) instead of SDPA; "
        "fa4, fa4-packed (ours only): through FlashAttention-4 (benchmarks/fa4_attention.py), fa4-packed in "
        "training and at head dims up to 32 in inference as kernels.attention=fa4 does, fa4-packed-all in every "
        "inference, fa4-packed-train in none",
    )
    parser.add_argument("--fa4-tiles", default="", help="--sdpa fa4*: the tiles of a `fa4_attention.py --tune` run")
    parser.add_argument(
        "--inductor",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="torch._inductor.config entries, e.g. "
        "coordinate_descent_tuning=1 or max_autotune_gemm_backends=ATEN,TRITON",
    )
    parser.add_argument(
        "--bf16-weights", action="store_true", help="bf16 model and activations, AdamW on fp32 master weights"
    )
    parser.add_argument(
        "--triton-norm", action="store_true", help="ours only: LayerNorms through benchmarks/triton_layer_norm.py"
    )
    parser.add_argument(
        "--quack-mlp",
        default="off",
        choices=("off", *QUACK_MLP_MODES),
        help="ours only: each MLP through quack-kernels' fused GEMM epilogues (benchmarks/quack_mlp.py): every "
        "GEMM on quack's kernels or (epilogues*) only the two that fuse GELU, with quack's tiles or its autotuning",
    )
    parser.add_argument(
        "--norm-all-tokens",
        action="store_true",
        help="ours only: the heads' final LayerNorm over every token, then the CLS tokens taken (timm's way, and "
        "ours before 2026-11-29), instead of over the CLS tokens alone",
    )
    parser.add_argument(
        "--free",
        nargs="*",
        default=[],
        choices=FREE_OPS,
        help="ours only, an oracle: these ops cost nothing (identity stand-ins), bounding what fusing them can save",
    )


def apply_variant(args: argparse.Namespace) -> dict:
    """Set the process-wide switches of `args`; returns them for the JSON rows."""
    if args.sdpa in SDPA_BACKENDS[1:]:  # not the stand-ins: inside each run (variant_run), not for the FLOP count
        for backend in SDPA_BACKENDS[1:]:
            getattr(torch.backends.cuda, f"enable_{backend.replace('efficient', 'mem_efficient')}_sdp")(
                backend == args.sdpa
            )
    for item in args.inductor:
        key, _, value = item.partition("=")
        current = torch._inductor.config
        *path, leaf = key.split(".")
        for part in path:
            current = getattr(current, part)
        old = getattr(current, leaf)  # an unknown key fails here, before any run
        setattr(current, leaf, type(old)(int(value)) if isinstance(old, (bool, int)) else value)
    if args.fa4_tiles:  # process-wide, as flash-attn-4's own tile choice is
        from crossvit.models.kernels import use_fa4_tiles

        use_fa4_tiles(args.fa4_tiles)
    return dict(
        sdpa=args.sdpa,
        inductor=list(args.inductor),
        bf16_weights=args.bf16_weights,
        triton_norm=args.triton_norm,
        free=list(args.free),
        norm_all_tokens=args.norm_all_tokens,
        fa4_tiles=args.fa4_tiles,
        quack_mlp=args.quack_mlp,
    )


@contextmanager
def sdpa_replaced(stand_in: Callable[[Callable], Callable] | None) -> Iterator[None]:
    """Inside the `with` block, SDPA, which timm's blocks and ours look up on torch.nn.functional at each call, is
    `stand_in(sdpa)` (the real one given, to fall back on); unchanged when `stand_in` is None."""
    sdpa = F.scaled_dot_product_attention
    if stand_in is not None:
        F.scaled_dot_product_attention = stand_in(sdpa)
    try:
        yield
    finally:
        F.scaled_dot_product_attention = sdpa


def self_attention_through(kernel: Callable) -> Callable[[Callable], Callable]:
    """An SDPA stand-in for sdpa_replaced: self-attention (as many queries as keys; no mask, dropout or causality)
    goes to `kernel(q, k, v, scale)`, anything else (the CLS-only cross-attention) to SDPA. Functions, not partials:
    dynamo traces functions."""

    def stand_in(sdpa: Callable) -> Callable:
        def kernel_or_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            if (
                q.shape[-2] != k.shape[-2]
                or args
                or any(kwargs.get(key) for key in ("attn_mask", "dropout_p", "is_causal"))
            ):
                return sdpa(q, k, v, *args, **kwargs)
            return kernel(q, k, v, kwargs.get("scale"))

        return kernel_or_sdpa

    return stand_in


def _flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None) -> torch.Tensor:
    """`--sdpa flex`: FlexAttention, inductor's Triton flash attention."""
    return flex.flex_attention(q, k, v, scale=scale)


FREE_OPS = ("norm", "gelu", "attention")


def _free_attention(sdpa: Callable) -> Callable:
    """`--free attention`'s SDPA: the values of the first len(q) tokens, in SDPA's output shape."""
    return lambda q, k, v, *args, **kwargs: v[..., : q.shape[-2], :]


@contextmanager
def free_ops(model: nn.Module, ops: Sequence[str]) -> Iterator[nn.Module]:
    """`model` with `ops` (FREE_OPS) made free: its LayerNorms and GELUs swapped for identities for good, and SDPA a
    stand-in inside the `with` block."""
    swap = tuple(t for op, t in (("norm", nn.LayerNorm), ("gelu", nn.GELU)) if op in ops)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if swap and isinstance(child, swap):
                setattr(parent, name, nn.Identity())
    with sdpa_replaced(_free_attention if "attention" in ops else None):
        yield model


@contextmanager
def variant_run(args: argparse.Namespace, model: nn.Module, impl: str) -> Iterator[nn.Module]:
    """One run's share of the variant (add_variant_args), for throughput.py and profile_step.py alike: ours with
    `--triton-norm`'s LayerNorms, `--free`'s stand-ins, `--sdpa fa4`'s or `fa4-packed`'s attention and
    `--quack-mlp`'s MLPs; `--sdpa flex`'s SDPA inside the `with` block (apply_variant sets the process-wide rest)."""
    ours = impl == "ours"
    if args.norm_all_tokens and ours:

        def cls_features(x: torch.Tensor) -> list[torch.Tensor]:
            return [t[:, :1] for t in model.forward_features(x)]

        model._cls_features = cls_features
    if args.triton_norm and ours:
        import triton_layer_norm

        triton_layer_norm.use_in(model)
    stand_in, packed = (self_attention_through(_flex) if args.sdpa == "flex" else None), nullcontext()
    if args.sdpa.startswith("fa4") and ours:
        import fa4_attention

        if args.sdpa == "fa4":
            stand_in = self_attention_through(fa4_attention.attention)
        else:
            inference = {"fa4-packed-all": "all", "fa4-packed-train": "none"}.get(args.sdpa, "framework")
            packed = fa4_attention.packed_attention(model, inference)
    mlp = nullcontext()
    if args.quack_mlp != "off" and ours:
        mlp = fused_mlp(model, args.quack_mlp)
    with free_ops(model, args.free if ours else ()), sdpa_replaced(stand_in), packed, mlp:
        yield model


def logits_of(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Ours exposes the branch heads; averaging them is the model's forward (timm's forward does the same)."""
    if hasattr(model, "forward_branches"):
        return torch.stack(model.forward_branches(x)).mean(0)
    return model(x)


def master_weights_step(model: torch.nn.Module) -> Callable[[], None]:
    """Casts the model to bf16; returns the optimizer step of crossvit.precision's scheme outside Lightning: copy the
    bf16 gradients into fp32 masters, fused AdamW on those (timm's weight-decay groups), write the weights back."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    named = list(model.named_parameters())
    masters = [torch.nn.Parameter(p.detach().float().clone()) for _, p in named]
    model.to(torch.bfloat16)  # the same Parameter objects, now bf16
    for m in masters:
        m.grad = torch.zeros_like(m)
    decay = [m for (n, p), m in zip(named, masters) if p.ndim > 1 and n not in skip]
    no_decay = [m for (n, p), m in zip(named, masters) if not (p.ndim > 1 and n not in skip)]
    groups = [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-4, fused=True)
    params = [p for _, p in named]

    def step() -> None:
        # (a parameter the step left without a gradient, as under --free attention, keeps its master's last one)
        grads = [(m.grad, p.grad) for m, p in zip(masters, params) if p.grad is not None]
        torch._foreach_copy_([m for m, _ in grads], [g for _, g in grads])
        opt.step()
        torch._foreach_copy_([p.data for p in params], masters)
        model.zero_grad(set_to_none=True)

    return step


def training_step(
    model: torch.nn.Module, mode: str, batch: int, device: torch.device, bf16_weights: bool = False
) -> tuple[Callable[[], None], Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """(step, logits, x): one training step (bf16 autocast on a GPU, cross-entropy, backward, fused AdamW) on a
    GPU-resident random batch x, and the model's forward compiled in `mode`, for ours and timm's models alike.
    `bf16_weights`: the model in bf16 without autocast, AdamW on fp32 master weights (`master_weights_step`)."""
    size = model.input_size if hasattr(model, "input_size") else model.img_size[0]
    cuda = device.type == "cuda"
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if cuda and not bf16_weights else nullcontext()
    fwd = model.forward_branches if hasattr(model, "forward_branches") else model.forward
    if mode != "eager":
        fwd = torch.compile(fwd, mode=None if mode == "compile" else mode)
    if bf16_weights:
        optimizer_step = master_weights_step(model)
    else:
        opt = create_optimizer_v2(model, opt="adamw", lr=1e-4, weight_decay=0.05, fused=cuda or None)

        def optimizer_step() -> None:
            opt.step()
            opt.zero_grad(set_to_none=True)

    dtype = torch.bfloat16 if bf16_weights else torch.float32
    x = torch.randn(batch, model.in_chans, size, size, device=device, dtype=dtype)
    y = torch.randint(0, model.num_classes, (batch,), device=device)

    def logits(inp: torch.Tensor) -> torch.Tensor:
        out = fwd(inp)
        return torch.stack(out).mean(0) if isinstance(out, (list, tuple)) else out

    def step() -> None:
        with amp:
            loss = F.cross_entropy(logits(x).float(), y)
        loss.backward()
        optimizer_step()

    return step, logits, x


def inference_step(
    logits: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device
) -> Callable[[], None]:
    """The inference a row times (and `profile_step.py --infer` profiles): training_step's `logits` on its batch `x`,
    in inference mode, under bf16 autocast on a GPU. The model is to be in eval mode."""
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    def infer() -> None:
        with torch.inference_mode(), amp:
            logits(x)

    return infer


def measure(
    model: torch.nn.Module,
    mode: str,
    batch: int,
    device: torch.device,
    steps: int,
    warmup: int,
    bf16_weights: bool = False,
    infer_too: bool = True,
    train_too: bool = True,
) -> dict:
    """Train-step img/s (NaN unless `train_too`), inference img/s (NaN unless `infer_too`) and peak training memory
    of one model in one compile mode; `first_step_s` is the first training step's, or the first inference's."""
    model = model.to(device)
    train_step, logits, x = training_step(model, mode, batch, device, bf16_weights)
    infer = inference_step(logits, x, device)
    model.train() if train_too else model.eval()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    train_step() if train_too else infer()
    _sync(device)
    first_step_s = time.perf_counter() - start
    t_train = timed(train_step, device, steps, warmup) if train_too else float("nan")
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" and train_too else float("nan")

    model.eval()
    t_infer = timed(infer, device, steps, warmup) if infer_too else float("nan")
    model.train()
    return {
        "train_img_s": batch / t_train,
        "infer_img_s": batch / t_infer,
        "peak_mem_gib": peak,
        "first_step_s": round(first_step_s, 1),
    }


def compare_logits(ours: torch.nn.Module, ref: torch.nn.Module, device: torch.device) -> dict[str, float]:
    """Relative L2 differences of logits, ours loaded with timm's weights: ours against timm under the benchmark's
    precision, and (the bf16 tolerance) each model's against timm's fp32 logits."""
    ours.load_state_dict(ref.state_dict())
    ours, ref = ours.to(device).eval(), ref.to(device).eval()
    x = torch.randn(8, 3, ours.input_size, ours.input_size, device=device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    with torch.no_grad():
        exact = ref(x).float()
        with amp:
            a, b = logits_of(ours, x).float(), ref(x).float()

    def rel(u: torch.Tensor, v: torch.Tensor) -> float:
        return ((u - v).norm() / v.norm()).item()

    return {"ours_vs_timm": rel(a, b), "ours_vs_timm_fp32": rel(a, exact), "timm_vs_timm_fp32": rel(b, exact)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["crossvit_9", "crossvit_18"])
    parser.add_argument("--fusions", nargs="+", default=["cross_attention"])
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["eager", "compile"],
        help="eager, compile (inductor default), reduce-overhead (CUDA graphs), max-autotune",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--train-only", action="store_true", help="skip inference (and its compile)")
    parser.add_argument("--infer-only", action="store_true", help="skip training (and its compile)")
    parser.add_argument(
        "--require-ratio",
        type=float,
        metavar="X",
        help="exit 1 if ours trains at under X times timm's img/s (best modes) on any model: the regression guard",
    )
    parser.add_argument("--no-timm", action="store_true", help="skip timm's models")
    parser.add_argument("--only-timm", action="store_true", help="skip ours (timm's in a process of its own)")
    add_variant_args(parser)
    parser.add_argument("--smoke", action="store_true", help="tiny and on the CPU: checks that the script runs")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args()
    if args.smoke:
        args.models, args.modes, args.batch_size, args.steps, args.warmup = ["crossvit_tiny"], ["eager"], 2, 2, 1
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    variant = apply_variant(args)
    rate = matmul_rate(device)

    rows = []
    for name in args.models:
        for fusion in args.fusions:
            macs = count(create_model(name, fusion)).gflops * 1e9
            candidates = [("ours", partial(create_model, name, fusion))]
            if fusion == "cross_attention" and not args.no_timm and name in TIMM_NAMES:
                # timm defaults to no drop path; give it the recipe's rate (our YAML's), so both do the same work.
                drop_path = load_config("model", name).drop_path_rate
                timm_model = partial(timm.create_model, TIMM_NAMES[name], pretrained=False, drop_path_rate=drop_path)
                candidates.append(("timm", timm_model))
            if args.only_timm:
                candidates = candidates[1:]
            for impl, make in candidates:
                for mode in args.modes:
                    torch._dynamo.reset()
                    torch.manual_seed(0)
                    model = make()
                    with variant_run(args, model, impl):
                        r = measure(
                            model,
                            mode,
                            args.batch_size,
                            device,
                            args.steps,
                            args.warmup,
                            args.bf16_weights,
                            infer_too=not args.train_only,
                            train_too=not args.infer_only,
                        )
                    r.update(
                        model=name,
                        fusion=fusion,
                        impl=impl,
                        mode=mode,
                        **variant,
                        drop_path_rates=[round(m.drop_prob, 6) for m in model.modules() if isinstance(m, DropPath)],
                        gmacs=macs / 1e9,
                        mfu=3 * 2 * macs * r["train_img_s"] / rate,
                    )
                    rows.append(r)
                    print(
                        f"{name:14s} {fusion:15s} {impl:5s} {mode:16s} train {r['train_img_s']:8.0f} img/s  "
                        f"infer {r['infer_img_s']:8.0f} img/s  mem {r['peak_mem_gib']:5.1f} GiB  MFU {r['mfu']:.1%}",
                        flush=True,
                    )
            if len(candidates) == 2:  # ours with the run's kernels (not an oracle's stand-ins) against timm's
                ours = create_model(name)
                with variant_run(args, ours, "ours") if not args.free else nullcontext():
                    diff = compare_logits(ours, timm.create_model(TIMM_NAMES[name]), device)
                print(
                    f"{name}: logits with the same weights, relative L2: ours vs timm {diff['ours_vs_timm']:.2e}; "
                    f"against timm in fp32, ours {diff['ours_vs_timm_fp32']:.2e}, timm {diff['timm_vs_timm_fp32']:.2e}"
                )
                rows.append({"model": name, "logits_rel_diff_vs_timm": diff["ours_vs_timm"], **diff, **variant})

    env = {
        "date": str(date.today()),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "timm": timm.__version__,
        "batch_size": args.batch_size,
        "bf16_matmul_tflops": rate / 1e12,
    }
    print("\n" + format_table(rows, env))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=2)
    if args.require_ratio is not None:
        short = below_ratio(rows, args.require_ratio)
        if short:
            raise SystemExit(f"throughput.py --require-ratio {args.require_ratio}: " + "; ".join(short))


def best_img_s(rows: list[dict], model: str, impl: str, key: str = "train_img_s", default: float | None = None):
    """The highest `key` among the speed rows of `model` and `impl` (its best mode); `default` if none."""
    return max(
        (r[key] for r in rows if "train_img_s" in r and r["model"] == model and r["impl"] == impl), default=default
    )


def below_ratio(rows: list[dict], ratio: float) -> list[str]:
    """Each model whose best training img/s of ours is under `ratio` x timm's best (models measured both ways)."""
    short = []
    for model in dict.fromkeys(r["model"] for r in rows if "train_img_s" in r):
        ours, ref = best_img_s(rows, model, "ours"), best_img_s(rows, model, "timm")
        if ours is not None and ref is not None and ours < ratio * ref:
            short.append(f"{model} trains at {ours / ref:.2f}x timm, under {ratio}x")
    return short


def variant_name(row: dict) -> str:
    sdpa = row.get("sdpa", "default")  # FlashAttention-4's variants are ours' only (variant_run)
    parts = [f"sdpa={sdpa}"] if sdpa != "default" and not (sdpa.startswith("fa4") and row.get("impl") != "ours") else []
    parts += row.get("inductor", []) + (["bf16 weights"] if row.get("bf16_weights") else [])
    parts += ["Triton LayerNorm"] if row.get("triton_norm") and row.get("impl") == "ours" else []
    parts += ["final norm on every token"] if row.get("norm_all_tokens") and row.get("impl") == "ours" else []
    parts += [f"free {'+'.join(row['free'])}"] if row.get("free") and row.get("impl") == "ours" else []
    parts += (
        [f"tiles {os.path.basename(row['fa4_tiles'])}"] if row.get("fa4_tiles") and row.get("impl") == "ours" else []
    )
    parts += (
        [f"quack MLP {row['quack_mlp']}"] if row.get("quack_mlp", "off") != "off" and row.get("impl") == "ours" else []
    )
    return " ".join(parts) or "-"


def format_table(rows: list[dict], env: dict) -> str:
    """Markdown: each of our rows with its speed-up over timm's best (eager or compiled) of the same model."""
    lines = [
        f"{env['device']}, torch {env['torch']}, timm {env['timm']}, batch {env['batch_size']}, "
        f"bf16 matmul {env['bf16_matmul_tflops']:.0f} TFLOP/s, {env['date']}",
        "",
        "| model | fusion | impl | mode | variant | train img/s | x timm best | infer img/s | x timm best | peak GiB "
        "| MFU | first step s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    speed = [r for r in rows if "train_img_s" in r]
    for r in speed:
        best_train, best_infer = (
            best_img_s(speed, r["model"], "timm", key, default=float("nan")) for key in ("train_img_s", "infer_img_s")
        )
        lines.append(
            f"| {r['model']} | {r['fusion']} | {r['impl']} | {r['mode']} | {variant_name(r)} | "
            f"{r['train_img_s']:.0f} | "
            f"{r['train_img_s'] / best_train:.2f} | {r['infer_img_s']:.0f} | {r['infer_img_s'] / best_infer:.2f} "
            f"| {r['peak_mem_gib']:.1f} | {r['mfu']:.1%} | {r['first_step_s']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
