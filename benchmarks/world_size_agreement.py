"""Does ``torchrun`` with N processes give the 1-process target accuracy? (issue 6's 1-point target)

For every transfer method and seed, runs ``crossfuse run`` on AV-Digits' default task (default settings,
dropout on) once in one process and once under ``torchrun --standalone --nproc_per_node=N`` (gloo on a
CPU), and prints both target accuracies, their difference and the largest difference against the issue's
1-point target. Finished runs in ``--out`` are reused, so an interrupted comparison picks up where it was.

    python benchmarks/world_size_agreement.py --seeds 0 --nproc 2 --out runs/world-size
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

METHODS = ["source-only", "finetune", "iw", "dann", "coral", "mmd", "mixup"]


def run(method: str, seed: int, processes: int, run_dir: Path, extra: list[str]) -> dict:
    if not (run_dir / "metrics.json").exists():
        launcher = (
            [sys.executable]
            if processes == 1
            else [
                str(Path(sys.executable).with_name("torchrun")),
                "--standalone",
                f"--nproc_per_node={processes}",
            ]
        )
        command = [*launcher, "-m", "crossfuse", "run", "--transfer", method, "--seed", str(seed)]
        command += [*extra, "--out", str(run_dir)]
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads((run_dir / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--fusion", default="late")
    parser.add_argument("--out", type=Path, default=Path("runs/world-size"))
    args = parser.parse_args()
    extra = ["--fusion", args.fusion]
    print(f"AV-Digits default task, {args.fusion} fusion, default settings; 1 against {args.nproc} processes")
    print(f"| transfer | seed | 1 process | {args.nproc} processes | difference (points) |")
    print("| --- | --- | --- | --- | --- |")
    differences = []
    for method in args.methods:
        for seed in args.seeds:
            name = f"{args.fusion}-{method}-seed{seed}"
            one = run(method, seed, 1, args.out / f"{name}-w1", extra)
            many = run(method, seed, args.nproc, args.out / f"{name}-w{args.nproc}", extra)
            assert many["world_size"] == args.nproc, many["world_size"]
            a, b = 100 * one["target_accuracy"], 100 * many["target_accuracy"]
            differences.append(b - a)
            print(f"| {method} | {seed} | {a:.2f}% | {b:.2f}% | {b - a:+.2f} |", flush=True)
    worst = float(np.max(np.abs(differences)))
    verdict = "meets" if worst <= 1.0 else "MISSES"
    print(
        f"largest |difference| {worst:.2f} points, mean {np.mean(differences):+.2f}"
        f" ({verdict} the 1-point target)"
    )


if __name__ == "__main__":
    main()
