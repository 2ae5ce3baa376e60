"""Every adaptation method on data sets beyond AV-Digits, with default settings, seeds 0-2.

Data sets (each written as a bring-your-own-data folder by the benchmark beside it): two moons (target
rotated 35 degrees), digits halves as two vector modalities (target rotated 10 degrees with noise) and
USPS -> MNIST as 256-pixel vectors (needs the data mirror). Prints target accuracy (%, label-free
selection) as mean ± std per method and data set, and each method's gain over DANN.

    python benchmarks/adaptation_suite.py --seeds 0 1 2 --jobs 2 --out runs/adaptation-suite
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from digits_halves import write_digits_halves  # noqa: E402
from normalization import write_usps_mnist  # noqa: E402
from two_moons import crossfuse_run, write_two_moons  # noqa: E402

SINGLE = [
    "source-only",
    "dann",
    "coral",
    "mmd",
    "mcc",
    "cdan",
    "shot",
    "m3sda",
    "jan",
    "bnm",
    "vada",
    "iwdan",
    "mixup",
]
MULTIMODAL = ["mimicry", "correspondence"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/adaptation-suite"))
    args = parser.parse_args()
    sets = {
        "two moons": (write_two_moons(args.out / "two-moons"), "source", "target", SINGLE),
        "digits halves": (
            write_digits_halves(args.out / "digits-halves"),
            "original",
            "rotated",
            SINGLE + MULTIMODAL,
        ),
        "USPS -> MNIST": (write_usps_mnist(args.out / "usps-mnist"), "usps", "mnist", SINGLE),
    }
    jobs = [
        (name, folder, source, target, method, seed)
        for name, (folder, source, target, methods) in sets.items()
        for method in methods
        for seed in args.seeds
    ]

    def one(job):
        name, folder, source, target, method, seed = job
        run_dir = args.out / "runs" / f"{folder.name}-{method}-seed{seed}"
        return job, crossfuse_run(folder, source, target, method, seed, run_dir)["target_accuracy"]

    with ThreadPoolExecutor(args.jobs) as pool:  # each run is its own process
        results = list(pool.map(one, jobs))
    table: dict = {}
    for (name, _, _, _, method, _), accuracy in results:
        table.setdefault(name, {}).setdefault(method, []).append(100 * accuracy)
    methods = SINGLE + MULTIMODAL
    print(f"target accuracy (%), default settings, seeds {args.seeds}, label-free selection")
    print("| data set | " + " | ".join(methods) + " |")
    print("| --- |" + " --- |" * len(methods))
    for name, by_method in table.items():
        cells = [f"{np.mean(v):.1f} ± {np.std(v):.1f}" if (v := by_method.get(m)) else "–" for m in methods]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\ngain over DANN (points):")
    for name, by_method in table.items():
        dann = np.mean(by_method["dann"])
        gains = {m: np.mean(v) - dann for m, v in by_method.items() if m != "dann"}
        print(f"  {name}: " + ", ".join(f"{m} {g:+.1f}" for m, g in gains.items()))


if __name__ == "__main__":
    main()
