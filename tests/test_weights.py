import pytest
import timm
import torch

from crossvit.models import build_model
from crossvit.weights import CheckpointError, load_pretrained


@pytest.fixture(scope="module")
def timm_state():
    torch.manual_seed(0)
    return timm.create_model("crossvit_9_240", pretrained=False).state_dict()


def _official(sd):
    """The IBM release names the per-branch tokens cls_token.0 / pos_embed.0."""
    return {k.replace("cls_token_", "cls_token.").replace("pos_embed_", "pos_embed."): v for k, v in sd.items()}


@pytest.mark.parametrize("layout", ["timm", "official_release", "official_training", "lightning", "ddp"])
def test_loads_every_checkpoint_layout(tmp_path, timm_state, layout):
    obj = {
        "timm": timm_state,
        "official_release": _official(timm_state),
        "official_training": {"model": _official(timm_state), "epoch": 3, "max_accuracy": 1.0},
        "lightning": {"state_dict": {f"model.{k}": v for k, v in timm_state.items()}, "epoch": 1},
        "ddp": {f"module.{k}": v for k, v in timm_state.items()},
    }[layout]
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    model = load_pretrained(build_model("crossvit_9"), path)
    assert torch.equal(model.cls_token_1, timm_state["cls_token_1"])
    assert torch.equal(model.blocks[2].fusion[1].attn.wq.weight, timm_state["blocks.2.fusion.1.attn.wq.weight"])


def test_other_architecture_is_summarised(timm_state):
    with pytest.raises(CheckpointError) as e:
        load_pretrained(build_model("crossvit_9", fusion="class_token"), timm_state)
    msg = str(e.value)
    # class_token builds no parameter the checkpoint lacks; the checkpoint's cross-attention is left over.
    assert "missing keys" not in msg and "unexpected keys: " in msg and "blocks.0.fusion (20 keys)" in msg
    assert "Choose the model= and fusion=" in msg
    assert len(msg) < 1000


def test_other_width_names_shapes(timm_state):
    with pytest.raises(CheckpointError, match=r"shapes differ .* pos_embed_0: checkpoint \(1, 401, 128\)"):
        load_pretrained(build_model("crossvit_9", img_size=[192, 176]), timm_state)


def test_head_of_another_class_count(timm_state):
    model = build_model("crossvit_9", num_classes=10)
    with pytest.raises(CheckpointError, match="predict 1000 classes but the model has 10; to fine-tune"):
        load_pretrained(model, timm_state)
    head = model.head[0].weight.clone()
    load_pretrained(model, timm_state, new_head=True)
    assert torch.equal(model.head[0].weight, head)
    assert torch.equal(model.cls_token_0, timm_state["cls_token_0"])


class _Evil:
    def __reduce__(self):
        return (print, ("this ran at load time",))


def test_refuses_code_and_non_checkpoints(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"model": _Evil()}, evil)
    with pytest.raises(CheckpointError, match="would run code when unpickled"):
        load_pretrained(build_model("crossvit_micro_28"), evil)
    junk = tmp_path / "notes.txt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.txt is not a PyTorch checkpoint"):
        load_pretrained(build_model("crossvit_micro_28"), junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pretrained(build_model("crossvit_micro_28"), tmp_path / "missing.pth")
