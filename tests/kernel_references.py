"""PyTorch references of the Hopper kernels' interfaces (crossvit.models.kernels), which stand in for flash-attn-4
and quack-kernels on the CPU: a test swaps `kernels.fa4_kernels` or `kernels.quack_kernels` for them, and each call
is recorded."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F


def logits_and_grads(model, x) -> tuple:
    """The model's logits on `x` and every parameter's gradient of their squares' sum."""
    model.zero_grad()
    out = model(x)
    out.square().sum().backward()
    return out.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def reference_fa4_kernels(calls: list) -> tuple:
    """flash-attn-4's forward and backward as crossvit.models.kernels calls them, computed by PyTorch in fp32: q, k,
    v (B, N, H, D) in; out (B, N, H, D) and lse (B, H, N) out; the backward writes into dq, dk and dv."""

    def scores(q, k, scale):
        return torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) * scale

    def forward(q, k, v, softmax_scale, return_lse):
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
