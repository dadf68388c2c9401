"""The tests' fork server runs a script as `python script.py` would: argv, cwd, environment, sys.path, streams,
exit code, and a timeout that ends the script's own children too."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from conftest import FORK_SERVER

SCRIPT = """
import os, sys, time
print("argv", sys.argv[1:], "cwd", os.getcwd(), "env", os.environ.get("PROBE"), "main", __name__)
print("path0", sys.path[0], "extra", sys.path[1])
import probe_module
print("imported", probe_module.VALUE, file=sys.stderr)
if sys.argv[1] == "sleep":
    child = __import__("subprocess").Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print(child.pid, flush=True)
    time.sleep(60)
raise SystemExit(int(sys.argv[1]) if sys.argv[1].isdigit() else "bad argument")
"""


@pytest.fixture
def script(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "probe_module.py").write_text("VALUE = 42\n")
    path = tmp_path / "bin" / "probe.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(SCRIPT))
    return path


def test_a_script_sees_what_a_new_interpreter_would(script, tmp_path):
    env = {"PROBE": "yes", "PYTHONPATH": "lib"}  # relative: from the script's cwd, as Python reads it
    proc = FORK_SERVER.forked([sys.executable, str(script), "3", "x"], cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 3
    assert f"argv ['3', 'x'] cwd {tmp_path} env yes main __main__" in proc.stdout
    assert f"path0 {script.parent} extra {tmp_path / 'lib'}" in proc.stdout
    assert proc.stderr.strip() == "imported 42"


def test_an_exit_message_and_a_traceback_reach_stderr_with_their_codes(script, tmp_path):
    env = {"PYTHONPATH": str(tmp_path / "lib")}
    proc = FORK_SERVER.forked([sys.executable, str(script), "bad"], cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip().endswith("bad argument")
    proc = FORK_SERVER.forked([sys.executable, str(script), "3"], cwd=tmp_path, env={}, timeout=60)
    assert proc.returncode == 1 and "ModuleNotFoundError: No module named 'probe_module'" in proc.stderr


def test_a_timeout_ends_the_script_and_its_children(script, tmp_path):
    env = {"PYTHONPATH": str(tmp_path / "lib")}
    with pytest.raises(subprocess.TimeoutExpired) as expired:
        FORK_SERVER.forked([sys.executable, str(script), "sleep"], cwd=tmp_path, env=env, timeout=5)
    grandchild = int(expired.value.output.split()[-1])
    assert subprocess.run(["ps", "-o", "stat=", "-p", str(grandchild)], capture_output=True, text=True).stdout in (
        "",
        "Z\n",
    )
    # The server takes the next request as before.
    proc = FORK_SERVER.forked([sys.executable, str(script), "0"], cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 0


def test_a_variable_the_libraries_read_as_they_load_asks_for_a_new_interpreter():
    assert FORK_SERVER.can_run({**FORK_SERVER.env, "WANDB_MODE": "offline", "PYTHONPATH": "elsewhere"})
    assert not FORK_SERVER.can_run({**FORK_SERVER.env, "TRITON_INTERPRET": "1"})  # triton reads it on import
    assert not FORK_SERVER.can_run({**FORK_SERVER.env, "CUDA_VISIBLE_DEVICES": "1"})


def test_what_the_tests_own_libraries_put_in_its_environment_keeps_scripts_forked(tmp_path):
    """Importing Lightning and compiling in the tests' own process set variables there (the suite's first in-process
    Trainer does both): a script run after that still forks from the server, its parent."""
    import lightning  # noqa: F401  (sets PYTORCH_NVML_BASED_CUDA_CHECK)
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    cache_dir()  # sets TORCHINDUCTOR_CACHE_DIR, as torch.compile's first call does
    script = tmp_path / "parent.py"
    script.write_text("import os\nprint(os.getppid())\n")
    proc = FORK_SERVER.run([sys.executable, str(script)], cwd=tmp_path, env=dict(os.environ), timeout=60)
    assert proc.returncode == 0 and int(proc.stdout) == FORK_SERVER.proc.pid


def test_popen_leaves_a_run_going_to_be_signalled_and_waited_for(tmp_path):
    """ForkServer.popen, as subprocess.Popen would: the run is a child of the server, running until a signal ends it
    (its handler's exit code and stderr come back); the server then takes the next request."""
    script = tmp_path / "until_term.py"
    script.write_text(
        textwrap.dedent("""
        import os, signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: (print("terminated", file=sys.stderr), sys.exit(143)))
        print(os.getppid(), file=sys.stderr, flush=True)
        time.sleep(60)
        """)
    )
    proc = FORK_SERVER.popen([sys.executable, str(script)], cwd=tmp_path, env=dict(os.environ))
    deadline = time.time() + 30
    while not proc.stderr.readline().strip().isdigit():  # it has started and installed its handler
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    assert proc.poll() is None and psutil.Process(proc.pid).ppid() == FORK_SERVER.proc.pid
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "terminated" in err
    (tmp_path / "next.py").write_text("print('next')\n")
    after = FORK_SERVER.run([sys.executable, str(tmp_path / "next.py")], cwd=tmp_path, env=dict(os.environ), timeout=60)
    assert after.stdout.strip() == "next"
