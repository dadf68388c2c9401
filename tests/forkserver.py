"""Runs the tests' scripts (src/, benchmarks/) from one process that has imported torch, Lightning, timm and Hydra.

A fresh interpreter spends 5-13 s of this project's 2 CPU cores importing them before a script does anything, and the
suite runs its scripts about forty times. Here a server process imports them once and forks a child for each run;
the child sets argv, cwd, environment, sys.path and standard streams as a new interpreter would and runs the script
as `__main__`, so Hydra, Lightning's DDP launcher and the exit codes see what they see from `python src/x.py`.
A run whose environment changes what the libraries read as they load (READ_AT_IMPORT), and every run under
`CROSSVIT_TESTS_FORK=0`, gets a fresh interpreter instead.

Protocol (one JSON line each way, on the server's stdin and stdout): the request names argv, cwd, env and the two
files for the child's stdout and stderr; the answer is the child's pid, then its return code once it has exited.
`popen` leaves a run going (a test signals it, or watches its files) and reads its return code later.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# What a script's first lines would import anyway (a child imports anything else itself).
PRELOAD = "torch, torchvision, torchmetrics, lightning, timm, hydra, omegaconf, crossvit.module, crossvit.run"
# Variables these libraries (or the C runtime) read when they load: a child can't change them, a new interpreter can.
READ_AT_IMPORT = ("TORCH", "PYTORCH", "TRITON", "CUDA", "NCCL", "OMP_", "MKL_", "KMP_", "LD_", "PYTHON")
# Set in the tests' own process by the libraries themselves, and read by them only when they run: lightning.fabric sets
# the first on import, inductor the second when it first looks for its cache. Left in READ_AT_IMPORT's way, either
# sent every script after the first test that imports Lightning to a new interpreter (10 s of imports each).
READ_AT_RUN = ("PYTORCH_NVML_BASED_CUDA_CHECK", "TORCHINDUCTOR_CACHE_DIR")


def serve() -> None:
    """The server's loop: fork a child for each request and report its pid and return code."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever an import prints must not reach the answers
    for name in PRELOAD.split(", "):
        __import__(name)
    base_path = [p for p in sys.path[1:] if p not in _pythonpath()]  # sys.path[0] is this process's own ''
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            answers.close()
            _become(request, base_path)  # never returns: raises SystemExit like the script's own interpreter
        answers.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")


def _become(request: dict, base_path: list[str]) -> None:
    import runpy

    os.setsid()  # its own process group, so that a timeout kills the DDP ranks it starts too
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    script, *args = request["argv"][1:]
    sys.path[:] = [str(Path(script).resolve().parent), *_pythonpath(), *base_path]
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")
    raise SystemExit(0)


class ForkServer:
    """The test side: start the server once, then `run` scripts through it (as subprocess.run would)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.env = dict(os.environ)  # what the server imports under
        self.started: Started | None = None  # popen's run, while the server waits for it

    def can_run(self, env: dict) -> bool:
        """Whether a child can run under `env`: on, and nothing read at import differs from the server's."""
        if os.environ.get("CROSSVIT_TESTS_FORK", "1") != "1":
            return False
        changed = {k for k in env.keys() | self.env.keys() if env.get(k) != self.env.get(k)} - {
            "PYTHONPATH",
            *READ_AT_RUN,
        }
        return not any(k.startswith(READ_AT_IMPORT) for k in changed)

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "import forkserver; forkserver.serve()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,  # unbuffered: a line read must not take the next answer into a buffer select can't see
                env={**self.env, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *_pythonpath()])},
            )
        return self.proc

    def run(
        self, cmd: list[str], cwd: Path, env: dict, timeout: float, fresh: bool = False
    ) -> subprocess.CompletedProcess:
        """`cmd` (python, a script, its arguments) forked where it can be, else (or if `fresh`) a new interpreter."""
        if fresh or not self.can_run(env):
            return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
        return self.forked(cmd, cwd, env, timeout)

    def popen(self, cmd: list[str], cwd: Path, env: dict) -> Started | subprocess.Popen:
        """`cmd` started and left running, as subprocess.Popen(stdout=DEVNULL, stderr=PIPE, text=True) would: a
        child of the server where it can be (the server takes its next request once this one has ended), else a new
        interpreter. For a test that signals a run or watches it while it runs."""
        if not self.can_run(env):
            return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.finish_started()
        proc = self._start()
        err = Path(tempfile.mkdtemp(), "stderr")
        err.touch()  # to read from now on: the child opens it only after the server has answered
        request = {"argv": cmd, "cwd": str(cwd), "env": env, "stdout": os.devnull, "stderr": str(err)}
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.started = Started(self, self._answer(proc, timeout=120)["pid"], err)
        return self.started

    def finish_started(self) -> None:
        """Wait for popen's run, whose end the server answers before it takes another request."""
        if self.started is not None:
            self.started.wait(timeout=600)
            self.started.stderr.close()
            shutil.rmtree(self.started.err_path.parent, ignore_errors=True)
        self.started = None

    def forked(self, cmd: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
        """`cmd` run by a child of the server, as subprocess.run would run it (output captured, text)."""
        self.finish_started()
        proc = self._start()
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            request = {"argv": cmd, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err)}
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            pid = self._answer(proc, timeout=120)["pid"]  # the first request waits for the imports
            returncode = None
            try:
                returncode = self._answer(proc, timeout)["returncode"]
            except subprocess.TimeoutExpired:
                raise subprocess.TimeoutExpired(cmd, timeout, out.read_text(), err.read_text()) from None
            finally:
                if returncode is None:  # timed out, or the test was interrupted: end the run, take its answer
                    with contextlib.suppress(ProcessLookupError):  # it may have ended on its own meanwhile
                        os.killpg(pid, signal.SIGKILL)
                    self._answer(proc, 30)
            return subprocess.CompletedProcess(cmd, returncode, out.read_text(), err.read_text())

    def _answer(self, proc: subprocess.Popen, timeout: float) -> dict:
        if not select.select([proc.stdout], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(
                f"the tests' fork server exited with {proc.wait()}; CROSSVIT_TESTS_FORK=0 runs without it"
            )
        return json.loads(line)

    def close(self) -> None:
        if self.started is not None and self.started.poll() is None:
            self.started.kill()
        self.finish_started()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()  # the server's loop ends at the end of its input
            self.proc.wait(30)


class Started:
    """A run ForkServer.popen left running in a child of the server: subprocess.Popen's pid, poll, wait, send_signal,
    kill, communicate and stderr (a file the child writes), returncode once it has ended."""

    def __init__(self, server: ForkServer, pid: int, err: Path) -> None:
        self.server, self.pid, self.err_path = server, pid, err
        self.stderr = err.open()
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self.server.proc.stdout], [], [], 0)[0]:
            self.returncode = self.server._answer(self.server.proc, 0)["returncode"]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            try:
                self.returncode = self.server._answer(self.server.proc, timeout)["returncode"]
            except subprocess.TimeoutExpired:
                raise subprocess.TimeoutExpired(self.pid, timeout) from None
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[None, str]:
        self.wait(timeout)
        return None, self.err_path.read_text()

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _pythonpath() -> list[str]:
    """PYTHONPATH's entries as a new interpreter started in the current directory puts them on sys.path."""
    return [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
