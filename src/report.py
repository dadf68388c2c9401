"""The fusion comparison of a finished sweep: `python src/report.py multirun/train/<date>`.

Writes fusion_comparison.md, .csv and .png (accuracy vs FLOPs) into that directory and prints the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossvit.errors import exit_on_config_error
from crossvit.report import report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sweep_dir", help="directory of a `python src/train.py -m ...` sweep")
    parser.add_argument(
        "--allow-partial", action="store_true", help="report the finished jobs when some have no final metrics"
    )
    args = parser.parse_args()
    with exit_on_config_error():
        report(args.sweep_dir, args.allow_partial)
    print((Path(args.sweep_dir) / "fusion_comparison.md").read_text())
    print(f"wrote fusion_comparison.md, .csv and .png into {args.sweep_dir}")


if __name__ == "__main__":
    main()
