"""What clipping a regression's predictions costs when the target domain lies beyond the source's range.

A regression's predictions are clipped to the source training targets' range widened by a tenth of it
(``--regression-margin``, :class:`~crossfuse.objective.Regression`). On real tables without shift that
stops a few far-out inputs from wrecking R² (``benchmarks/quantile_tables.py``); this script measures the
price under the shift it is worst for: three uniform features in [0, 1] on the source, the first moved
by +0.5 on the target, so half the target rows lie beyond anything the source saw, and outcomes
``10 x_1 + 3 x_2`` (linear: a ReLU network's extrapolation is right) or ``sin(3 x_1) + x_2`` (curved),
plus noise of spread 0.1. Source-only with default settings, clipped (the default) and unclipped
(``--regression-margin inf``), seeds 0-2, target R² with label-free selection, as mean ± std.

    OMP_NUM_THREADS=1 python benchmarks/regression_extrapolation.py --out runs/regression-extrapolation
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from two_moons import crossfuse_run  # noqa: E402

OUTCOMES = {
    "linear, 10 x1 + 3 x2": lambda x: 10 * x[:, 0] + 3 * x[:, 1],
    "curved, sin(3 x1) + x2": lambda x: np.sin(3 * x[:, 0]) + x[:, 1],
}
SOURCE_ROWS = 600


def write_shifted_regression(root: Path, outcome, seed: int = 0) -> Path:
    """The folder: one modality ``x`` (N, 3), float targets, domains ``source`` / ``target`` (the target's
    first feature moved by +0.5)."""
    rng = np.random.default_rng(seed)
    source = rng.uniform(0, 1, size=(SOURCE_ROWS, 3))
    target = rng.uniform(0, 1, size=(SOURCE_ROWS // 2, 3))
    target[:, 0] += 0.5
    x = np.vstack([source, target])
    (root / "modalities").mkdir(parents=True, exist_ok=True)
    np.save(root / "modalities" / "x.npy", x.astype(np.float32))
    np.save(root / "labels.npy", outcome(x) + 0.1 * rng.normal(size=len(x)))
    np.save(root / "domains.npy", np.array(["source"] * len(source) + ["target"] * len(target)))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/regression-extrapolation"))
    args = parser.parse_args()
    print(f"source-only, target R² (mean ± std over seeds {args.seeds})")
    print("| outcome | clipped (default) | unclipped (--regression-margin inf) |")
    print("| --- | --- | --- |")
    for i, (name, outcome) in enumerate(OUTCOMES.items()):
        folder = write_shifted_regression(args.out / f"data-{i}", outcome)
        cells = []
        for margin in ("0.1", "inf"):
            r2 = [
                crossfuse_run(
                    folder, "source", "target", "source-only", seed,
                    args.out / "runs" / f"{i}-margin-{margin}-seed{seed}", ["--regression-margin", margin],
                )["target_r2"]
                for seed in args.seeds
            ]  # fmt: skip
            cells.append(f"{np.mean(r2):.3f} ± {np.std(r2):.3f}")
        print(f"| {name} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
