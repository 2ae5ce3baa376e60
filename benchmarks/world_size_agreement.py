"""Does ``torchrun`` with N processes give the 1-process target accuracy? (issue 6's 1-point target)

For every transfer method and seed, runs ``crossfuse run`` on AV-Digits' default task (default settings,
dropout on) once in one process and once under ``torchrun --standalone --nproc_per_node=N`` (gloo on a
CPU), and prints both target accuracies, their difference and the largest difference against the issue's
1-point target. Finished runs in ``--out`` are reused, so an interrupted comparison picks up where it was.

``--threads-control`` adds a third run: one process again, with ``OMP_NUM_THREADS=2`` instead of 1. It
trains the same model with only the floating-point summation order changed, which is all that N
processes change too, so it shows how much of the difference rounding alone makes.

    python benchmarks/world_size_agreement.py --seeds 0 --nproc 2 --threads-control --out runs/world-size
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


def run(method: str, seed: int, processes: int, run_dir: Path, extra: list[str], threads: int = 1) -> dict:
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
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
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
    parser.add_argument("--threads-control", action="store_true")
    parser.add_argument("--weight-averaging", default="none", help="none, ema or swa (every run)")
    parser.add_argument(
        "--transfer-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to every run (e.g. target_labels=hard: mixup's argmax pseudo-labels, the old default)",
    )
    args = parser.parse_args()
    extra = ["--fusion", args.fusion, "--weight-averaging", args.weight_averaging]
    for option in args.transfer_option:
        extra += ["--transfer-option", option]
    print(
        f"AV-Digits default task, {args.fusion} fusion, weight averaging {args.weight_averaging}, default "
        f"settings otherwise; 1 against {args.nproc} processes"
    )
    control = " 1 process, 2 threads | difference |" if args.threads_control else ""
    print(f"| transfer | seed | 1 process | {args.nproc} processes | difference |{control}")
    print("| --- | --- | --- | --- | --- |" + (" --- | --- |" if args.threads_control else ""))
    differences, control_differences = [], []
    for method in args.methods:
        for seed in args.seeds:
            averaging = "" if args.weight_averaging == "none" else f"-{args.weight_averaging}"
            name = f"{args.fusion}-{method}{averaging}-seed{seed}"
            one = run(method, seed, 1, args.out / f"{name}-w1", extra)
            many = run(method, seed, args.nproc, args.out / f"{name}-w{args.nproc}", extra)
            assert many["world_size"] == args.nproc, many["world_size"]
            a, b = 100 * one["target_accuracy"], 100 * many["target_accuracy"]
            differences.append(b - a)
            row = f"| {method} | {seed} | {a:.2f}% | {b:.2f}% | {b - a:+.2f} |"
            if args.threads_control:
                two_threads = run(method, seed, 1, args.out / f"{name}-w1-threads2", extra, threads=2)
                c = 100 * two_threads["target_accuracy"]
                control_differences.append(c - a)
                row += f" {c:.2f}% | {c - a:+.2f} |"
            print(row, flush=True)
    worst = float(np.max(np.abs(differences)))
    verdict = "meets" if worst <= 1.0 else "MISSES"
    print(
        f"largest |difference| {worst:.2f} points, mean {np.mean(differences):+.2f}"
        f" ({verdict} the 1-point target)"
    )
    if control_differences:
        worst_control = float(np.max(np.abs(control_differences)))
        print(f"1 process, 2 threads against 1 thread: largest |difference| {worst_control:.2f} points")


if __name__ == "__main__":
    main()
