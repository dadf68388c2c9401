"""`kernels=` (crossvit.models.kernels): the Hopper kernels take each block's MLP and self-attention with the plain
modules' logits and gradients, compile whole, and refuse one line at a time where they cannot run. flash-attn-4 and
quack-kernels run on Hopper GPUs only; PyTorch references of their interfaces stand in for them here
(tests/kernel_references.py), and the GPU machine measures the real ones (docs/benchmarks.md, issue 14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import types

import lightning as L
import pytest
import torch
from conftest import FORK_SERVER, QUICK, QUIET, ROOT, run_script
from kernel_references import assert_same_logits_and_grads, logits_and_grads, stand_in_for_a_hopper_gpu
from timm.layers import Mlp
from timm.models.vision_transformer import Attention, Block

from crossvit.callbacks import step_memory
from crossvit.errors import ConfigError
from crossvit.flops import count
from crossvit.models import create_model, kernels, load_config
from crossvit.module import ClassificationModule


@pytest.fixture
def hopper(monkeypatch) -> dict[str, list]:
    """A Hopper GPU and both packages as far as use_kernels can tell, with the references for their kernels: the
    calls each kernel got."""
    return stand_in_for_a_hopper_gpu(monkeypatch.setattr, monkeypatch.setitem)


def test_hopper_kernels_take_every_block_with_the_plain_models_logits_and_gradients(hopper):
    """kernels=hopper on crossvit_tiny: each self-attention of the branches (not the fusion's CLS query) reaches
    FlashAttention-4 in the qkv layout, each MLP quack's fused pair with the exact GELU, autotuned, its plain products
    on cuBLAS; logits and every gradient are the plain model's, and so are the state_dict's keys."""
    torch.manual_seed(0)
    model = create_model("crossvit_tiny").eval()
    keys = list(model.state_dict())
    x = torch.randn(2, 3, model.input_size, model.input_size)
    expected, expected_grads = logits_and_grads(model, x)

    kernels.use_kernels(model, mlp="quack", attention="fa4", device=torch.device("cuda"))
    assert hopper["quack_cublas_plain"] == [True]  # quack only where it fuses GELU: its plain GEMMs lose to cuBLAS
    out, grads = logits_and_grads(model, x)
    # crossvit_tiny: 3 stages of 1 small-branch block (401 tokens, 3 heads of 32) and 4 large-branch ones (197, 64)
    assert sorted(hopper["fa4"]) == [(2, 197, 3, 64)] * 12 + [(2, 401, 3, 32)] * 3
    assert len(hopper["quack"]) == 30 and {(c[0], c[1], c[2]) for c in hopper["quack"]} == {
        ("fc1", "gelu_erf", True),
        ("fc2", "gelu_erf", True),
    }
    assert_same_logits_and_grads(out, grads, expected, expected_grads)
    assert list(model.state_dict()) == keys


def test_hopper_inference_keeps_sdpa_for_wide_heads_and_quacks_fused_fc1(hopper):
    """Without a backward (inference, validation) kernels=hopper sends only the attention of heads of 32 to
    FlashAttention-4: its gain is the packed qkv gradient, and its forward alone is slower than cuDNN's at heads of 64.
    Each MLP's fc1 still takes quack's GELU epilogue, storing no pre-activation. The logits are the plain model's."""
    torch.manual_seed(0)
    model = create_model("crossvit_tiny").eval()
    x = torch.randn(2, 3, model.input_size, model.input_size)
    with torch.no_grad():
        expected = model(x)
        kernels.use_kernels(model, mlp="quack", attention="fa4", device=torch.device("cuda"))
        out = model(x)
    # crossvit_tiny: 3 stages of 1 small-branch block (401 tokens, 3 heads of 32) and 4 large-branch ones (197, 64)
    assert hopper["fa4"] == [(2, 401, 3, 32)] * 3
    assert len(hopper["quack"]) == 15 and {c[0] for c in hopper["quack"]} == {"fc1"}
    torch.testing.assert_close(out, expected)
    hopper["fa4"].clear()
    model(x).sum().backward()  # with a backward, every block's
    assert len(hopper["fa4"]) == 15


def test_flops_count_the_architecture_not_the_kernels(hopper):
    """crossvit.flops.count (the model summary at fit start, in fp32 outside autocast) runs the classes' forwards
    under kernels=hopper: no kernel is called (flash-attn-4 takes 16-bit inputs only, and PyTorch's counter sees
    neither kernel's custom op), the figure is the plain model's, and the kernels are back afterwards."""
    model = create_model("crossvit_tiny")
    expected = count(model)
    kernels.use_kernels(model, mlp="quack", attention="fa4", device=torch.device("cuda"))
    swapped = [m for m in model.modules() if "forward" in vars(m)]
    assert count(model) == expected
    assert hopper["fa4"] == [] and hopper["quack"] == []
    assert [m for m in model.modules() if "forward" in vars(m)] == swapped
    model(torch.randn(1, 3, model.input_size, model.input_size))
    assert hopper["fa4"] and hopper["quack"]


def test_the_memory_preflight_probes_the_modules_not_the_kernels(hopper):
    """MemoryPreflight's probe (a forward of two images before the first step) runs PyTorch's modules under
    kernels=hopper: the kernels save less, so the estimate stays on the safe side, and no kernel autotunes at a
    shape no step has."""
    module = ClassificationModule(load_config("model", "crossvit_tiny"), {"name": "cross_attention"})
    module.trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False, enable_checkpointing=False)
    expected = step_memory(module, 8)
    kernels.use_kernels(module.model, mlp="quack", attention="fa4", device=torch.device("cuda"))
    assert step_memory(module, 8) == expected
    assert hopper["fa4"] == [] and hopper["quack"] == []


def test_fa4_keeps_its_compiled_kernels_on_disk_unless_told_not_to(hopper, monkeypatch):
    """flash-attn-4 compiles each kernel again in every process unless its disk cache is on (quack's is on by
    default); a user's own setting stands."""
    gpu = torch.device("cuda")
    monkeypatch.delenv("FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED", raising=False)
    kernels.check_kernels(mlp="quack", device=gpu, precision="bf16-mixed")
    assert "FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED" not in os.environ  # not without flash-attn-4
    kernels.check_kernels(attention="fa4", device=gpu, precision="bf16-mixed")
    assert os.environ["FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED"] == "1"
    monkeypatch.setenv("FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED", "0")
    kernels.check_kernels(attention="fa4", device=gpu, precision="bf16-mixed")
    assert os.environ["FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED"] == "0"


def test_default_kernels_leave_the_model_as_it_is(hopper):
    model = create_model("crossvit_tiny")
    kernels.use_kernels(model, mlp="torch", attention="sdpa", device=torch.device("cpu"))
    assert not [m for m in model.modules() if "forward" in vars(m)]  # no instance forward: the classes' own


def _assert_compiles_whole_as_eager(block: Block) -> None:
    """`block` as it is now compiles as one graph (fullgraph=True), with the output and input gradient of the
    plain eager block it was (its instance forwards removed)."""
    x = torch.randn(2, 17, 64, requires_grad=True)
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    grad = torch.autograd.grad(out.square().sum(), x)[0]
    for module in block.modules():
        vars(module).pop("forward", None)
    expected = block(x)
    expected_grad = torch.autograd.grad(expected.square().sum(), x)[0]
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-5)


def test_fa4_attention_compiles_whole_through_its_custom_ops(hopper):
    """The custom ops' fake kernels and autograd rule let torch.compile take a block with attention=fa4 as one graph,
    with the eager SDPA block's output and gradients."""
    torch.manual_seed(0)
    block = Block(64, num_heads=2).eval()
    kernels.swap_forward(block, Attention, kernels.fa4_packed_forward)
    _assert_compiles_whole_as_eager(block)
    assert hopper["fa4"] == [(2, 17, 2, 32)]


def test_quack_mlp_compiles_whole(hopper):
    """The fused MLP's forward traces as one graph inside a timm Block, with the eager block's output and
    gradients."""
    torch.manual_seed(0)
    block = Block(64, num_heads=2)
    kernels.swap_forward(block, Mlp, kernels.quack_mlp_forward())
    _assert_compiles_whole_as_eager(block)
    assert [c[0] for c in hopper["quack"]] == ["fc1", "fc2"]


def test_fa4_tiles_reach_the_kernels_for_their_head_dims_only(monkeypatch, tmp_path):
    """kernels.fa4_tiles (a `fa4_attention.py --tune` run's JSON): the forward gets the tuned tile of its head dim
    and the backward's Hopper config is the tuned one there; other head dims, and causal attention, keep
    flash-attn-4's own, also after a second file. flash-attn-4's interface module is a stand-in here."""
    interface = types.ModuleType("flash_attn.cute.interface")
    interface.BwdConfig = lambda **cfg: ("tuned", cfg)
    interface._tile_size_bwd_sm90 = lambda head_dim, *args, **kwargs: ("default", head_dim)
    package = types.ModuleType("flash_attn.cute")
    package.interface = interface
    monkeypatch.setitem(sys.modules, "flash_attn", types.ModuleType("flash_attn"))
    monkeypatch.setitem(sys.modules, "flash_attn.cute", package)
    monkeypatch.setitem(sys.modules, "flash_attn.cute.interface", interface)
    monkeypatch.setattr(kernels, "FWD_TILES", {})
    monkeypatch.setattr(kernels, "BWD_TILES", {})
    seen = []
    monkeypatch.setattr(kernels, "fa4_kernels", lambda: (lambda q, k, v, **kw: seen.append(kw) or (q, q), None))
    tiles = {"64": {"fwd": [128, 208, True, True], "bwd": {"m_block_size": 112}}, "32": {"fwd": [128, 128, True, True]}}
    path = tmp_path / "tiles.json"
    path.write_text(json.dumps(tiles))
    kernels.use_fa4_tiles(str(path))
    kernels.use_fa4_tiles(str(path))  # twice: still one layer over flash-attn-4's own choice
    q = torch.zeros(1, 4, 2, 64)
    kernels.fa4_attend(q, q, q, 0.125)
    kernels.fa4_attend(torch.zeros(1, 4, 2, 16), q, q, 0.25)
    assert seen[0] == dict(
        softmax_scale=0.125, return_lse=True, tile_mn=(128, 208), mma_pv_is_rs=True, intra_wg_overlap=True
    )
    assert seen[1] == dict(softmax_scale=0.25, return_lse=True)  # head dim 16: not tuned
    bwd = interface._tile_size_bwd_sm90
    assert bwd(64, 64, False, False) == ("tuned", {"m_block_size": 112})
    assert bwd(32, 32, False, False) == ("default", 32)  # tuned forward only
    assert bwd(64, 64, True, False) == ("default", 64)  # causal: flash-attn-4's own
    assert bwd.default(64, 64, False, False) == ("default", 64)


def quack_result(key: str, timings: dict[str, float]) -> dict:
    """One shape's `*.autotune.json` as quack-kernels 0.6.5 writes it: each config's median, 20th and 80th
    percentile times."""
    return {"key": key, "configs_timings": [[config, [t, t * 0.99, t * 1.01]] for config, t in timings.items()]}


def test_quack_tuning_puts_each_shapes_winner_where_quack_reads_its_cache(hopper, monkeypatch, tmp_path):
    """benchmarks/quack_tuning.py keeps each shape's fastest config from a quack cache; kernels.quack_tuning puts
    them into quack's cache on the GPU and quack they were measured with, never over that machine's own results."""
    measured = tmp_path / "measured"
    results = {
        "KEYA/mod_linear_act_epi_1.autotune.json": quack_result(
            "(fc1, 50432, 448)", {"tile 128x224": 0.21, "tile 256x128": 0.15, "tile 128x128": 0.30}
        ),
        "KEYB/mod_dact_epi_2.autotune.json": quack_result(
            "(fc2, 50432, 1344)", {"tile 128x224": 0.19, "tile 256x128": 0.23}
        ),
        "KEYC/mod_linear_act_epi_1.autotune.json": quack_result(
            "(fc1, 1576, 448)", {"tile 128x160": 0.01, "tile 256x128": 0.02}
        ),
    }
    for name, result in results.items():
        (measured / name).parent.mkdir(parents=True)
        (measured / name).write_text(json.dumps(result))
    # model_speed.sh returns them as `find . -name '*.autotune.json' | tar czf ... -T -` run in the cache
    with tarfile.open(tmp_path / "quack_tuning.tar.gz", "w:gz") as tar:
        for name in results:
            tar.add(measured / name, arcname=f"./{name}")
    bundle, from_tar = tmp_path / "tuning.json", tmp_path / "from_tar.json"
    for source, out in ((measured, bundle), (tmp_path / "quack_tuning.tar.gz", from_tar)):
        subprocess.run(
            [sys.executable, str(ROOT / "benchmarks/quack_tuning.py"), str(source), "--gpu", "NVIDIA H200",
             "--quack", "0.6.5", "--out", str(out)],
            check=True, capture_output=True,
        )  # fmt: skip
    assert json.loads(from_tar.read_text()) == json.loads(bundle.read_text())
    cache = tmp_path / "cache"
    monkeypatch.setenv("QUACK_CACHE_DIR", str(cache))
    own = quack_result("(fc2, 50432, 1344)", {"tile 128x224": 0.18, "tile 256x128": 0.24})
    (cache / "KEYB").mkdir(parents=True)
    (cache / "KEYB/mod_dact_epi_2.autotune.json").write_text(json.dumps(own))  # this machine's autotuning

    kernels.use_kernels(
        create_model("crossvit_tiny"), mlp="quack", quack_tuning=str(bundle), device=torch.device("cuda")
    )
    put = {str(f.relative_to(cache)): json.loads(f.read_text()) for f in cache.glob("*/*.autotune.json")}
    winner = quack_result("(fc1, 50432, 448)", {"tile 256x128": 0.15})  # each shape's fastest, alone
    assert put == {
        "KEYA/mod_linear_act_epi_1.autotune.json": winner,
        "KEYB/mod_dact_epi_2.autotune.json": own,  # not replaced
        "KEYC/mod_linear_act_epi_1.autotune.json": quack_result("(fc1, 1576, 448)", {"tile 128x160": 0.01}),
    }

    for gpu, version in (("NVIDIA H100 80GB HBM3", "0.6.5"), ("NVIDIA H200", "0.6.6")):  # measured elsewhere
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, gpu=gpu: gpu)
        monkeypatch.setattr(sys.modules["quack"], "__version__", version)
        monkeypatch.setenv("QUACK_CACHE_DIR", str(tmp_path / gpu / version))
        assert kernels.seed_quack_tuning(str(bundle), torch.device("cuda")) == 0
        assert not list((tmp_path / gpu / version).glob("*/*.json"))


def test_kernels_that_cannot_run_say_so_in_one_line_naming_the_key_and_the_fix(hopper, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    model = create_model("crossvit_tiny")
    gpu = torch.device("cuda")
    with pytest.raises(ConfigError, match=r"kernels.mlp=cutlass: not one of torch, quack"):
        kernels.use_kernels(model, mlp="cutlass", device=gpu)
    with pytest.raises(ConfigError, match=r"kernels.fa4_tiles=t.json is for kernels.attention=fa4 \(now sdpa\)"):
        kernels.use_kernels(model, fa4_tiles="t.json", device=gpu)
    with pytest.raises(ConfigError, match=r"kernels.mlp=quack needs a CUDA GPU.*not cpu"):
        kernels.use_kernels(model, mlp="quack", device=torch.device("cpu"))
    dropout = create_model("crossvit_tiny")
    next(m for m in dropout.modules() if type(m) is Attention).attn_drop.p = 0.1
    with pytest.raises(
        ConfigError, match=r"attention=fa4 takes attention with no dropout; or use kernels.attention=sdpa"
    ):
        kernels.use_kernels(dropout, attention="fa4", device=gpu)
    next(m for m in dropout.modules() if type(m) is Mlp).drop2.p = 0.1
    with pytest.raises(
        ConfigError, match=r"mlp=quack takes MLPs with the exact GELU and no dropout; or use kernels.mlp"
    ):
        kernels.use_kernels(dropout, mlp="quack", device=gpu)
    assert not [m for m in dropout.modules() if "forward" in vars(m)]  # nothing swapped by a refused call
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    with pytest.raises(
        ConfigError, match=r"fa4 need a Hopper \(sm90\) GPU or newer, not the NVIDIA A100; or use kernels="
    ):
        kernels.use_kernels(model, mlp="quack", attention="fa4", device=gpu)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    with pytest.raises(
        ConfigError, match=r"attention=fa4 needs 16-bit activations, not trainer.precision=32-true: use"
    ):
        kernels.use_kernels(model, attention="fa4", device=gpu, precision="32-true")
    kernels.check_kernels(attention="fa4", device=gpu, precision="bf16-mixed")  # trainer=gpu's: no error
    with pytest.raises(ConfigError, match=r"kernels.fa4_tiles=none.json: no such file"):
        kernels.use_kernels(model, attention="fa4", fa4_tiles="none.json", device=gpu)
    with pytest.raises(ConfigError, match=r"kernels.quack_tuning=q.json is for kernels.mlp=quack \(now torch\)"):
        kernels.use_kernels(model, attention="fa4", quack_tuning="q.json", device=gpu)
    with pytest.raises(ConfigError, match=r"kernels.quack_tuning=none.json: no such file \(a `benchmarks/quack_t"):
        kernels.use_kernels(model, mlp="quack", quack_tuning="none.json", device=gpu)
    (tmp_path / "tiles.json").write_text('{"64": {"fwd": [128, 208, true, true]}}')  # fa4_tiles' kind of file
    with pytest.raises(ConfigError, match=r"quack_tuning=tiles.json: not a `benchmarks/quack_tuning.py` JSON \(gpu, "):
        kernels.use_kernels(model, mlp="quack", quack_tuning="tiles.json", device=gpu)
    monkeypatch.setitem(sys.modules, "quack.linear", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"kernels.mlp needs quack-kernels .*-r requirements-hopper.lock.*to torch"):
        kernels.use_kernels(model, mlp="quack", device=gpu)
    assert not [m for m in model.modules() if "forward" in vars(m)]  # nothing swapped by a refused call


def test_train_and_eval_refuse_hopper_kernels_on_the_cpu_in_one_line(tmp_path):
    """The config group reaches use_kernels from both entry scripts, before any data is read."""
    for script, extra in (("train.py", (QUICK, *QUIET)), ("eval.py", ("ckpt_path=none.ckpt", *QUIET[:1]))):
        overrides = ("kernels=hopper", "trainer=cpu", f"hydra.run.dir={tmp_path / script}")
        proc = run_script(script, *extra, *overrides, check=False)  # eval.yaml has no callbacks group to quiet
        assert proc.returncode != 0
        assert "kernels.mlp=quack and kernels.attention=fa4 need a CUDA GPU" in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


def test_train_and_eval_run_whole_on_the_hopper_kernels_in_16_bit(tmp_path):
    """kernels=hopper through src/train.py (fit, validation, the best checkpoint's test) and src/eval.py, on the CPU
    with references that take 16-bit inputs only, as flash-attn-4 does: each step reaches the kernels under
    autocast, and what runs the model outside it (the fit's FLOP count, the memory preflight) runs PyTorch's
    modules. The first GPU run stopped there (docs/speed_notes.md, eighth session)."""

    def run(script: str, *overrides: str) -> str:
        proc = FORK_SERVER.run(
            [sys.executable, "tests/kernel_references.py", script, *overrides, "kernels=hopper",
             "trainer.precision=bf16-mixed", "data=synthetic", "data.in_chans=1", "data.size=32",
             "data.test_size=8", "data.eval_batch_size=8"],
            cwd=ROOT, env=dict(os.environ), timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        calls = json.loads(proc.stdout.strip().splitlines()[-1].removeprefix("kernel calls: "))
        assert calls["fa4"] > 0 and calls["quack"] > 0, calls
        return proc.stdout + proc.stderr

    train = tmp_path / "train"
    log = run(
        "src/train.py", "model=crossvit_micro_28", "data.batch_size=8", "trainer.max_epochs=1", "compile=false",
        "logger=csv", f"hydra.run.dir={train}", *QUIET[:2],
    )  # fmt: skip
    assert "0.02 GFLOPs an image" in log  # the model summary's count ran
    assert "memory preflight: a training step needs about" in log
    assert "val/acc" in json.loads((train / "metrics.json").read_text())
    run("src/eval.py", f"ckpt_path={train / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert "test/acc" in json.loads((tmp_path / "eval" / "metrics.json").read_text())
