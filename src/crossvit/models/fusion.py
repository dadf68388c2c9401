"""Multi-scale encoders and the five ways their branches exchange information (paper section 3.3).

A multi-scale encoder runs each branch's own transformer blocks, then `fuse` mixes the branches: it takes the
per-branch tokens `[B, 1 + N_i, D_i]` (CLS first) and returns them in the same shapes. Each fusion is a subclass
registered under its config name (`conf/fusion/<name>.yaml`). The fusion's modules sit beside `blocks` rather
than under a prefix because that is where timm's and the official checkpoints keep them
(`blocks.K.projs`, `blocks.K.fusion`, `blocks.K.revert_projs`).

Branch order follows the paper's code: branch 0 is the S-branch (small patches, narrow), branch 1 the L-branch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Block

from crossvit.errors import ConfigError

from .layers import CrossAttentionBlock, projection

FUSIONS: dict[str, type[MultiScaleBlock]] = {}


def register_fusion(name: str) -> Callable[[type[MultiScaleBlock]], type[MultiScaleBlock]]:
    def register(cls: type[MultiScaleBlock]) -> type[MultiScaleBlock]:
        FUSIONS[name] = cls
        return cls

    return register


def get_fusion(name: str) -> type[MultiScaleBlock]:
    if name not in FUSIONS:
        raise ConfigError(f"fusion.name={name!r} is not a fusion; choose one of {sorted(FUSIONS)}")
    return FUSIONS[name]


class MultiScaleBlock(nn.Module):
    """One multi-scale encoder: per-branch transformer blocks, then the subclass's `fuse`."""

    def __init__(
        self,
        embed_dim: Sequence[int],
        depth: Sequence[int],
        num_heads: Sequence[int],
        mlp_ratio: Sequence[float],
        drop_path: Sequence[float],
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.embed_dim = list(embed_dim)
        self.num_heads = list(num_heads)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                *[
                    Block(
                        dim,
                        heads,
                        ratio,
                        qkv_bias=qkv_bias,
                        proj_drop=proj_drop,
                        attn_drop=attn_drop,
                        drop_path=drop_path[i],
                        norm_layer=norm_layer,
                    )
                    for i in range(d)
                ]
            )
            for dim, d, heads, ratio in zip(embed_dim, depth, num_heads, mlp_ratio)
        )
        # What the fusion layers need to build themselves like the branch blocks.
        self._layer_args = dict(
            qkv_bias=qkv_bias,
            proj_drop=proj_drop,
            attn_drop=attn_drop,
            drop_path=drop_path[-1] if len(drop_path) else 0.0,
        )
        self._norm_layer = norm_layer

    def fuse(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.fuse([blocks(x) for blocks, x in zip(self.blocks, xs)])


@register_fusion("none")
class NoFusion(MultiScaleBlock):
    """The branches never meet; only the averaged logits of the heads combine them."""

    def fuse(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return xs


class _CommonWidthFusion(MultiScaleBlock):
    """Base of the fusions that mix in one common width: f_i projects branch i there, g_i back.

    Branches already at the common width (by default the widest) need no projection, so two branches cost one
    projection pair: that is what lands class-token and pairwise fusion on the paper's 24.2 M for CrossViT-S.
    """

    def __init__(self, *args, width: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.width = width or max(self.embed_dim)
        self.projs = nn.ModuleList(
            nn.Identity() if d == self.width else projection(d, self.width, self._norm_layer) for d in self.embed_dim
        )
        self.revert_projs = nn.ModuleList(
            nn.Identity() if d == self.width else projection(self.width, d, self._norm_layer) for d in self.embed_dim
        )

    def fuse_cls(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """CLS_i <- g_i(sum_j f_j(CLS_j)), in the common width."""
        fused = sum(proj(x[:, :1]) for proj, x in zip(self.projs, xs))
        return [revert(fused) for revert in self.revert_projs]


@register_fusion("class_token")
class ClassTokenFusion(_CommonWidthFusion):
    """Only the CLS tokens are fused; patches learn of it through the next encoder's self-attention."""

    def fuse(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.cat((cls, x[:, 1:]), dim=1) for cls, x in zip(self.fuse_cls(xs), xs)]


def _resize_tokens(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinearly resample a square grid of patch tokens [B, n*n, C] to [B, size*size, C]."""
    B, N, C = x.shape
    n = math.isqrt(N)
    if n == size:
        return x
    grid = x.transpose(1, 2).reshape(B, C, n, n)
    grid = F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)
    return grid.flatten(2).transpose(1, 2)


@register_fusion("pairwise")
class PairwiseFusion(_CommonWidthFusion):
    """CLS tokens as in class-token fusion; patch tokens are aligned on one grid and summed position by position.

    Patch_i <- g_i(sum_j resize_to_i(f_j(patch_j))), the CLS rule applied to every grid position. The
    projections are shared with the CLS tokens.
    """

    def fuse(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        patches = [proj(x[:, 1:]) for proj, x in zip(self.projs, xs)]
        out = []
        for cls, x, revert in zip(self.fuse_cls(xs), xs, self.revert_projs):
            size = math.isqrt(x.shape[1] - 1)
            fused = sum(_resize_tokens(p, size) for p in patches)
            out.append(torch.cat((cls, revert(fused)), dim=1))
        return out


@register_fusion("all_attention")
class AllAttentionFusion(_CommonWidthFusion):
    """All tokens of all branches, projected to the common width, go through shared self-attention layers."""

    def __init__(
        self, *args, layers: int = 1, heads: int | None = None, layer_mlp_ratio: float = 2.0, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        heads = heads or self.num_heads[self.embed_dim.index(max(self.embed_dim))]
        self.fusion = nn.Sequential(
            *[
                Block(self.width, heads, layer_mlp_ratio, norm_layer=self._norm_layer, **self._layer_args)
                for _ in range(layers)
            ]
        )

    def fuse(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        lengths = [x.shape[1] for x in xs]
        tokens = self.fusion(torch.cat([proj(x) for proj, x in zip(self.projs, xs)], dim=1))
        return [revert(t) for revert, t in zip(self.revert_projs, tokens.split(lengths, dim=1))]


@register_fusion("cross_attention")
class CrossAttentionFusion(MultiScaleBlock):
    """The paper's fusion: each branch's CLS token attends to the next branch's patch tokens.

    For branch i with j = i + 1 (mod branches): x' = [f_i(CLS_i) || patch_j]; CLS'_i = g_i(CrossAttn(x')),
    computed at branch j's width with branch j's heads. `layers=0` is the released models' single layer without
    MLP; `layers=L >= 1` stacks L layers with MLPs, each re-reading branch j's patches.
    """

    def __init__(
        self,
        *args,
        layers: int = 0,
        heads: Sequence[int] | None = None,
        layer_mlp_ratio: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        dims, n = self.embed_dim, len(self.embed_dim)
        heads = list(heads or self.num_heads)
        self.projs = nn.ModuleList(projection(dims[i], dims[(i + 1) % n], self._norm_layer) for i in range(n))

        def layer(j: int, mlp_ratio: float) -> CrossAttentionBlock:
            return CrossAttentionBlock(dims[j], heads[j], mlp_ratio, norm_layer=self._norm_layer, **self._layer_args)

        # layers=0 keeps the released key layout: fusion.i.attn..., not fusion.i.0.attn...
        self.fusion = nn.ModuleList(
            layer((i + 1) % n, 0.0)
            if layers == 0
            else nn.Sequential(*[layer((i + 1) % n, layer_mlp_ratio) for _ in range(layers)])
            for i in range(n)
        )
        self.revert_projs = nn.ModuleList(projection(dims[(i + 1) % n], dims[i], self._norm_layer) for i in range(n))

    def fuse(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, (proj, fusion, revert) in enumerate(zip(self.projs, self.fusion, self.revert_projs)):
            patches = xs[(i + 1) % len(xs)][:, 1:]
            cls = proj(xs[i][:, :1])
            for layer in fusion if isinstance(fusion, nn.Sequential) else (fusion,):
                cls = layer(torch.cat((cls, patches), dim=1))
            out.append(torch.cat((revert(cls), xs[i][:, 1:]), dim=1))
        return out
