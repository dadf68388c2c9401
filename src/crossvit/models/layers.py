"""Layers CrossViT needs that timm does not export: patch embeddings and CLS-token cross-attention."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp

# The † models' conv stems: (kernel, stride, padding) of the three convs, by patch size (official crossvit.py).
MULTI_CONV_STEMS: dict[int, tuple[tuple[int, int, int], ...]] = {
    12: ((7, 4, 3), (3, 3, 0), (3, 1, 1)),
    16: ((7, 4, 3), (3, 2, 1), (3, 2, 1)),
}


class PatchEmbed(nn.Module):
    """Image to patch tokens: one strided conv, or the † three-conv stem when `multi_conv`."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, multi_conv: bool = False) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.multi_conv = multi_conv
        if not multi_conv:
            self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
            return
        (k1, s1, p1), (k2, s2, p2), (k3, s3, p3) = MULTI_CONV_STEMS[patch_size]
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, embed_dim // 4, kernel_size=k1, stride=s1, padding=p1),
            nn.ReLU(inplace=True),
            nn.Conv2d(embed_dim // 4, embed_dim // 2, kernel_size=k2, stride=s2, padding=p2),
            nn.ReLU(inplace=True),
            nn.Conv2d(embed_dim // 2, embed_dim, kernel_size=k3, stride=s3, padding=p3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.multi_conv:
            return self.proj(x).flatten(2).transpose(1, 2)
        # Non-overlapping patches make the conv one GEMM over flattened patches. On an H100 this skips cuDNN's
        # NCHW->NHWC conversions and its slow implicit-GEMM weight gradient (12% of a crossvit_9 step).
        B, C, H, W = x.shape
        p = self.patch_size
        patches = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, C * p * p)
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)


def projection(in_dim: int, out_dim: int, norm_layer: Callable[[int], nn.Module]) -> nn.Sequential:
    """The paper's f / g: LayerNorm -> GELU -> Linear (official `projs` / `revert_projs`)."""
    return nn.Sequential(norm_layer(in_dim), nn.GELU(), nn.Linear(in_dim, out_dim))


class CrossAttention(nn.Module):
    """Multi-head attention whose only query is the first (CLS) token; keys and values are all tokens."""

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.wq = nn.Linear(dim, dim, bias=qkv_bias)
        self.wk = nn.Linear(dim, dim, bias=qkv_bias)
        self.wv = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The CLS query's softmax weights over all tokens, [B, heads, N] (for analysis; forward uses SDPA)."""
        B, N, C = x.shape
        h = self.num_heads
        q = self.wq(x[:, :1]).view(B, 1, h, C // h).transpose(1, 2)
        k = self.wk(x).view(B, N, h, C // h).transpose(1, 2)
        return ((q @ k.transpose(-2, -1)) * (C // h) ** -0.5).softmax(-1).squeeze(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        h = self.num_heads
        q = self.wq(x[:, :1]).view(B, 1, h, C // h).transpose(1, 2)
        k = self.wk(x).view(B, N, h, C // h).transpose(1, 2)
        v = self.wv(x).view(B, N, h, C // h).transpose(1, 2)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, 1, C)))


class CrossAttentionBlock(nn.Module):
    """CLS token <- CLS + CrossAttention(LN(tokens)), plus an MLP when `mlp_ratio` > 0.

    The released models use one such block without MLP (official `has_mlp=False`).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 0.0,
        qkv_bias: bool = False,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = CrossAttention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.has_mlp = mlp_ratio > 0
        if self.has_mlp:
            self.norm2 = norm_layer(dim)
            self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = x[:, :1] + self.drop_path(self.attn(self.norm1(x)))
        if self.has_mlp:
            cls = cls + self.drop_path(self.mlp(self.norm2(cls)))
        return cls
