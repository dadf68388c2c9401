"""quack-kernels' autotuning results (its cache's `*.autotune.json`, or model_speed.sh's `quack_tuning.tar.gz` of
them) as one JSON of each shape's winner, for `kernels.quack_tuning=` (crossvit.models.kernels.seed_quack_tuning):
a machine new to the shapes then compiles the winner instead of timing every candidate config.

    python benchmarks/quack_tuning.py quack_tuning.tar.gz --gpu "NVIDIA H200" --quack 0.6.5 \\
        --about "what ran, where, when" --out docs/quack_tuning_2026-11-29.json
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path


def results(source: Path) -> dict[str, dict]:
    """`<cache key>/<function>.autotune.json` -> its content, from a quack cache folder or a tar.gz of one."""
    if source.is_dir():
        return {str(f.relative_to(source)): json.loads(f.read_text()) for f in source.glob("*/*.autotune.json")}
    with tarfile.open(source) as tar:
        return {
            m.name: json.load(tar.extractfile(m))
            for m in tar.getmembers()
            if m.isfile() and m.name.endswith(".autotune.json")
        }


def winners(found: dict[str, dict]) -> list[dict]:
    shapes = []
    for name, result in sorted(found.items()):
        cache_key, file = Path(name).parts[-2:]
        # quack's own choice: the least timings (median, 20th and 80th percentiles, compared in that order)
        winner = min(result["configs_timings"], key=lambda config_timings: config_timings[1])
        shapes.append(dict(cache_key=cache_key, file=file, key=result["key"], winner=winner))
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="quack's cache folder (QUACK_CACHE_DIR) or a tar.gz of its results")
    parser.add_argument("--gpu", required=True, help="torch.cuda.get_device_name() of the GPU that measured them")
    parser.add_argument("--quack", required=True, help="quack.__version__ there")
    parser.add_argument("--about", default="", help="the command, machine and date that produced them")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    shapes = winners(results(args.source))
    if not shapes:
        raise SystemExit(f"{args.source}: no *.autotune.json under it")
    args.out.write_text(json.dumps(dict(about=args.about, gpu=args.gpu, quack=args.quack, shapes=shapes), indent=1))
    print(f"{args.out}: {len(shapes)} shapes")


if __name__ == "__main__":
    main()
