"""DANN's two-moons problem (Ganin et al., JMLR 2016, section 5.1) as a bring-your-own-data folder.

Source: two interleaving moons with labels; target: the same distribution rotated by 35 degrees,
unlabelled during training. Every transfer method runs through ``crossfuse run`` with default settings
for each seed; the script prints mean and spread of target accuracy (label-free selection) per method
and checks DANN's target gain over source-only against the issue's 5-point target.

    python benchmarks/two_moons.py --seeds 0 1 2 --out runs/two-moons
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crossfuse.data.public import two_moons, write_folder

METHODS = ["source-only", "dann", "coral", "mmd", "mixup", "iw"]


def write_two_moons(root: Path, n_per_domain: int = 600, angle_degrees: float = 35.0, seed: int = 0) -> Path:
    """Write the folder of :func:`crossfuse.data.public.two_moons`: modality ``xy`` (N, 2), labels,
    domains ``source``/``target``."""
    write_folder(two_moons(n_per_domain, angle_degrees, seed), root)
    return root


def crossfuse_run(
    folder: Path, source: str, target: str, method: str, seed: int, run_dir: Path, extra: Sequence[str] = ()
) -> dict:
    """``crossfuse run`` with default settings (but the ``extra`` options) in its own process (unless
    ``run_dir`` finished); its metrics."""
    if not (run_dir / "metrics.json").exists():
        command = [sys.executable, "-m", "crossfuse", "run", "--data", str(folder), "--source", source]
        command += ["--target", target, "--transfer", method, "--seed", str(seed), "--out", str(run_dir)]
        subprocess.run([*command, *extra], check=True, capture_output=True)
    return json.loads((run_dir / "metrics.json").read_text())


def percent(values) -> str:
    """``mean ± std`` of fractions, in percent with one decimal (numpy's population std)."""
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"


def percent_cells(runs: list[dict], keys) -> list[str]:
    """:func:`percent` of each metric ``key`` over the runs' ``metrics.json`` mappings."""
    return [percent([run[key] for run in runs]) for key in keys]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--out", type=Path, default=Path("runs/two-moons"))
    args = parser.parse_args()
    folder = write_two_moons(args.out / "data")
    results: dict[str, list[float]] = {}
    for method in args.methods:
        for seed in args.seeds:
            metrics = crossfuse_run(
                folder, "source", "target", method, seed, args.out / f"{method}-seed{seed}"
            )
            results.setdefault(method, []).append(metrics["target_accuracy"])
    print(f"two moons, target rotated 35 degrees; seeds {args.seeds}; target accuracy, label-free selection")
    print("| method | target accuracy (mean ± std) |")
    print("| --- | --- |")
    for method, values in results.items():
        print(f"| {method} | {percent(values)} |")
    if "dann" in results and "source-only" in results:
        gain = 100 * (np.mean(results["dann"]) - np.mean(results["source-only"]))
        verdict = "meets" if gain >= 5 else "MISSES"
        print(f"DANN gain over source-only: {gain:+.1f} points ({verdict} the 5-point target)")


if __name__ == "__main__":
    main()
