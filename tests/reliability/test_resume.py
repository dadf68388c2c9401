"""Nothing lost: a killed run resumes to the same result, SIGTERM saves a checkpoint, a torn write is harmless."""

import contextlib
import os
import random
import re
import signal
import sys
import time

import fsspec.implementations.local
import psutil
import pytest
import torch
from conftest import FORK_SERVER, QUICK, QUIET, ROOT, read_metrics, run_script, step_losses
from lightning.pytorch.plugins.io import TorchCheckpointIO

# Slow enough to be caught mid-epoch; no augmentation or dropout, so every step is a function of the seed.
RUN = [
    QUICK,
    "data=synthetic",
    "data.in_chans=1",
    "data.size=640",
    "data.test_size=128",
    "data.batch_size=16",
    "data.hflip=0",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "seed=7",
]


def _start(run_dir, *extra):
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), *RUN, f"hydra.run.dir={run_dir}", *QUIET, *extra]
    return FORK_SERVER.popen(cmd, cwd=ROOT, env=dict(os.environ))


def _wait_for(path, proc, timeout=180):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.1)


STEPS_PER_EPOCH = (640 - 128) // 16  # RUN: 128 of the training images held out for validation


@pytest.mark.slow
def test_resume_after_a_kill_or_mid_epoch_preemption_matches_an_uninterrupted_run(tmp_path):
    """SIGKILL after epoch 0's checkpoint resumes from it; SIGTERM at a random step of epoch 1 saves a mid-epoch
    checkpoint, and the run resumes at the next batch in the same order (not at the epoch's start). Both end where
    an uninterrupted run does."""
    run_script("train.py", QUICK, *RUN, f"hydra.run.dir={tmp_path / 'whole'}", *QUIET)
    whole, whole_steps = read_metrics(tmp_path / "whole"), step_losses(tmp_path / "whole")

    for name, sig in (("killed", signal.SIGKILL), ("preempted", signal.SIGTERM)):
        proc = _start(tmp_path / name)
        _wait_for(tmp_path / name / "checkpoints" / "last.ckpt", proc)  # epoch 0 is saved; epoch 1 is running
        time.sleep(random.uniform(0.2, 0.9))
        proc.send_signal(sig)
        proc.wait(timeout=120)
        assert not (tmp_path / name / "metrics.json").exists()
        step = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        if sig == signal.SIGKILL:
            assert step == STEPS_PER_EPOCH
        else:
            assert STEPS_PER_EPOCH < step < 2 * STEPS_PER_EPOCH, step  # mid-epoch

        run_script("train.py", QUICK, *RUN, f"hydra.run.dir={tmp_path / name}", "ckpt_path=last", *QUIET)
        # Each step after the resume trains on the batch the uninterrupted run had there (the resumed run's log).
        resumed = step_losses(tmp_path / name)
        assert sorted(resumed) == list(range(step, 2 * STEPS_PER_EPOCH)), name
        for s in resumed:
            assert resumed[s] == pytest.approx(whole_steps[s], abs=1e-6), (name, s)
        for key in ("val/loss", "test/loss", "test/acc"):
            assert read_metrics(tmp_path / name)[key] == pytest.approx(whole[key], abs=1e-6), (name, key)


@pytest.mark.slow
def test_sigterm_to_one_ddp_rank_stops_both_at_the_same_step(tmp_path):
    """SIGTERM saves a checkpoint and reports no result. Ranks are signalled a moment apart (srun signals task by
    task), here as far apart as it gets: the rank never signalled must stop with its peer, not wait in a collective
    the peer has left (gloo's "Connection closed by peer", which became a SLURM job's result)."""
    proc = _start(
        tmp_path, "trainer=ddp_cpu", "trainer.devices=2", "data.batch_size=8", "data.size=320", "trainer.max_epochs=50"
    )
    _wait_for(tmp_path / "checkpoints" / "last.ckpt", proc)
    first = (tmp_path / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    (rank1,) = [p for p in psutil.Process(proc.pid).children() if "src/train.py" in " ".join(p.cmdline())]
    rank1.send_signal(signal.SIGTERM)  # rank 0 is never signalled
    try:
        _, err = proc.communicate(timeout=90)
    finally:  # the two ranks used to wait on each other for ever
        with contextlib.suppress(psutil.NoSuchProcess):
            rank1.kill()
        proc.kill()
    # A preempted run reports no result: the exit status of a SIGTERM-killed process, and the reason in one line.
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    steps = re.findall(r"stopped by SIGTERM at global step (\d+), before the run finished \(no metrics.json\)", err)
    assert len(steps) == 2 and steps[0] == steps[1], err[-3000:]  # both ranks, after the same step
    assert "Traceback" not in err and "ckpt_path=last" in err and not (tmp_path / "metrics.json").exists()
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.stat().st_mtime_ns > first  # written at the signal, not the epoch-end one
    assert torch.load(last, weights_only=True)["global_step"] == int(steps[0])


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
