"""Run a Python script with the interpreter's thread switch interval set (sys.setswitchinterval; Python's default is
5 ms): does the training thread wait for the interpreter behind the prefetcher's thread (issue 12)?

    python benchmarks/switch_interval.py 0.0005 src/train.py OVERRIDES...
"""

from __future__ import annotations

import runpy
import sys

if __name__ == "__main__":
    sys.setswitchinterval(float(sys.argv[1]))
    sys.argv = sys.argv[2:]  # run_path puts the script's own path in argv[0], as `python SCRIPT` would
    runpy.run_path(sys.argv[0], run_name="__main__")
