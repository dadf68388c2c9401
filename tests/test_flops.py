import pytest
import torch
from timm.models.vision_transformer import Block

from crossvit.flops import count, module_macs
from crossvit.models import build_model


def test_attention_matmuls_are_counted_on_cpu():
    n, c = 64, 32
    block = Block(c, num_heads=4, mlp_ratio=4, qkv_bias=True)
    macs = module_macs(block, torch.randn(1, n, c))
    linear = n * (4 * c * c + 2 * 4 * c * c)  # qkv + proj, fc1 + fc2
    attention = 2 * n * n * c  # q.k^T and attn.v
    assert macs[""] == pytest.approx(linear + attention, rel=1e-6)
    assert macs["attn"] == pytest.approx(n * 4 * c * c + attention, rel=1e-6)


def test_fusion_share_is_what_the_fusion_modules_cost(fusion_name):
    """The fusion part, counted directly from the multi-scale blocks' non-encoder modules (count() derives it)."""
    model = build_model("crossvit_micro_28", fusion=fusion_name).eval()
    cost = count(model)
    macs = module_macs(model, torch.zeros(1, model.in_chans, model.input_size, model.input_size))
    params = flops = 0
    for k, block in enumerate(model.blocks):
        for name, module in block.named_children():
            if name != "blocks":  # the branch encoders; the rest is the fusion (projections and cross-attention)
                params += sum(p.numel() for p in module.parameters())
                # A ModuleList never runs itself: its members do.
                members = (
                    [f"{name}.{j}" for j in range(len(module))] if isinstance(module, torch.nn.ModuleList) else [name]
                )
                flops += sum(macs.get(f"blocks.{k}.{m}", 0) for m in members)
    assert cost.parts["fusion"][0] == pytest.approx(params / 1e6, abs=1e-9)
    assert cost.parts["fusion"][1] == pytest.approx(flops / 1e9, abs=1e-12)
    assert (params == 0) == (flops == 0) == (fusion_name == "none")
    assert cost.parts["branch0"][1] > 0 and cost.parts["branch1"][1] > 0


def test_cross_attention_fusion_cost_of_crossvit_small():
    """Per encoder and branch: f, g projections on the CLS token, cross-attention over 1 + N tokens."""
    cost = count(build_model("crossvit_small"))
    # Branch 0 (S, 192 wide) attends at width 384 over 1 + 196 tokens; branch 1 at width 192 over 1 + 400.
    per_encoder = 0
    for d_from, d_to, n in ((192, 384, 197), (384, 192, 401)):
        per_encoder += 2 * d_from * d_to  # f and g on one token
        per_encoder += d_to * d_to + 2 * n * d_to * d_to + d_to * d_to  # wq on CLS, wk and wv on all, proj on CLS
        per_encoder += 2 * n * d_to  # q.k^T and attn.v for one query
    assert cost.parts["fusion"][1] * 1e9 == pytest.approx(3 * per_encoder, rel=1e-6)
