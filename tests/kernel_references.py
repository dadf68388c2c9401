"""PyTorch references of the Hopper kernels' interfaces (crossvit.models.kernels), which stand in for flash-attn-4
and quack-kernels on the CPU: a test swaps `kernels.fa4_kernels` or `kernels.quack_kernels` for them, and each call
is recorded. Run as a script, it runs an entry script with kernels=hopper on the CPU on them:

    python tests/kernel_references.py src/train.py kernels=hopper trainer.precision=bf16-mixed ...
"""

from __future__ import annotations

import inspect
import json
import operator
import os
import runpy
import sys
import types
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
import triton.runtime.cache


def logits_and_grads(model, x) -> tuple:
    """The model's logits on `x` and every parameter's gradient of their squares' sum."""
    model.zero_grad()
    out = model(x)
    out.square().sum().backward()
    return out.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def assert_same_logits_and_grads(out, grads: dict, expected, expected_grads: dict) -> None:
    """logits_and_grads' two results equal, each gradient up to a rounding of the largest gradient's size."""
    torch.testing.assert_close(out, expected)
    scale = max(grad.abs().max().item() for grad in expected_grads.values())
    for name, grad in expected_grads.items():  # atol: the k biases' gradients are 0 up to rounding
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


def reference_fa4_kernels(calls: list, sixteen_bit: bool = False) -> tuple:
    """flash-attn-4's forward and backward as crossvit.models.kernels calls them, computed by PyTorch in fp32: q, k,
    v (B, N, H, D) in; out (B, N, H, D) and lse (B, H, N) out; the backward writes into dq, dk and dv. With
    `sixteen_bit`, inputs in other dtypes fail as flash-attn-4's do."""

    def scores(q, k, scale):
        return torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) * scale

    def forward(q, k, v, softmax_scale, return_lse):
        if sixteen_bit:
            assert v.dtype in (torch.float16, torch.bfloat16), "inputs must be float16, bfloat16, ..."
        calls.append(tuple(q.shape))
        s = scores(q, k, softmax_scale)
        out = torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v.float()).to(q.dtype).contiguous()
        return out, s.logsumexp(-1), None, None, None

    def backward(q, k, v, out, dout, lse, softmax_scale, dq, dk, dv):
        # FlashAttention's backward, from the saved lse (a custom op's body runs below autograd)
        q_, k_, v_, o, do = (t.float() for t in (q, k, v, out, dout))
        p = (scores(q_, k_, softmax_scale) - lse[..., None]).exp()
        dp = torch.einsum("bqhd,bkhd->bhqk", do, v_)
        ds = p * (dp - torch.einsum("bqhd,bqhd->bhq", do, o)[..., None]) * softmax_scale
        grads = (
            torch.einsum("bhqk,bkhd->bqhd", ds, k_),
            torch.einsum("bhqk,bqhd->bkhd", ds, q_),
            torch.einsum("bhqk,bqhd->bkhd", p, do),
        )
        for target, grad in zip((dq, dk, dv), grads):
            target.copy_(grad)

    return forward, backward


def reference_quack_mlp_kernels(calls: list) -> tuple:
    """quack's linear_act_func and act_linear_func as crossvit.models.kernels calls them, computed by PyTorch. fc1:
    (pre-activation, post-activation), only the first differentiable. fc2: its forward reads the post-activation and
    its backward takes the activation's derivative at the pre-activation, as quack's gemm_dact epilogue does."""
    activations = {"gelu_erf": F.gelu, "gelu_tanh_approx": partial(F.gelu, approximate="tanh")}

    def linear_act(x, weight, activation, bias=None, store_preact=True, tuned=True):
        calls.append(("fc1", activation, tuned, tuple(weight.shape)))
        pre = F.linear(x, weight, bias)
        return (pre if store_preact else None), activations[activation](pre).detach()

    def act_linear(preact, weight, x, activation, bias=None, tuned=True):
        calls.append(("fc2", activation, tuned, tuple(weight.shape)))
        act = activations[activation](preact)
        return F.linear(x + (act - act.detach()), weight, bias)

    return linear_act, act_linear


class QuackFileCacheManager(triton.runtime.cache.FileCacheManager):
    """quack-kernels 0.6.5's autotuning cache (quack/autotuner.py's FileCacheManager, its lines): a folder a key
    under QUACK_CACHE_DIR, or ~/.quack/cache."""

    def __init__(self, key):
        super().__init__(key)
        self.cache_dir = os.getenv("QUACK_CACHE_DIR", "").strip() or os.path.join(
            os.getenv("QUACK_HOME", Path.home()), ".quack", "cache"
        )
        self.cache_dir = os.path.join(self.cache_dir, self.key)
        self.lock_path = os.path.join(self.cache_dir, "lock")
        os.makedirs(self.cache_dir, exist_ok=True)


PACKAGES = ("quack", "quack.linear", "quack.autotuner", "flash_attn", "flash_attn.cute", "flash_attn.cute.interface")
GPU = "NVIDIA H200"
QUACK = "0.6.5"  # requirements-hopper.lock's


def stand_in_for_a_hopper_gpu(set_attr: Callable, set_item: Callable, sixteen_bit: bool = False) -> dict[str, list]:
    """A Hopper GPU and both packages as far as crossvit.models.kernels can tell, with these references for the
    kernels, each set through `set_attr(object, name, value)` and `set_item(mapping, key, value)` (pytest's
    monkeypatch.setattr and .setitem, or the builtins'). Returns the calls each kernel gets, and quack_kernels'
    `cublas_plain` argument each time."""
    from crossvit.models import kernels

    calls = {"fa4": [], "quack": [], "quack_cublas_plain": []}
    set_attr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    set_attr(torch.cuda, "get_device_name", lambda device=None: GPU)
    for name in PACKAGES:
        set_item(sys.modules, name, types.ModuleType(name))
    sys.modules["quack"].__version__ = QUACK
    sys.modules["quack.autotuner"].FileCacheManager = QuackFileCacheManager
    set_attr(kernels, "fa4_kernels", lambda: reference_fa4_kernels(calls["fa4"], sixteen_bit))
    set_attr(
        kernels,
        "quack_kernels",
        lambda cublas_plain: (
            calls["quack_cublas_plain"].append(cublas_plain) or reference_quack_mlp_kernels(calls["quack"])
        ),
    )
    return calls


def run_on_a_hopper_stand_in(script: str, *overrides: str) -> dict:
    """`script` (src/train.py or src/eval.py) with `overrides`, in this process, as if on a Hopper GPU with both
    packages: kernels= checks the trainer's precision and the rest as on that GPU, and these references (16-bit
    inputs only) run for the kernels. Returns the calls each kernel got."""
    from crossvit.models import kernels

    calls = stand_in_for_a_hopper_gpu(setattr, operator.setitem, sixteen_bit=True)

    def on_the_gpu(fn):
        signature = inspect.signature(fn)

        def wrapped(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.arguments["device"] = torch.device("cuda")  # the trainer's is the CPU
            return fn(*bound.args, **bound.kwargs)

        return wrapped

    kernels.check_kernels = on_the_gpu(kernels.check_kernels)
    kernels.use_kernels = on_the_gpu(kernels.use_kernels)
    sys.argv = [script, *overrides]
    runpy.run_path(script, run_name="__main__")
    return calls


if __name__ == "__main__":
    counts = {name: len(got) for name, got in run_on_a_hopper_stand_in(*sys.argv[1:]).items()}
    print(f"kernel calls: {json.dumps(counts)}")
