"""Where should alignment act: each modality's features, the fused representation, or both?

Runs DANN, CORAL and MMD with ``align`` = fused / modalities / both on AV-Digits (late fusion, default
task) for each seed, two runs at a time, and prints target accuracy (label-free selection) as mean and
spread over seeds. Each method's default ``align`` was chosen from this table: ``both`` for DANN,
``fused`` for CORAL and MMD.

    OMP_NUM_THREADS=1 python benchmarks/alignment_space.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

ALIGNS = ["fused", "modalities", "both"]
METHODS = ["dann", "coral", "mmd"]


def one_run(method: str, align: str, seed: int, fusion: str) -> tuple[str, str, int, float]:
    import torch

    torch.set_num_threads(1)
    from crossfuse.config import load_config
    from crossfuse.runner import run_experiment

    config = load_config(
        None, dict(fusion=fusion, transfer=method, seed=seed, transfer_options={"align": align})
    )
    metrics = run_experiment(config, None, log=lambda line: None)
    return method, align, seed, metrics["target_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fusion", default="late")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    args = parser.parse_args()
    jobs = [(m, a, s, args.fusion) for m in args.methods for a in ALIGNS for s in args.seeds]
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(one_run, *zip(*jobs, strict=True)))
    print(
        f"AV-Digits default task, {args.fusion} fusion, seeds {args.seeds}: target accuracy (%), label-free"
    )
    print("| method | " + " | ".join(f"align={a}" for a in ALIGNS) + " |")
    print("| --- |" + " --- |" * len(ALIGNS))
    for method in args.methods:
        cells = []
        for align in ALIGNS:
            values = [acc for m, a, _, acc in results if m == method and a == align]
            cells.append(f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}")
        print(f"| {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
