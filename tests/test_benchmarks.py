import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import types

import pytest
import torch
import torch.nn.functional as F
from conftest import FORK_SERVER, ROOT
from kernel_references import assert_same_logits_and_grads, logits_and_grads, stand_in_for_a_hopper_gpu


def run_benchmark(
    script: str, *args: str, launcher: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """A benchmarks/ script run from the repository root, as its docstring shows; its stderr if it fails. Forked
    from the tests' fork server (conftest.run_script says why) unless a launcher such as torchrun starts it."""
    cmd = [sys.executable, *launcher, str(ROOT / "benchmarks" / script), *args]
    env = {**os.environ, **(env or {})}
    proc = FORK_SERVER.run(cmd, cwd=ROOT, env=env, timeout=300, fresh=bool(launcher))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_throughput_smoke_runs_ours_and_timm(tmp_path):
    out = tmp_path / "rows.json"
    proc = run_benchmark("throughput.py", "--smoke", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    speed = [r for r in rows if "train_img_s" in r]
    assert {r["impl"] for r in speed} == {"ours", "timm"} and all(r["train_img_s"] > 0 for r in speed)
    ours, ref = (next(r for r in speed if r["impl"] == impl) for impl in ("ours", "timm"))
    assert ours["drop_path_rates"] == ref["drop_path_rates"] and max(ours["drop_path_rates"]) > 0  # the same work
    (check,) = [r for r in rows if "logits_rel_diff_vs_timm" in r]
    assert check["logits_rel_diff_vs_timm"] < 1e-5  # fp32 on the CPU
    assert "| crossvit_tiny | cross_attention | ours | eager | - |" in proc.stdout
    plot = run_benchmark("plot_speed.py", str(out), "--out", str(tmp_path / "speed.png"))
    assert "2 rows, 2 series" in plot.stdout and (tmp_path / "speed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_ddp_step_smoke_runs_the_ddp_variants_on_two_processes(tmp_path):
    """benchmarks/ddp_step.py waits for a multi-GPU machine; this keeps it runnable: torchrun, gloo, tiny, eager.
    (Its compiled_autograd variant traces every backward through dynamo even here: two minutes on two cores, left
    out.)"""
    out = tmp_path / "ddp.json"
    variants = ["ddp", "no_split", "static", "bf16_hook"]
    launcher = ("-m", "torch.distributed.run", "--nproc_per_node=2")
    run_benchmark(
        "ddp_step.py", "--smoke", "--profile", "1", "--variants", *variants, "--out", str(out), launcher=launcher
    )
    rows = json.loads(out.read_text())
    assert [r["variant"] for r in rows] == variants
    assert all(r["world"] == 2 and r["img_s"] > 0 and r["profile"]["wall_ms"] > 0 for r in rows)


def test_profile_step_smoke_splits_the_step_by_kernel_class(tmp_path):
    """benchmarks/profile_step.py waits for a GPU (issue 14); on the CPU its top-level ops stand in for kernels."""
    out = tmp_path / "profile.json"
    run_benchmark("profile_step.py", "--smoke", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["impl"] for r in rows] == ["ours", "timm"]
    for r in rows:  # a ViT step is mostly matrix products, attention among them
        assert r["by_class_ms"]["gemm"] > 0 and r["by_class_ms"]["attention"] > 0
        assert 0 < r["busy_ms"] <= r["wall_ms"] and r["kernels_per_step"] > 0


def test_free_ops_oracle_leaves_no_norm_gelu_or_attention_kernel_in_the_step():
    """throughput.py's `--free` (issue 14's bound on fusing): inside free_ops, ours has no LayerNorm or GELU and
    never calls SDPA, its output keeps its shape and its gradients flow; SDPA is itself again afterwards."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput import FREE_OPS, free_ops

    from crossvit.models import create_model

    calls = []
    real = F.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    model = create_model("crossvit_tiny")
    assert {type(m) for m in model.modules()} >= {torch.nn.LayerNorm, torch.nn.GELU}
    x = torch.randn(2, 3, model.input_size, model.input_size)
    F.scaled_dot_product_attention = counted
    try:
        model(x)
        assert calls  # the spy sees the model's attention
        calls.clear()
        with free_ops(model, FREE_OPS):
            assert not {torch.nn.LayerNorm, torch.nn.GELU} & {type(m) for m in model.modules()}
            out = model(x)
            out.sum().backward()
        assert not calls and out.shape == (2, model.num_classes)
        assert model.head[0].weight.grad.abs().sum() > 0
        assert F.scaled_dot_product_attention is counted
    finally:
        F.scaled_dot_product_attention = real


def _variant(*argv: str) -> argparse.Namespace:
    """throughput.py's variant switches as its parser reads `argv`, the rest at their defaults."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput import add_variant_args

    parser = argparse.ArgumentParser()
    add_variant_args(parser)
    return parser.parse_args(argv)


def test_flex_variant_takes_the_self_attention_and_leaves_the_cls_query_to_sdpa(monkeypatch):
    """throughput.py's `--sdpa flex`: every block's self-attention goes to FlexAttention, with SDPA's scale, and the
    fusion's CLS-only cross-attention (one query) stays on SDPA. FlexAttention itself is PyTorch's (measured on the
    GPU); here a stand-in that computes SDPA records its calls, so the logits must not change."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch.nn.attention.flex_attention as flex
    from throughput import variant_run

    from crossvit.models import create_model

    model = create_model("crossvit_tiny").eval()
    x = torch.randn(2, 3, model.input_size, model.input_size)
    with torch.no_grad():
        expected = model(x)
    sdpa, shapes = F.scaled_dot_product_attention, []

    def flex_attention(q, k, v, scale=None):
        shapes.append(tuple(q.shape))
        return sdpa(q, k, v, scale=scale)

    monkeypatch.setattr(flex, "flex_attention", flex_attention)
    flex_run = _variant("--sdpa", "flex")
    with torch.no_grad(), variant_run(flex_run, model, "ours"):
        out = model(x)
    assert F.scaled_dot_product_attention is sdpa
    # crossvit_tiny: 3 stages of 1 small-branch block (401 tokens, 3 heads of 32) and 4 large-branch ones (197, 64)
    assert sorted(shapes) == [(2, 3, 197, 64)] * 12 + [(2, 3, 401, 32)] * 3
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(
    "variant, inferred_by_fa4", [("fa4", 15), ("fa4-packed", 3), ("fa4-packed-all", 15), ("fa4-packed-train", 0)]
)
def test_fa4_variants_send_each_self_attention_to_the_kernels_with_sdpas_gradients(
    monkeypatch, variant, inferred_by_fa4
):
    """throughput.py's `--sdpa fa4`, `fa4-packed` and `fa4-packed-all` (issue 14): every block's self-attention goes
    to FlashAttention-4's kernels and the fusion's CLS query stays on SDPA; the logits and every gradient are SDPA's,
    so q, k and v reach the kernels, and dq, dk and dv the qkv projection, each in its place. In inference
    `fa4-packed` (kernels.attention=fa4's forward) leaves heads wider than 32 to SDPA, `fa4-packed-all` none and
    `fa4-packed-train` all. The kernels run on the GPU machine; here a PyTorch reference of their interface stands in
    for them."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput import variant_run

    from crossvit.models import create_model

    calls = stand_in_for_a_hopper_gpu(monkeypatch.setattr, monkeypatch.setitem)["fa4"]
    torch.manual_seed(0)
    model = create_model("crossvit_tiny").eval()
    x = torch.randn(2, 3, model.input_size, model.input_size)

    expected, expected_grads = logits_and_grads(model, x)
    run = _variant("--sdpa", variant)
    with variant_run(run, model, "ours"):
        out, grads = logits_and_grads(model, x)
        training_calls = list(calls)
        calls.clear()
        with torch.inference_mode():
            inferred = model(x)
    # crossvit_tiny: 3 stages of 1 small-branch block (401 tokens, 3 heads of 32) and 4 large-branch ones (197, 64)
    assert sorted(training_calls) == [(2, 197, 3, 64)] * 12 + [(2, 401, 3, 32)] * 3
    assert_same_logits_and_grads(out, grads, expected, expected_grads)
    assert len(calls) == inferred_by_fa4
    torch.testing.assert_close(inferred, expected)
    calls.clear()
    model(x)
    assert not calls  # ours as it was, after the run


def test_norm_all_tokens_puts_timms_final_norm_back_with_the_same_logits():
    """throughput.py's `--norm-all-tokens` (the before of issue 14's CLS-only final norm): ours' heads' LayerNorm
    works on every token again, as timm's does, and the logits stay."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput import variant_name, variant_run

    from crossvit.models import create_model

    torch.manual_seed(0)
    model = create_model("crossvit_tiny").eval()
    x = torch.randn(2, 3, model.input_size, model.input_size)
    seen = []
    for norm in model.norm:
        norm.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    with torch.no_grad():
        expected = model(x)
        with variant_run(_variant("--norm-all-tokens"), model, "ours"):
            out = model(x)
    assert seen == [1, 1, 401, 197]
    torch.testing.assert_close(out, expected)
    assert variant_name({"impl": "ours", "norm_all_tokens": True}) == "final norm on every token"


def test_infer_only_times_inference_without_a_training_step():
    """throughput.py's `--infer-only`: no training step runs (the weights stay as they were: a step would move them),
    and the inference figure is there."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput import measure

    from crossvit.models import create_model

    model = create_model("crossvit_tiny", drop_path_rate=0.1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    r = measure(model, "eager", 2, torch.device("cpu"), steps=1, warmup=0, train_too=False)
    assert r["infer_img_s"] > 0 and r["train_img_s"] != r["train_img_s"]  # NaN: not measured
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert model.training  # left as measure leaves a model it trained
    measure(model, "eager", 2, torch.device("cpu"), steps=1, warmup=0, infer_too=False)
    assert not all(torch.equal(p, before[name]) for name, p in model.named_parameters())  # a step does move them


def test_fa4_tiles_reach_the_framework_tiles_process_wide(monkeypatch, tmp_path):
    """throughput.py's `--fa4-tiles FILE` sets crossvit.models.kernels' tiles, as `kernels.fa4_tiles` does in the
    framework (the hopper_loop call of 2026-11-29 found it calling a function that had moved)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput import apply_variant

    from crossvit.models import kernels

    interface = types.ModuleType("flash_attn.cute.interface")
    interface._tile_size_bwd_sm90 = lambda *args: "default"
    monkeypatch.setitem(sys.modules, "flash_attn.cute", types.SimpleNamespace(interface=interface))
    monkeypatch.setitem(sys.modules, "flash_attn.cute.interface", interface)
    monkeypatch.setattr(kernels, "FWD_TILES", {})
    monkeypatch.setattr(kernels, "BWD_TILES", {})
    path = tmp_path / "tiles.json"
    path.write_text(json.dumps({"64": {"fwd": [128, 208, True, True]}}))
    apply_variant(_variant("--sdpa", "fa4-packed", "--fa4-tiles", str(path)))
    assert kernels.FWD_TILES == {64: (128, 208, True, True)}


def test_variant_names_label_timm_with_only_what_ran_in_it():
    """The tables' and plots' labels: FlashAttention-4, the tiles and quack's MLPs go to ours only (variant_run);
    an SDPA backend goes to both."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput import variant_name

    run = dict(sdpa="fa4-packed", fa4_tiles="docs/t.json", quack_mlp="epilogues-tuned")
    assert variant_name(dict(run, impl="ours")) == "sdpa=fa4-packed tiles t.json quack MLP epilogues-tuned"
    assert variant_name(dict(run, impl="timm")) == "-"
    assert variant_name(dict(impl="timm", sdpa="flash")) == "sdpa=flash"


@pytest.mark.parametrize(
    "mode, tuned, cublas_plain",
    [("default", False, False), ("tuned", True, False), ("epilogues", False, True), ("epilogues-tuned", True, True)],
)
def test_quack_mlp_sends_each_mlp_to_the_fused_kernels_with_the_modules_gradients(
    monkeypatch, mode, tuned, cublas_plain
):
    """throughput.py's `--quack-mlp MODE` (issue 14): every block's MLP of ours goes to quack's fused fc1 (exact GELU
    in its epilogue) and fc2 (GELU's derivative in its backward), with quack's tiles or its autotuning and the plain
    GEMMs on quack's kernels or cuBLAS as the mode asks; logits and every gradient are the plain modules'. Without
    gradients fc2 stays on F.linear. A PyTorch reference of quack's interface stands in for its kernels here."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput import variant_run

    from crossvit.models import create_model

    stand_in = stand_in_for_a_hopper_gpu(monkeypatch.setattr, monkeypatch.setitem)
    calls, asked = stand_in["quack"], stand_in["quack_cublas_plain"]
    torch.manual_seed(0)
    model = create_model("crossvit_tiny").eval()
    x = torch.randn(2, 3, model.input_size, model.input_size)

    expected, expected_grads = logits_and_grads(model, x)
    run = _variant("--quack-mlp", mode)
    with variant_run(run, model, "ours"):
        assert asked == [cublas_plain]
        out, grads = logits_and_grads(model, x)
        assert len(calls) == 30  # crossvit_tiny: 15 blocks, 12 of width 192 (MLP ratio 4) and 3 of width 96
        assert sorted(set(calls)) == [
            (layer, "gelu_erf", tuned, shape)
            for layer, shape in (("fc1", (384, 96)), ("fc1", (768, 192)), ("fc2", (96, 384)), ("fc2", (192, 768)))
        ]
        calls.clear()
        with torch.no_grad():
            inferred = model(x)
        assert {c[0] for c in calls} == {"fc1"}
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(inferred, expected)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    calls.clear()
    model(x)
    assert not calls  # ours as it was, after the run


def test_require_ratio_names_each_model_where_ours_trains_under_the_ratio_of_timms_best():
    """throughput.py --require-ratio (issue 14's regression guard) compares the best mode of each: the H200 figures
    of 2026-11-28 (crossvit_18 1.09x, crossvit_9 1.22x) pass at 1.05 and crossvit_18 fails at 1.1."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from throughput import below_ratio

    rows = [
        dict(model="crossvit_18", impl="ours", mode="reduce-overhead", train_img_s=4142.0),
        dict(model="crossvit_18", impl="ours", mode="eager", train_img_s=1923.0),
        dict(model="crossvit_18", impl="timm", mode="eager", train_img_s=2036.0),
        dict(model="crossvit_18", impl="timm", mode="reduce-overhead", train_img_s=3786.0),
        dict(model="crossvit_9", impl="ours", mode="reduce-overhead", train_img_s=12160.0),
        dict(model="crossvit_9", impl="timm", mode="reduce-overhead", train_img_s=9927.0),
        dict(model="crossvit_15", impl="ours", mode="reduce-overhead", train_img_s=1.0),  # no timm row: not judged
        dict(model="crossvit_18", logits_rel_diff_vs_timm=0.014),
    ]
    assert below_ratio(rows, 1.05) == []
    assert below_ratio(rows, 1.1) == ["crossvit_18 trains at 1.09x timm, under 1.1x"]
    assert len(below_ratio(rows, 1.25)) == 2


def test_fp8_gemm_smoke_scales_each_product_to_within_fp8_rounding(tmp_path):
    """benchmarks/fp8_gemm.py waits for a GPU (issue 14's FP8 candidate); on the CPU its tensorwise scaling is
    checked: every product of every block linear lands within FP8 rounding of bf16's (e4m3 keeps 3 mantissa bits,
    e5m2 2), which a missing or inverted scale does not."""
    out = tmp_path / "fp8.json"
    run_benchmark("fp8_gemm.py", "--smoke", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    # crossvit_tiny: S branch 1 block a stage (401 tokens, width 96), L branch 4 (197 tokens, width 192), 3 stages
    assert {(r["branch"], r["M"], r["count"]) for r in rows} == {(0, 401, 3), (1, 197, 12)}
    assert sorted({r["layer"] for r in rows}) == ["fc1", "fc2", "proj", "qkv"]
    assert all(0.01 < e < 0.1 for r in rows for e in r["fp8_rel_err"]), [r["fp8_rel_err"] for r in rows]


def test_norm_floor_smoke_sums_each_pass_over_its_blocks(tmp_path):
    """benchmarks/norm_floor.py with our Triton LayerNorm (in Triton's interpreter here): a model's totals are each
    pass's time times the times a step runs it (2 LayerNorms and 1 GELU a block), LayerNorm's also on their own."""
    out = tmp_path / "norm.json"
    run_benchmark("norm_floor.py", "--smoke", "--out", str(out), env={"TRITON_INTERPRET": "1"})
    result = json.loads(out.read_text())
    rows, totals = result["rows"], result["totals"]["crossvit_tiny"]
    # crossvit_tiny: 1 small-branch block and 4 large-branch blocks a stage, 3 stages
    assert {(r["branch"], r["op"], r["count"]) for r in rows} == {
        (0, "layer_norm", 6),
        (0, "gelu", 3),
        (1, "layer_norm", 24),
        (1, "gelu", 12),
    }
    norms = [r for r in rows if r["op"] == "layer_norm"]
    assert all(r["triton_ms"] > 0 for r in norms)
    assert totals["layer_norm_triton_ms"] == pytest.approx(sum(r["count"] * r["triton_ms"] for r in norms))
    assert totals["layer_norm_compiled_ms"] == pytest.approx(sum(r["count"] * r["compiled_ms"] for r in norms))
    assert totals["eager_ms"] == pytest.approx(sum(r["count"] * r["eager_ms"] for r in rows))  # no floor on a CPU


DMON = """\
#Time        gpu    sm   mem   enc   dec   jpg   ofa
#HH:MM:SS    Idx     %     %     %     %     %     %
 03:33:01      0     0     0     0     0     -     0
 03:33:02      0    88    10     0     0     -     0
 03:33:03      0    64    12     0     0     -     0
 03:33:04      0     5     1     0     0     -     0
 03:33:05      0    97    40     0     0    30     0
 03:33:06      0    99    42     0     0    35     0
 03:33:07      0    95    41     0     0    20     0
 03:33:08      0     2     0     0     0     0     0
"""


def test_inloop_row_reads_the_device_load_of_the_runs_training(tmp_path):
    """gpu_data_path.sh runs `nvidia-smi dmon -s u` beside a run (DMON=1); the row summarises its longest busy
    stretch (the training), not the compile or validation bursts around it, and skips columns the driver left out."""
    (tmp_path / "c9.log").write_text("training log\n")
    (tmp_path / "c9.dmon.log").write_text(DMON)
    proc = run_benchmark("inloop_row.py", "c9", str(tmp_path / "run"), str(tmp_path / "c9.log"), "0", "60", "x=1")
    row = json.loads(proc.stdout)
    # seconds 5-7 (sm 97, 99, 95; jpg 30, 35, 20), not the two-second burst at 2-3 (whose jpg the driver left out)
    assert row["dmon"] == dict(samples=8, busy_seconds=3, sm_median=97, mem_median=41, jpg_median=30)


def test_inloop_row_lists_each_epochs_img_s_from_the_csv_logger(tmp_path):
    """A run's train_img_s is its last epoch's; the row also lists every epoch's (logger=csv's metrics.csv, as
    Lightning's CSVLogger writes it: one row per logging call, validation's apart), so one slow epoch shows."""
    (tmp_path / "run" / "csv").mkdir(parents=True)
    (tmp_path / "run" / "csv" / "metrics.csv").write_text(
        "epoch,step,train/data_wait,train/img_s,val/acc,val/loss\n"
        "0,79,,,0.01,4.6\n"
        "0,79,0.12,8227.5,,\n"
        "1,159,,,0.02,4.5\n"
        "1,159,0.41,5666.04,,\n"
    )
    (tmp_path / "c9.log").write_text("training log\n")
    proc = run_benchmark("inloop_row.py", "c9", str(tmp_path / "run"), str(tmp_path / "c9.log"), "0", "60", "x=1")
    assert json.loads(proc.stdout)["epochs"] == [
        dict(epoch=0, img_s=8227.5, data_wait=0.12),
        dict(epoch=1, img_s=5666.0, data_wait=0.41),
    ]


def test_loop_profile_splits_the_devices_time_between_the_step_stream_and_the_data_path():
    """benchmarks/loop_profile.py (issue 12): kernels of two steps on two CUDA streams -> ms a step. The step stream
    is the one with the most kernel time; the data path's kernels overlap it for 5 + 3 of their 12 ms."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from loop_profile import summarise

    us = 1000  # the profiler's microseconds; the summary is in ms a step, so 1000 us over 2 steps reads 0.5
    events = [
        (7, "nvjet_tst_gemm", 0, 10 * us),
        (7, "gemm_bias", 12 * us, 20 * us),
        (9, "nvjpeg::rgba2rgb", 5 * us, 15 * us),
        (9, "Memcpy HtoD (Pinned -> Device)", 30 * us, 32 * us),
    ]
    s = summarise(events, wall_ms=50.0, steps=2)
    assert s["step_stream"] == 7 and s["wall_ms"] == 25.0
    assert s["busy_ms"] == 11.0 and s["idle_ms"] == 14.0  # [0, 20) and [30, 32): 22 us over 2 steps
    assert s["step_stream_ms"] == 9.0 and s["other_streams_ms"] == 6.0
    assert s["other_overlapping_step_ms"] == 4.0  # [5, 10) and [12, 15)
    assert s["streams"]["9"] == dict(sum_ms=6.0, union_ms=6.0, n=2)
    assert s["step_stream_classes_ms"] == dict(gemm=9.0)
    assert s["other_top_ms"] == [("nvjpeg::rgba2rgb", 5.0), ("Memcpy HtoD (Pinned -> Device)", 1.0)]


def test_inloop_row_carries_the_runs_loop_profile(tmp_path):
    """A run profiled by loop_profile.py (gpu_data_path.sh's PROFILE=1) has its summary in its row."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "loop_profile.json").write_text(json.dumps(dict(wall_ms=31.4, busy_ms=30.9)))
    (tmp_path / "c9.log").write_text("training log\n")
    proc = run_benchmark("inloop_row.py", "c9", str(tmp_path / "run"), str(tmp_path / "c9.log"), "0", "60", "x=1")
    assert json.loads(proc.stdout)["loop_profile"] == dict(wall_ms=31.4, busy_ms=30.9)


def test_loop_profile_ranks_each_threads_cuda_calls_by_host_time():
    """The host's side of loop_profile.py: CUDA calls summed by (thread, name), per step, most time first."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from loop_profile import api_summary

    calls = [
        (1, "cudaGraphLaunch", 0, 100),
        (1, "cudaStreamSynchronize", 100, 2100),
        (1, "cudaGraphLaunch", 3000, 3100),
        (1, "cudaStreamSynchronize", 3100, 5100),
        (2, "cudaLaunchKernel", 0, 300),
    ]
    assert api_summary(calls, steps=2, top=2) == [
        dict(thread=1, name="cudaStreamSynchronize", calls_per_step=1.0, host_ms=2.0),
        dict(thread=2, name="cudaLaunchKernel", calls_per_step=0.5, host_ms=0.15),
    ]


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_loop_profile_clocks_each_host_thread_and_the_worker_processes():
    """loop_profile.py's host clocks: a Python thread that computes shows its time on a core under its name, one
    that sleeps shows almost none, and a child process's time counts as the workers'. A probe thread's 1 ms naps wake
    late, by about the interpreter's switch interval, only while another thread holds the interpreter's lock."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from loop_profile import WakeProbe, clock_summary, read_clocks

    alone = WakeProbe().start()
    time.sleep(0.3)
    late_alone = alone.stop()
    before = read_clocks()
    probe = WakeProbe().start()
    spinner = threading.Thread(target=_spin, args=(1.5,), name="spinner")
    sleeper = threading.Thread(target=time.sleep, args=(1.5,), name="sleeper")
    worker = multiprocessing.get_context("fork").Process(target=_spin, args=(1.5,))
    for t in (spinner, sleeper, worker):
        t.start()
    time.sleep(0.8)
    after = read_clocks()
    late = probe.stop()
    for t in (spinner, sleeper, worker):
        t.join()
    rows = clock_summary(before, after, steps=1)
    # Each spinner had 0.8 s; how much of it on a core depends on what else runs (make test's other worker too),
    # so the bounds are for whose name the time lands under, not for how much there was
    assert rows["spinner"]["run_ms"] > 150
    assert rows["sleeper"]["run_ms"] < 50
    assert rows["workers"]["run_ms"] > 150
    assert late > 1.5 and late_alone < 1.0, (late, late_alone)


def test_profile_step_sorts_a_real_steps_kernels_into_their_classes():
    """Kernel names from an H200 profile of crossvit_18 (docs/speed_2026-11-27.json): cuDNN's attention helpers
    count as attention, cuBLAS's nvjet and max-autotune's templates as GEMMs, inductor's GELU as elementwise."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from profile_step import kernel_class

    names = {
        "cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26_64x64x64_1x4x1_cga1x1x1_kernel0_": (
            "attention"
        ),
        "void cudnn::fusion::compute_dot_do_o_specialized<true, 64>(void const*, void const*, void*, void*, u": (
            "attention"
        ),
        "void cudnn::fusion::convert_dq_to_16bits<true>(void const*, void*, unsigned int, unsigned int, unsig": (
            "attention"
        ),
        "nvjet_sm90_tst_448x64_64x2_1x2_h_bz_coopB_splitK_NTN": "gemm",
        "triton_tem_fused_addmm_gelu_3": "gemm",
        "triton_poi_fused_gelu_gelu_backward_view_61": "fused_elementwise",
        "triton_per_fused_native_layer_norm_12": "norm",
        "void cudnn::engines_precompiled::nchwToNhwcKernel<__nv_bfloat16, __nv_bfloat16, float, false, true, ": "other",
    }
    assert {name: kernel_class(name) for name in names} == names


def test_profile_step_infer_profiles_the_forward_alone():
    """profile_step.py's `--infer`: the profiled step is inference, with no backward in it, where the training step
    has one (on the CPU, its top-level ops stand in for kernels, the autograd engine's among them)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from profile_step import profile_step

    from crossvit.models import create_model

    cpu = torch.device("cpu")
    runs = {}
    for infer in (False, True):
        torch.manual_seed(0)
        r = profile_step(create_model("crossvit_tiny"), "eager", 2, cpu, steps=1, infer=infer)
        runs[infer] = " ".join(name for name, _ in r["top_kernels_ms"]) + " " + " ".join(r["by_class_ms"])
    assert "Backward" in runs[False] and "Backward" not in runs[True]
