"""Could a run warn of label shift? Black-box shift estimation on finished runs, against the truth.

For each finished run folder, the kept model's soft predictions give the source-validation confusion
matrix ``C[i, j] = P_s(prediction i, label j)`` and the target's mean prediction ``mu``; black-box shift
estimation (Lipton, Wang & Smola, ICML 2018; the constrained solver IWDAN uses,
:func:`crossfuse.transfer.iwdan.class_ratios`) turns them into the target's class shares ``q = p w``.
The script prints the total variation ``TV(p, q) = sum |p - q| / 2`` between the source's shares and that
estimate, its 5-95% bootstrap interval (source-validation and target rows resampled, 200 times), the true
TV (target labels: for this comparison only) and the TV of the plain predicted shares. A warning would be
worth having only if the estimate separated data sets whose classes move from data sets whose inputs do.

    python benchmarks/label_shift_estimate.py runs/label-shift/source-only-seed0 ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml


def estimated_shares(val_probabilities, val_labels, target_probabilities) -> tuple[np.ndarray, np.ndarray]:
    """The source's class shares ``p`` (validation rows) and BBSE's estimate ``q`` of the target's."""
    from crossfuse.transfer.iwdan import class_ratios

    classes = val_probabilities.shape[1]
    confusion = np.zeros((classes, classes))
    for j in range(classes):
        confusion[:, j] = val_probabilities[val_labels == j].sum(0) / len(val_labels)
    ratios = class_ratios(confusion, target_probabilities.mean(0))
    source = confusion.sum(0)
    return source, source * ratios


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.abs(p - q).sum() / 2)


def describe(folder: Path, resamples: int) -> str:
    from safetensors.torch import load_file

    from crossfuse.config import load_config
    from crossfuse.runner import build
    from crossfuse.train.loop import predict

    run = build(load_config(None, yaml.safe_load((folder / "config.yaml").read_text())), log=lambda _: None)
    run.model.load_state_dict(load_file(str(folder / "model.safetensors")))
    labels, split = run.dataset.labels, run.split
    val_probabilities, _ = predict(run.model, run.rows(split.source_val))
    target_probabilities, _ = predict(run.model, run.rows(split.target_train))
    val_labels = labels[split.source_val]
    source, estimate = estimated_shares(val_probabilities, val_labels, target_probabilities)
    rng = np.random.default_rng(0)
    spread = []
    for _ in range(resamples):
        rows = rng.integers(0, len(val_labels), len(val_labels))
        target_rows = rng.integers(0, len(target_probabilities), len(target_probabilities))
        spread.append(
            total_variation(
                *estimated_shares(
                    val_probabilities[rows], val_labels[rows], target_probabilities[target_rows]
                )
            )
        )
    classes = val_probabilities.shape[1]
    scored = labels[run.target_test]
    scored = scored[scored >= 0]
    train_shares = np.bincount(labels[split.source_train], minlength=classes) / len(split.source_train)
    true_shares = np.bincount(scored, minlength=classes) / len(scored)
    predicted = np.bincount(target_probabilities.argmax(1), minlength=classes) / len(target_probabilities)
    accuracy = json.loads((folder / "metrics.json").read_text())["target_accuracy"]
    low, high = np.quantile(spread, [0.05, 0.95])
    cells = [
        f"{folder.parent.name}/{folder.name}",
        str(len(val_labels)),
        f"{total_variation(source, estimate):.2f}",
        f"{low:.2f}-{high:.2f}",
        f"{total_variation(train_shares, true_shares):.2f}",
        f"{total_variation(train_shares, predicted):.2f}",
        f"{100 * accuracy:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", type=Path, nargs="+", help="finished run folders (classification)")
    parser.add_argument("--resamples", type=int, default=200)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    print("| run | validation rows | estimated TV | 5-95% | true TV | TV of predicted shares | target acc |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for folder in args.runs:
        print(describe(folder, args.resamples), flush=True)


if __name__ == "__main__":
    main()
