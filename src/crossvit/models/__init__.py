"""The CrossViT family. Architectures live in conf/model/*.yaml and fusions in conf/fusion/*.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from crossvit import CONF_DIR
from crossvit.errors import ConfigError

from .crossvit import CrossViT
from .fusion import FUSIONS, MultiScaleBlock, get_fusion, register_fusion

__all__ = [
    "CrossViT",
    "FUSIONS",
    "MultiScaleBlock",
    "build_model",
    "create_model",
    "get_fusion",
    "load_config",
    "register_fusion",
]


# What a model takes from the data rather than from its conf/model file (conf/train.yaml wires them).
DATA_KEYS = ("in_chans", "num_classes")


def load_config(group: str, name: str) -> DictConfig:
    """Load conf/<group>/<name>.yaml, or fail listing the names that exist."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        raise ConfigError(f"{group}={name!r} has no file {path}; choose one of {names}")
    return OmegaConf.load(path)


def create_model(
    model: str | Mapping[str, Any],
    fusion: str | Mapping[str, Any] = "cross_attention",
    fusion_args: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> CrossViT:
    """A CrossViT, the way timm's create_model makes one: by name, conf/model/<model>.yaml with
    conf/fusion/<fusion>.yaml (keyword overrides replace model keys; `in_chans` and `num_classes` come from the data,
    ImageNet's 3 and 1000 unless given), or from the config groups as dicts (a checkpoint's hyper-parameters).

    >>> create_model("crossvit_9", fusion="pairwise", num_classes=10)
    """
    if isinstance(model, str):
        name, model = model, load_config("model", model)
        unknown = set(overrides) - set(model) - set(DATA_KEYS)
        if unknown:
            raise ConfigError(
                f"create_model got {sorted(unknown)}, which are not keys of model/{name}.yaml "
                f"({sorted(model)}) nor {list(DATA_KEYS)}"
            )
    if isinstance(fusion, str):
        fusion = load_config("fusion", fusion)
    model = OmegaConf.to_container(OmegaConf.merge(model, overrides), resolve=True)
    fusion = OmegaConf.to_container(OmegaConf.merge(fusion, fusion_args or {}), resolve=True)
    name = fusion.pop("name")
    return CrossViT(**model, fusion=name, fusion_args=fusion)


def build_model(
    name: str, fusion: str = "cross_attention", fusion_args: Mapping[str, Any] | None = None, **overrides: Any
) -> CrossViT:
    """The earlier name of `create_model(name, ...)`, kept so that existing code runs."""
    return create_model(name, fusion, fusion_args, **overrides)
