"""hydra/launcher=slurm on a real one-node SLURM cluster (scripts/slurm_local.sh): DDP tasks through srun, and a
requeued (preempted) job that the sweep waits for instead of counting it finished."""

import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import QUICK, QUIET, ROOT, SAME_STEPS, read_metrics, step_losses

SCRIPT = ROOT / "scripts" / "slurm_local.sh"


@pytest.fixture(scope="module")
def slurm_env():
    """The local cluster's environment (SLURM_CONF); the cluster stops after the module."""
    if os.geteuid() != 0:
        pytest.skip("scripts/slurm_local.sh needs root to run slurmctld, slurmd and munged")
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        pytest.skip("no SLURM installed and no apt-get to install it (make setup installs slurm-wlm where apt is)")
    out = subprocess.run([SCRIPT, "start"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    conf = out.stdout.strip().rpartition("SLURM_CONF=")[2]
    yield {**os.environ, "SLURM_CONF": conf, "HYDRA_FULL_ERROR": "0"}
    subprocess.run([SCRIPT, "stop"], timeout=60)


def squeue(env, *args):
    return subprocess.run(["squeue", "-h", *args], env=env, capture_output=True, text=True).stdout.split()


@pytest.mark.slow
def test_a_slurm_sweep_of_ddp_jobs_survives_a_requeue(tmp_path, slurm_env, one_process_run):
    """Two jobs of 2 DDP tasks each (srun, Lightning's SLURM environment), both training SAME_STEPS. Job 0 runs
    through: its per-step loss equals one process's. Job 1 is requeued mid-training, as a preemption does: it saves
    last.ckpt, exits without a result, runs again from last.ckpt at the next batch, and only then does the sweep end;
    every step it trains after the requeue equals job 0's."""
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable, str(ROOT / "src" / "train.py"), "-m", QUICK, "hydra/launcher=slurm",
        "hydra.launcher.partition=debug", "trainer=ddp_cpu", "trainer.devices=2", "data.batch_size=8",
        "ckpt_path=last", "tags=[uninterrupted],[requeued]", *SAME_STEPS, f"hydra.sweep.dir={sweep}", *QUIET,
    ]  # fmt: skip
    driver = subprocess.Popen(cmd, cwd=ROOT, env=slurm_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = sweep / "1" / "checkpoints" / "last.ckpt"  # job 1's first epoch is done
    deadline = time.time() + 240
    while not last.exists():
        assert driver.poll() is None and time.time() < deadline, driver.stdout.read()[-3000:]
        time.sleep(0.1)
    (job,) = [j for j in squeue(slurm_env, "-o", "%i") if j.endswith("_1")]
    subprocess.run(["scontrol", "requeue", job], env=slurm_env, check=True)
    out, _ = driver.communicate(timeout=400)
    assert driver.returncode == 0, out[-3000:]
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "before the run finished (no metrics.json)" in logs  # job 1's first run stopped at the requeue
    assert f"Restoring states from the checkpoint path at {last}" in logs  # its second run resumed
    assert read_metrics(sweep / "1")["epochs"] == 3
    one, job0, job1 = step_losses(one_process_run), step_losses(sweep / "0"), step_losses(sweep / "1")
    assert len(one) == 48 and one.keys() == job0.keys()
    for step in one:
        assert job0[step] == pytest.approx(one[step], abs=1e-5), step
    assert min(job1) >= 16 and max(job1) == 47  # the log of job 1's run after the requeue
    for step in job1:
        assert job1[step] == pytest.approx(job0[step], abs=1e-6), step
    deadline = time.time() + 60  # SLURM ends a job a moment after its result is written
    while squeue(slurm_env):
        assert time.time() < deadline, squeue(slurm_env)
        time.sleep(0.5)
