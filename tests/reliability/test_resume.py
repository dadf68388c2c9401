"""Nothing lost: a killed run resumes to the same result, SIGTERM saves a checkpoint, a torn write is harmless."""

import signal
import subprocess
import sys
import time

import fsspec.implementations.local
import pytest
import torch
from conftest import QUICK, QUIET, ROOT, read_metrics, run_script
from lightning.pytorch.plugins.io import TorchCheckpointIO

# Slow enough to be caught mid-epoch; no augmentation or dropout, so every step is a function of the seed.
RUN = [
    QUICK,
    "data=synthetic",
    "data.in_chans=1",
    "data.size=1088",
    "data.test_size=128",
    "data.batch_size=16",
    "data.hflip=0",
    "trainer.max_epochs=3",
    "seed=7",
]


def _start(run_dir, *extra):
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), *RUN, f"hydra.run.dir={run_dir}", *QUIET, *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=180):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    run_script("train.py", QUICK, *RUN, f"hydra.run.dir={tmp_path / 'whole'}", *QUIET)
    whole = read_metrics(tmp_path / "whole")

    proc = _start(tmp_path / "killed")
    _wait_for(tmp_path / "killed" / "checkpoints" / "last.ckpt", proc)  # epoch 0 is saved; epoch 1 is running
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    assert torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] < 2

    run_script("train.py", QUICK, *RUN, f"hydra.run.dir={tmp_path / 'killed'}", "ckpt_path=last", *QUIET)
    resumed = read_metrics(tmp_path / "killed")
    for key in ("val/loss", "val/acc", "test/loss", "test/acc", "test/acc_branch0"):
        assert resumed[key] == pytest.approx(whole[key], abs=1e-6), key
    assert resumed["epochs"] == whole["epochs"] == 3


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_is_not_a_finished_run(tmp_path):
    proc = _start(tmp_path, "trainer.max_epochs=50")
    _wait_for(tmp_path / "checkpoints" / "last.ckpt", proc)
    first = (tmp_path / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    # A preempted run reports no result: the exit status of a SIGTERM-killed process, and the reason in one line.
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "before the run finished (no metrics.json)" in err and "ckpt_path=last" in err
    assert "Traceback" not in err and not (tmp_path / "metrics.json").exists()
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.stat().st_mtime_ns > first  # written at the signal, not the epoch-end one
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] > 0 and ckpt["epoch"] < 50


def test_a_torn_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    """Lightning writes through an fsspec transaction: the file is replaced only once it is complete."""
    path = tmp_path / "last.ckpt"
    io = TorchCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, path)

    def torn_write(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError("killed mid-write")

    monkeypatch.setattr(fsspec.implementations.local.LocalFileOpener, "write", torn_write, raising=False)
    with pytest.raises(OSError, match="killed mid-write"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "epoch": 2}, path)
    monkeypatch.undo()
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["epoch"] == 1 and torch.equal(ckpt["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
