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


def create_model(model: Mapping[str, Any], fusion: Mapping[str, Any]) -> CrossViT:
    """Build a CrossViT from a `model` config group and a `fusion` config group (plain dicts or DictConfigs)."""
    model = OmegaConf.to_container(model, resolve=True) if isinstance(model, DictConfig) else dict(model)
    fusion = OmegaConf.to_container(fusion, resolve=True) if isinstance(fusion, DictConfig) else dict(fusion)
    name = fusion.pop("name")
    return CrossViT(**model, fusion=name, fusion_args=fusion)


def build_model(
    name: str, fusion: str = "cross_attention", fusion_args: Mapping[str, Any] | None = None, **overrides: Any
) -> CrossViT:
    """Compose conf/model/<name>.yaml with conf/fusion/<fusion>.yaml; keyword overrides replace model keys.
    `in_chans` and `num_classes` come from the data (3 and 1000, ImageNet's, unless given).

    >>> build_model("crossvit_9", fusion="pairwise", num_classes=10)
    """
    model_cfg = load_config("model", name)
    unknown = set(overrides) - set(model_cfg) - set(DATA_KEYS)
    if unknown:
        raise ConfigError(
            f"build_model got {sorted(unknown)}, which are not keys of model/{name}.yaml "
            f"({sorted(model_cfg)}) nor {list(DATA_KEYS)}"
        )
    fusion_cfg = OmegaConf.merge(load_config("fusion", fusion), fusion_args or {})
    return create_model(OmegaConf.merge(model_cfg, overrides), fusion_cfg)
