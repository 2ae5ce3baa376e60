"""Regression under shift: scikit-learn's diabetes data as a two-modality folder.

Modalities: ``body`` (age, BMI, mean blood pressure; raw units) and ``serum`` (the six blood-serum
measurements). Domains are the two sexes (the source is sex 1, the target sex 2), and the target is the
disease progression one year later. Every regression-capable transfer method runs through
``crossfuse run`` with default settings for each seed; the script prints target MAE, RMSE, correlation and
R^2 (label-free selection by source-validation error) beside a ridge regression (``StandardScaler`` +
``Ridge``) on the same arrays and split.

    python benchmarks/diabetes.py --seeds 0 1 2 --out runs/diabetes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes

sys.path.insert(0, str(Path(__file__).parent))
from two_moons import crossfuse_run  # noqa: E402

METHODS = ["source-only", "finetune", "iw", "dann", "coral", "mmd", "mixup"]


def write_diabetes(root: Path) -> Path:
    """Write the folder: ``body`` (N, 3), ``serum`` (N, 6), float targets, domains ``sex1``/``sex2``."""
    data = load_diabetes(scaled=False)
    x, y = data.data, data.target.astype(np.float64)
    (root / "modalities").mkdir(parents=True, exist_ok=True)
    np.save(root / "modalities" / "body.npy", x[:, [0, 2, 3]].astype(np.float32))
    np.save(root / "modalities" / "serum.npy", x[:, 4:].astype(np.float32))
    np.save(root / "labels.npy", y)
    np.save(root / "domains.npy", np.array([f"sex{int(s)}" for s in x[:, 1]]))
    return root


def ridge_baseline(root: Path, seed: int) -> dict[str, float]:
    """Target MAE / RMSE / correlation / R^2 of ``StandardScaler`` + ``Ridge`` on the run's own split."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from crossfuse.data.dataset import Task, split_task
    from crossfuse.data.folder import load_folder
    from crossfuse.objective import regression_metrics

    data = load_folder(root)
    split = split_task(data, Task(("sex1",), ("sex2",)), seed)
    x = np.concatenate([a for _, a in sorted(data.modalities.items())], axis=1)
    train = np.concatenate([split.source_train, split.source_val])
    model = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x[train], data.labels[train])
    return regression_metrics(model.predict(x[split.target_test]), data.labels[split.target_test])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--out", type=Path, default=Path("runs/diabetes"))
    args = parser.parse_args()
    folder = write_diabetes(args.out / "data")

    def cell(values) -> str:
        return f"{np.mean(values):.2f} ± {np.std(values):.2f}"

    print(f"diabetes, source sex 1 -> target sex 2; seeds {args.seeds}; label-free selection")
    print("| method | target MAE | target RMSE | target corr | target R2 | source-val MAE |")
    print("| --- | --- | --- | --- | --- | --- |")
    ridge = [ridge_baseline(folder, s) for s in args.seeds]
    print(
        f"| ridge regression | {cell([r['mae'] for r in ridge])} | {cell([r['rmse'] for r in ridge])} | "
        f"{cell([r['corr'] for r in ridge])} | {cell([r['r2'] for r in ridge])} | – |"
    )
    results = {}
    for method in args.methods:
        runs = [
            crossfuse_run(folder, "sex1", "sex2", method, s, args.out / f"{method}-seed{s}")
            for s in args.seeds
        ]
        results[method] = runs
        cells = [
            cell([r[k] for r in runs]) for k in ("target_mae", "target_rmse", "target_corr", "target_r2")
        ]
        cells.append(cell([r["source_val_mae"] for r in runs]))
        print(f"| {method} | " + " | ".join(cells) + " |", flush=True)
    if "source-only" in results:
        ratio = np.mean([r["target_mae"] for r in results["source-only"]]) / np.mean(
            [r["mae"] for r in ridge]
        )
        verdict = "within" if ratio <= 1.05 else "NOT within"
        print(f"source-only MAE / ridge MAE = {ratio:.3f} ({verdict} 5%)")
    (args.out / "summary.json").write_text(json.dumps({"ridge": ridge, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
