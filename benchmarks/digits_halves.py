"""The digits-halves problem: scikit-learn's bundled 8x8 digits, the left and right halves as two
modalities, a target domain of other digits rotated by 10 degrees with pixel noise.

The border pixels of the 8x8 digits never vary in the source, so this problem checks that input
normalisation is safe when a feature is constant on the source and not on the target. The script writes
the folder twice (halves as ``(N, 32)`` vectors and as ``(N, 1, 8, 4)`` images), runs every transfer
method through ``crossfuse run`` with default settings for each seed, and prints target accuracy (label-free
selection) beside a logistic regression with scikit-learn's ``StandardScaler`` on the same arrays.

    python benchmarks/digits_halves.py --seeds 0 1 2 --out runs/digits-halves
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from crossfuse.data.public import digits_halves_arrays as digits_halves

sys.path.insert(0, str(Path(__file__).parent))
from two_moons import crossfuse_run, percent, percent_cells  # noqa: E402

METHODS = ["source-only", "finetune", "iw", "dann", "coral", "mmd", "mixup"]


def write_digits_halves(root: Path, layout: str = "vectors", seed: int = 0) -> Path:
    """Write the folder with the halves as ``'vectors'`` ``(N, 32)`` or ``'images'`` ``(N, 1, 8, 4)``."""
    left, right, labels, domains = digits_halves(seed=seed)
    (root / "modalities").mkdir(parents=True, exist_ok=True)
    for name, half in (("left", left), ("right", right)):
        array = half.reshape(len(half), -1) if layout == "vectors" else half[:, None]
        np.save(root / "modalities" / f"{name}.npy", array.astype(np.float32))
    np.save(root / "labels.npy", labels)
    np.save(root / "domains.npy", domains)
    return root


def logistic_regression_baseline(
    root: Path, seed: int, source: str = "original", target: str = "rotated"
) -> float:
    """Target accuracy of ``StandardScaler`` + logistic regression on the run's own split (the inputs
    flattened and concatenated)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from crossfuse.data.dataset import Task, split_task
    from crossfuse.data.folder import load_folder

    data = load_folder(root)
    split = split_task(data, Task((source,), (target,)), seed)
    x = np.concatenate([a.reshape(len(a), -1) for _, a in sorted(data.modalities.items())], axis=1)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(x[split.source_train], data.labels[split.source_train])
    return float(model.score(x[split.target_test], data.labels[split.target_test]))


def run(folder: Path, method: str, seed: int, run_dir: Path) -> dict:
    return crossfuse_run(folder, "original", "rotated", method, seed, run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--layouts", nargs="+", default=["vectors", "images"])
    parser.add_argument("--out", type=Path, default=Path("runs/digits-halves"))
    args = parser.parse_args()
    print(
        f"digits halves, target rotated 10 degrees + noise; seeds {args.seeds}; target accuracy (%), "
        "label-free selection; chance 10%"
    )
    for layout in args.layouts:
        folder = write_digits_halves(args.out / f"data-{layout}", layout)
        baseline = [logistic_regression_baseline(folder, s) for s in args.seeds]
        print(f"\n{layout}: logistic regression (StandardScaler) {percent(baseline)}")
        print("| method | target acc | source-val acc | flagged runs |")
        print("| --- | --- | --- | --- |")
        for method in args.methods:
            runs = [run(folder, method, s, args.out / layout / f"{method}-seed{s}") for s in args.seeds]
            cells = percent_cells(runs, ("target_accuracy", "source_val_accuracy"))
            flagged = sum(bool(r.get("warnings")) for r in runs)
            print(f"| {method} | " + " | ".join(cells) + f" | {flagged} |")


if __name__ == "__main__":
    main()
