"""Running out of memory ends in one line that names the estimate, the limit and the fix, before work is lost."""

import re
import resource
import subprocess
import sys

import pytest
from conftest import QUICK, QUIET, ROOT, needs_fmnist, run_script

GB = 1e9
SYNTHETIC = ["data=synthetic", "data.size=160", "data.test_size=32", "trainer.max_epochs=1"]


def run_limited(address_space_gb: float, *overrides: str) -> subprocess.CompletedProcess:
    """src/train.py under `ulimit -v` (RLIMIT_AS), as some clusters run jobs."""
    limit = int(address_space_gb * 2**30)
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), QUICK, *overrides, *QUIET],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    )


@needs_fmnist
def test_a_step_too_large_for_the_host_stops_before_training(tmp_path):
    # The design card's headline model at a batch no host has the memory for.
    proc = run_script(
        "train.py", QUICK, "model=crossvit_18", "data.batch_size=4096", f"hydra.run.dir={tmp_path}", *QUIET, check=False
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    need, free = map(float, re.search(r"needs about ([\d.]+) GB .* has ([\d.]+) GB free", line).groups())
    assert need > 500 > free  # crossvit_18 keeps ~0.2 GB of activations per 240 px image in fp32
    assert "for data.batch_size=4096 at 32-true precision" in line
    suggested = int(re.search(r"set data.batch_size=(\d+) \(trainer.accumulate_grad_batches=(\d+)", line).group(1))
    assert 0 < suggested < 4096 and suggested * need / 4096 < free  # the suggestion fits
    assert "train on a GPU (trainer=gpu)" in line and "Traceback" not in proc.stderr
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_the_estimate_is_near_the_measured_peak(tmp_path):
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = run_script(
        "train.py", QUICK, *SYNTHETIC, "model=crossvit_9", "data.batch_size=64", "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "data.eval_batch_size=4",
        f"hydra.run.dir={tmp_path}", *QUIET, fresh=True,
    )  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert peak > before * 1024, "the run's peak is not above earlier children's; run this test on its own"
    need = float(re.search(r"a training step needs about ([\d.]+) GB", proc.stdout + proc.stderr).group(1)) * GB
    # The process itself (libraries, data) takes about 1 GB beside the step.
    assert 0.7 * (peak - 1.2 * GB) < need < 1.5 * peak, (need / GB, peak / GB)


def test_a_ulimit_counts_as_the_limit():
    proc = run_limited(6, *SYNTHETIC, "model=crossvit_9", "data.batch_size=128")
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: one training step needs about") and "set data.batch_size=" in line


def test_running_out_of_memory_during_training_is_one_line():
    # The preflight off, so the step itself runs out of the 6 GB the process may address.
    proc = run_limited(6, *SYNTHETIC, "model=crossvit_9", "data.batch_size=128", "~callbacks.memory_preflight")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: out of host memory during the run; lower data.batch_size (trainer.accumulate_grad_batches=N keeps "
        "the global batch), use trainer.precision=bf16-mixed, or choose a smaller model="
    )
    assert "Traceback" not in proc.stderr
