"""Why GEMM autotuning takes 7-44 s a shape (issue 14): its log said "0.0005 seconds precompiling" for every shape,
as if the Triton candidates compiled one at a time inside the benchmarking instead of on inductor's precompile
threads. One fc1 + GELU forward and backward at crossvit_18's large-branch shape (bf16 autocast, fp32 weights, as the
step), compiled with GEMM autotuning in a fresh inductor cache; prints the compile time, what inductor saw (Python,
its worker count, TORCHINDUCTOR_* variables) and its select_algorithm log lines about precompiling. The answer on an
H100 (docs/speed_notes.md, third session): they do precompile on 16 threads; the time goes to benchmarking them.

    python benchmarks/autotune_probe.py --out probe.json
    python benchmarks/autotune_probe.py --inductor benchmark_epilogue_fusion=0 --out probe.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from throughput import add_variant_args, apply_variant, timed


class Lines(logging.Handler):
    """Keeps the records whose message mentions one of `words`."""

    def __init__(self, words: tuple[str, ...]) -> None:
        super().__init__(logging.DEBUG)
        self.words, self.lines = words, []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(w in message for w in self.words):
            self.lines.append(message[:300])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", nargs=3, type=int, default=(50432, 448, 1344), metavar=("M", "K", "N"))
    parser.add_argument("--inductor", nargs="*", default=[], help="extra inductor options, key=value")
    parser.add_argument("--out", help="write the row as JSON here")
    args = parser.parse_args()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="probe_inductor_")
    from torch._inductor import config
    from torch._inductor.select_algorithm import get_num_workers

    options = ["max_autotune_gemm=1", "triton.num_decompose_k_splits=0", *args.inductor]
    variant = argparse.ArgumentParser()
    add_variant_args(variant)  # every other variant switch at its default
    apply_variant(variant.parse_args(["--inductor", *options]))
    seen = dict(
        python=sys.version.split()[0],
        env={k: v for k, v in os.environ.items() if k.startswith(("TORCHINDUCTOR", "TRITON"))},
        workers=get_num_workers(),
        compile_threads=config.compile_threads,
        affinity=len(os.sched_getaffinity(0)),
        options=options,
    )
    print(seen, flush=True)
    log = Lines(("precompil", "Precompil", "worker", "Found all"))
    logger = logging.getLogger("torch._inductor.select_algorithm")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(log)

    m, k, n = args.shape
    device = torch.device("cuda")
    linear = torch.nn.Linear(k, n, device=device)
    x = torch.randn(m, k, device=device, requires_grad=True)
    dy = torch.randn(m, n, device=device, dtype=torch.bfloat16)

    def step(fn):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = fn(x)
        y.backward(dy)

    compiled = torch.compile(lambda t: F.gelu(linear(t)))
    start = time.perf_counter()
    step(compiled)
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - start
    times = {
        name: timed(lambda fn=fn: step(fn), device, steps=20, warmup=3) * 1e3
        for name, fn in (("eager", lambda t: F.gelu(linear(t))), ("autotuned", compiled))
    }
    row = dict(shape=[m, k, n], compile_s=round(compile_s, 1), ms=times, **seen, log=log.lines)
    print(json.dumps({k: v for k, v in row.items() if k != "log"}), flush=True)
    print("\n".join(log.lines[:40]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"env": seen, "rows": [row]}, f, indent=1)


if __name__ == "__main__":
    main()
