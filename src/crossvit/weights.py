"""Load CrossViT weights: timm files, the official IBM release, official training checkpoints and our own."""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import torch.nn as nn

from crossvit.errors import ConfigError

StateDict = Mapping[str, torch.Tensor]

# timm's name of each released model in conf/model/ (timm renamed *_224 -> *_240 and *_384 -> *_408).
TIMM_NAMES = {
    "crossvit_tiny": "crossvit_tiny_240",
    "crossvit_small": "crossvit_small_240",
    "crossvit_base": "crossvit_base_240",
    "crossvit_9": "crossvit_9_240",
    "crossvit_15": "crossvit_15_240",
    "crossvit_18": "crossvit_18_240",
    "crossvit_9_dagger": "crossvit_9_dagger_240",
    "crossvit_15_dagger": "crossvit_15_dagger_240",
    "crossvit_18_dagger": "crossvit_18_dagger_240",
    "crossvit_15_dagger_384": "crossvit_15_dagger_408",
    "crossvit_18_dagger_384": "crossvit_18_dagger_408",
}


class CheckpointError(ConfigError):
    """A checkpoint that cannot be loaded into the model; the message says why and what to do."""


def read_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True, turning its failures into messages that name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    with path.open("rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive; very old checkpoints are a bare pickle (protocol byte 0x80).
    if not (zipfile.is_zipfile(path) or head[:1] == b"\x80"):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither a torch.save archive nor a pickle)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "Unsupported operand" in str(e):
            raise CheckpointError(
                f"{path} holds Python objects that would run code when unpickled, so it was refused "
                f"(torch.load weights_only=True). Re-save it as a plain state_dict, e.g. "
                f"torch.save(model.state_dict(), 'weights.pth'), from a source you trust."
            ) from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({e})") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path} is not a PyTorch checkpoint or is truncated ({e})") from None


def extract_state_dict(obj: Mapping) -> dict[str, torch.Tensor]:
    """The model weights of any supported checkpoint, in timm's key layout."""
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):  # Lightning: ClassificationModule.model
        sd = {k.removeprefix("model."): v for k, v in obj["state_dict"].items() if k.startswith("model.")}
    elif "model" in obj and isinstance(obj["model"], Mapping):  # official main.py training checkpoint
        sd = dict(obj["model"])
    else:
        sd = dict(obj)
    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(
            "checkpoint holds no state_dict of tensors (expected a state_dict, {'model': ...} "
            "or a Lightning checkpoint)"
        )
    sd = {k.removeprefix("module."): v for k, v in sd.items()}  # saved from a DDP-wrapped model
    # The official release keeps per-branch tokens in ParameterLists (cls_token.0); timm names them cls_token_0.
    return {re.sub(r"^(cls_token|pos_embed)\.(\d+)$", r"\1_\2", k): v for k, v in sd.items()}


def _summarise(keys: Iterable[str], limit: int = 6) -> str:
    """'blocks.0.fusion (12 keys), head.0 (2 keys), ...': grouped by the first three key components."""
    groups: dict[str, int] = {}
    for k in keys:
        prefix = ".".join(k.split(".")[:3])
        groups[prefix] = groups.get(prefix, 0) + 1
    parts = [f"{p} ({n} key{'s' * (n > 1)})" for p, n in list(groups.items())[:limit]]
    if len(groups) > limit:
        parts.append(f"... {len(groups) - limit} more groups")
    return ", ".join(parts)


def load_pretrained(model: nn.Module, checkpoint: str | Path | StateDict, new_head: bool = False) -> nn.Module:
    """Load `checkpoint` (path or state_dict) into `model` strictly, or raise CheckpointError saying what differs.

    `new_head=True` keeps the model's freshly initialised heads (fine-tuning to another class count).
    """
    obj = read_checkpoint(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
    sd = extract_state_dict(obj)
    own = model.state_dict()
    if new_head:
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
        sd.update({k: v for k, v in own.items() if k.startswith("head.")})
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [k for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected:
        raise CheckpointError(
            "checkpoint does not fit this architecture: "
            + (f"{len(missing)} missing keys: {_summarise(missing)}. " if missing else "")
            + (f"{len(unexpected)} unexpected keys: {_summarise(unexpected)}. " if unexpected else "")
            + "Choose the model= and fusion= the checkpoint was trained with."
        )
    if mismatched:
        if all(k.startswith("head.") for k in mismatched):
            raise CheckpointError(
                f"checkpoint heads predict {sd[mismatched[0]].shape[0]} classes but the model has "
                f"{own[mismatched[0]].shape[0]}; to fine-tune with a new head, pass new_head=True "
                f"(on the command line: new_head=true)"
            )
        shapes = "; ".join(
            f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched[:5]
        )
        more = f" (and {len(mismatched) - 5} more)" if len(mismatched) > 5 else ""
        raise CheckpointError(
            f"checkpoint shapes differ from the model's in {len(mismatched)} tensors: "
            f"{shapes}{more}. Choose the model= the checkpoint was trained with."
        )
    model.load_state_dict(sd, strict=True)
    return model
