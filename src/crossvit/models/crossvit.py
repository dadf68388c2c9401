"""CrossViT: a multi-branch vision transformer whose branches see the image at different patch sizes.

Chen, Fan, Panda, "CrossViT: Cross-Attention Multi-Scale Vision Transformer for Image Classification", ICCV 2021.
Parameter names and shapes follow timm's `crossvit_*` (and, up to `cls_token_0` vs `cls_token.0`, the official
release), so their checkpoints load with `strict=True`; the code itself handles any number of branches.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from crossvit.errors import ConfigError

from .fusion import MultiScaleBlock, get_fusion
from .layers import MULTI_CONV_STEMS, PatchEmbed


def _check_architecture(
    img_size: Sequence[int],
    patch_size: Sequence[int],
    embed_dim: Sequence[int],
    depth: Sequence[Sequence[int]],
    num_heads: Sequence[int],
    mlp_ratio: Sequence[float],
    multi_conv: bool,
) -> None:
    """Raise a ValueError naming the config key and a valid choice for an architecture that cannot be built."""
    n = len(patch_size)
    per_branch = dict(img_size=img_size, embed_dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio)
    for key, value in per_branch.items():
        if len(value) != n:
            raise ConfigError(
                f"model.{key} has {len(value)} entries but model.patch_size has {n}: every per-branch list needs "
                f"one entry per branch"
            )
    if not depth:
        raise ConfigError("model.depth is empty: give at least one multi-scale encoder, e.g. [[1, 4]]")
    for k, enc in enumerate(depth):
        if len(enc) != n:
            raise ConfigError(
                f"model.depth[{k}]={list(enc)} has {len(enc)} entries but there are {n} branches: give one "
                f"transformer depth per branch"
            )
    for i in range(n):
        img, p, d, h = img_size[i], patch_size[i], embed_dim[i], num_heads[i]
        if img % p:
            divisors = [q for q in range(2, img) if img % q == 0 and abs(q - p) <= p]
            raise ConfigError(
                f"model.patch_size[{i}]={p} does not divide model.img_size[{i}]={img}; choose a divisor such as "
                f"{' or '.join(map(str, divisors[:3])) or 1}"
            )
        if d % h:
            heads = [q for q in range(1, d + 1) if d % q == 0 and abs(q - h) <= h]
            raise ConfigError(
                f"model.embed_dim[{i}]={d} is not divisible by model.num_heads[{i}]={h}; choose heads such as "
                f"{' or '.join(map(str, heads[-3:]))}"
            )
        if multi_conv and p not in MULTI_CONV_STEMS:
            raise ConfigError(
                f"model.multi_conv=true has a conv stem for patch sizes {sorted(MULTI_CONV_STEMS)} only, but "
                f"model.patch_size[{i}]={p}; set model.multi_conv=false or use one of those patch sizes"
            )


class CrossViT(nn.Module):
    """Dual- (or multi-) branch ViT. Branch i embeds the image at `img_size[i]` with `patch_size[i]` patches.

    The input is given at `img_size[0]` (the S-branch); other branches get a bicubic resize. Logits are the mean of the
    branch heads' logits (`forward_branches` returns them one by one).
    """

    def __init__(
        self,
        img_size: Sequence[int] = (240, 224),
        patch_size: Sequence[int] = (12, 16),
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: Sequence[int] = (192, 384),
        depth: Sequence[Sequence[int]] = ((1, 4), (1, 4), (1, 4)),
        num_heads: Sequence[int] = (6, 6),
        mlp_ratio: Sequence[float] = (4.0, 4.0),
        multi_conv: bool = False,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        fusion: str = "cross_attention",
        fusion_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_architecture(img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio, multi_conv)
        fusion_cls = get_fusion(fusion)
        fusion_args = dict(fusion_args or {})
        knobs = [
            k for c in fusion_cls.__mro__ if "__init__" in vars(c) for k in inspect.signature(c.__init__).parameters
        ]
        knobs = sorted(set(knobs) - set(inspect.signature(MultiScaleBlock.__init__).parameters) - {"args", "kwargs"})
        unknown = sorted(set(fusion_args) - set(knobs))
        if unknown:
            raise ConfigError(f"fusion.{unknown[0]} is not a setting of fusion={fusion}; its settings are {knobs}")
        self.num_branches = len(patch_size)
        self.img_size = [int(s) for s in img_size]
        self.input_size = self.img_size[0]
        self.patch_size = [int(p) for p in patch_size]
        self.embed_dim = [int(d) for d in embed_dim]
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = sum(self.embed_dim)
        norm_layer = partial(nn.LayerNorm, eps=1e-6)

        # Named per branch (pos_embed_0, cls_token_0, ...) and in this order because that is timm's state_dict.
        for i, (img, p, d) in enumerate(zip(self.img_size, self.patch_size, self.embed_dim)):
            self.register_parameter(f"pos_embed_{i}", nn.Parameter(torch.zeros(1, 1 + (img // p) ** 2, d)))
            self.register_parameter(f"cls_token_{i}", nn.Parameter(torch.zeros(1, 1, d)))
        self.patch_embed = nn.ModuleList(
            PatchEmbed(p, in_chans, d, multi_conv) for p, d in zip(self.patch_size, self.embed_dim)
        )
        self.pos_drop = nn.Dropout(drop_rate)

        # Stochastic depth rises linearly over the encoders; within one encoder, block i of every branch shares a
        # rate and the fusion takes the last one (as the official code does).
        fusion_layers = max(int(fusion_args.get("layers", 0)), 0)
        enc_depths = [max(enc) + fusion_layers for enc in depth]
        # (on the CPU even where the model is built on another device: the rates are Python floats)
        dpr = torch.linspace(0, drop_path_rate, sum(enc_depths), device="cpu").tolist()
        self.blocks = nn.ModuleList()
        for k, enc in enumerate(depth):
            start = sum(enc_depths[:k])
            self.blocks.append(
                fusion_cls(
                    self.embed_dim,
                    enc,
                    num_heads,
                    mlp_ratio,
                    dpr[start : start + enc_depths[k]],
                    qkv_bias=qkv_bias,
                    proj_drop=proj_drop_rate,
                    attn_drop=attn_drop_rate,
                    norm_layer=norm_layer,
                    **fusion_args,
                )
            )

        self.norm = nn.ModuleList(norm_layer(d) for d in self.embed_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.ModuleList(nn.Linear(d, num_classes) for d in self.embed_dim)

        for i in range(self.num_branches):
            trunc_normal_(getattr(self, f"pos_embed_{i}"), std=0.02)
            trunc_normal_(getattr(self, f"cls_token_{i}"), std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {f"{name}_{i}" for i in range(self.num_branches) for name in ("cls_token", "pos_embed")}

    def _embed(self, x: torch.Tensor) -> list[torch.Tensor]:
        xs = []
        for i, patch_embed in enumerate(self.patch_embed):
            size = self.img_size[i]
            x_i = x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
            tokens = patch_embed(x_i)
            cls = getattr(self, f"cls_token_{i}").expand(tokens.shape[0], -1, -1)
            xs.append(self.pos_drop(torch.cat((cls, tokens), dim=1) + getattr(self, f"pos_embed_{i}")))
        return xs

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-branch tokens [B, 1 + N_i, D_i] after the last multi-scale encoder, before the final norm."""
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ConfigError(
                f"input is {tuple(x.shape[-2:])} but the model expects {self.input_size}x{self.input_size} "
                f"(model.img_size[0] of {self.img_size}); resize the data to it"
            )
        xs = self._embed(x)
        for block in self.blocks:
            xs = block(xs)
        return xs

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-branch normalised tokens [B, 1 + N_i, D_i] after the last multi-scale encoder."""
        return [norm(t) for norm, t in zip(self.norm, self._encode(x))]

    def _cls_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """forward_features' CLS tokens [B, 1, D_i], the only ones the heads read: the final LayerNorm works token by
        token, so normalising the patch tokens too (as timm does) would be work thrown away, forward and backward."""
        return [norm(t[:, :1]) for norm, t in zip(self.norm, self._encode(x))]

    def forward_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each branch head's logits: the paper's single-branch predictions."""
        return [head(self.head_drop(t[:, 0])) for head, t in zip(self.head, self._cls_features(x))]

    def forward_head(self, xs: list[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        cls = [self.head_drop(t[:, 0]) for t in xs]
        if pre_logits:
            return torch.cat(cls, dim=1)
        return torch.stack([head(c) for head, c in zip(self.head, cls)]).mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self._cls_features(x))
