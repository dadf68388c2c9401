"""hydra/launcher=slurm on a real one-node SLURM cluster (scripts/slurm_local.sh): DDP tasks through srun, a requeued
(preempted) job and a job at its time limit, each of which the sweep waits for instead of counting it finished."""

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


def wait_for(path, driver, seconds=240):
    deadline = time.time() + seconds
    while not path.exists():
        assert driver.poll() is None and time.time() < deadline, driver.stdout.read()[-3000:]
        time.sleep(0.1)


@pytest.mark.slow
def test_a_slurm_sweep_of_ddp_jobs_survives_a_requeue_and_a_time_limit(tmp_path, slurm_env, one_process_run):
    """Three jobs of 2 DDP tasks each (srun, Lightning's SLURM environment), all training SAME_STEPS. Job 0 runs
    through: its per-step loss equals one process's. Job 1 is requeued mid-training, as a preemption does (SIGTERM);
    job 2 gets the signal SLURM sends ahead of a job's time limit (submitit's `--signal=USR2@signal_delay_s`; sent
    here by hand, as submitit's own tests do, instead of waiting out a one-minute limit). Each saves last.ckpt where it
    stops, exits without a result, runs again from there at the next batch, and only then does the sweep end; every
    step trained after the restart equals job 0's."""
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable, str(ROOT / "src" / "train.py"), "-m", QUICK, "hydra/launcher=slurm",
        "hydra.launcher.partition=debug", "trainer=ddp_cpu", "trainer.devices=2", "data.batch_size=8",
        "ckpt_path=last", "tags=[uninterrupted],[requeued],[time_limit]", *SAME_STEPS, f"hydra.sweep.dir={sweep}",
        *QUIET,
    ]  # fmt: skip
    driver = subprocess.Popen(cmd, cwd=ROOT, env=slurm_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for index, interrupt in (("1", ["scontrol", "requeue"]), ("2", ["scancel", "--signal=USR2"])):
        wait_for(sweep / index / "checkpoints" / "last.ckpt", driver)  # the job's first epoch is done
        (job,) = [j for j in squeue(slurm_env, "-o", "%i") if j.endswith(f"_{index}")]
        subprocess.run([*interrupt, job], env=slurm_env, check=True)
    out, _ = driver.communicate(timeout=400)
    assert driver.returncode == 0, out[-3000:]
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert logs.count("before the run finished (no metrics.json)") >= 2  # both first runs stopped without a result
    assert "stopped by SIGUSR2" in logs and "SIGUSR2: saved" in logs  # job 2 saved where it stopped, then
    assert "Caught signal SIGUSR2" in logs  # handed the signal back to submitit, which requeued it
    one, job0 = step_losses(one_process_run), step_losses(sweep / "0")
    assert len(one) == 48 and one.keys() == job0.keys()
    for step in one:
        assert job0[step] == pytest.approx(one[step], abs=1e-5), step
    for index in ("1", "2"):
        last = sweep / index / "checkpoints" / "last.ckpt"
        assert f"Restoring states from the checkpoint path at {last}" in logs  # its second run resumed
        assert read_metrics(sweep / index)["epochs"] == 3
        resumed = step_losses(sweep / index)  # the log of the job's run after the restart
        assert min(resumed) >= 16 and max(resumed) == 47, index
        for step in resumed:
            assert resumed[step] == pytest.approx(job0[step], abs=1e-6), (index, step)
    deadline = time.time() + 60  # SLURM ends a job a moment after its result is written
    while squeue(slurm_env):
        assert time.time() < deadline, squeue(slurm_env)
        time.sleep(0.5)
