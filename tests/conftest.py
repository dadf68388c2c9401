import csv
import json
import os
import subprocess
import sys
from pathlib import Path

# make test runs the files on pytest-xdist workers, one a core. Each worker's tests and the scripts they start get
# their share of the cores: a worker with torch's default of one thread a core would spin OpenMP threads against the
# other worker's, and both ran slower than the files one after another. Set before torch is imported, which reads it.
if workers := os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(workers))))

import pytest  # noqa: E402
import torch  # noqa: E402
from forkserver import ForkServer  # noqa: E402

# Tests never reach a hub or W&B's servers.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding a `slow` test first: xdist hands out whole files in this order (make test's `--dist loadfile`),
    and the longest started last would leave the other workers idle at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: each file's own order stays


FUSION_NAMES = ["none", "all_attention", "class_token", "pairwise", "cross_attention"]


@pytest.fixture(params=FUSION_NAMES)
def fusion_name(request) -> str:
    return request.param


ROOT = Path(__file__).resolve().parents[1]
FORK_SERVER = ForkServer()


@pytest.fixture(scope="session", autouse=True)
def _close_fork_server():
    yield
    FORK_SERVER.close()


QUIET = ["trainer.enable_progress_bar=false", "~callbacks.progress_bar", "trainer.enable_model_summary=false"]
# The embedded quick schedule (3 epochs, lr 2e-3, no Mixup): the groups' defaults are the paper's 300-epoch recipe.
QUICK = "experiment=fashion_mnist"
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def run_script(
    script: str,
    *overrides: str,
    check: bool = True,
    timeout: int = 600,
    env: dict | None = None,
    cwd: Path = ROOT,
    fresh: bool = False,
) -> subprocess.CompletedProcess:
    """Run src/<script> as a user would, in a process of its own; on failure the assertion shows its output.

    The process is forked from one that has imported the heavy libraries already (tests/forkserver.py) where it
    can be; `fresh` asks for a new interpreter (a test that measures the process itself as this one's child)."""
    cmd = [sys.executable, str(ROOT / "src" / script), *overrides]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    proc = FORK_SERVER.run(cmd, cwd=cwd, env=env, timeout=timeout, fresh=fresh)
    if check:
        assert proc.returncode == 0, (
            f"{' '.join(cmd)}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed (make setup does it)")


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> Path:
    """A real 2 fusions x 2 seeds sweep of tiny models on synthetic data, made once per test session."""
    sweep = tmp_path_factory.mktemp("sweep")
    run_script(
        "train.py",
        "-m",
        QUICK,
        "fusion=cross_attention,none",  # not the report's order: it must sort them
        "seed=0,1",
        "data=synthetic",
        "data.in_chans=1",
        "data.size=192",
        "trainer.max_epochs=1",
        "model.embed_dim=[32,64]",
        "model.num_heads=[2,2]",
        f"hydra.sweep.dir={sweep}",
        *QUIET,
    )
    return sweep


# Deterministic data order and no randomness in the step, so 1 and 2 processes see the same global batches.
SAME_STEPS = [
    "data=synthetic",
    "data.shuffle=false",
    "data.hflip=0",
    "data.size=320",
    "data.test_size=64",
    "recipe.label_smoothing=0",
    "recipe.ema_decay=0.9",  # the EMA copy is a second model inside the module: DDP must not wait on its grads
    "trainer.max_epochs=3",
    "trainer.log_every_n_steps=1",
    "model.embed_dim=[32,64]",
    "model.num_heads=[2,2]",
    "model.depth=[[1,1],[1,1]]",
]


def step_losses(run_dir) -> dict[int, float]:
    """train/loss of each step, from a run's CSV log."""
    rows = csv.DictReader((run_dir / "csv" / "metrics.csv").open())
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


@pytest.fixture(scope="session")
def one_process_run(tmp_path_factory):
    """SAME_STEPS in one process with the global batch of 16: the reference for every DDP test."""
    run = tmp_path_factory.mktemp("one")
    run_script("train.py", QUICK, "trainer=cpu", "data.batch_size=16", f"hydra.run.dir={run}", *SAME_STEPS, *QUIET)
    return run
