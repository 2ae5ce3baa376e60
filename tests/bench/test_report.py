import csv

import pytest

from crossfuse.bench.report import build_report
from crossfuse.errors import DataError

FIELDS = [
    "task",
    "fusion",
    "transfer",
    "seed",
    "target_accuracy",
    "oracle_target_accuracy",
    "source_val_accuracy",
    "selection",
    "train_seconds",
    "proxy_a_distance",
    "target_accuracy_without_audio",
    "target_accuracy_without_image",
    "target_balanced_accuracy",
    "target_macro_f1",
]


def write(out, rows):
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def row(fusion, transfer, seed, acc, **extra):
    base = dict(
        task="default",
        fusion=fusion,
        transfer=transfer,
        seed=seed,
        target_accuracy=acc,
        oracle_target_accuracy=acc + 0.05,
        source_val_accuracy=0.99,
        selection="source-val",
        train_seconds=10,
        proxy_a_distance=1.5,
        target_accuracy_without_audio=0.3,
        target_accuracy_without_image=0.4,
    )
    return base | extra


def test_report_table_gains_and_plots(tmp_path):
    write(
        tmp_path,
        [
            row("late", "source-only", 0, 0.70),
            row("late", "source-only", 1, 0.80),
            row("late", "dann", 0, 0.85),
            row("late", "dann", 1, 0.87),
            row("early", "source-only", 0, 0.90),
            row("early", "dann", 0, 0.89),
        ],
    )
    text = build_report(tmp_path, feature_picture=False).read_text()
    assert "| default | late | source-only | 2 | 75.0 ± 5.0 | 80.0 ± 5.0 | 99.0 ± 0.0 |" in text
    assert "| default | late | dann | 2 | 86.0 ± 1.0 |" in text
    # per-seed gains: late +15 and +7 points (mean 11, std 4); early -1 (one seed)
    assert "| default | late | +11.0 ± 4.0 |" in text and "| default | early | -1.0 ± 0.0 |" in text
    assert "largest gain is +11.0 points, dann with late fusion" in text
    assert "| late | 75.0 | 30.0 | 40.0 |" in text
    for picture in ("gains.png", "a_distance.png", "ablation.png"):
        assert (tmp_path / picture).stat().st_size > 10_000
        assert f"]({picture})" in text


def test_report_says_so_when_nothing_beats_source_only(tmp_path):
    write(tmp_path, [row("late", "source-only", 0, 0.80), row("late", "mixup", 0, 0.81)])
    text = build_report(tmp_path, feature_picture=False).read_text()
    assert "No transfer method beats source-only by 2 points or more" in text


def test_report_gives_balanced_accuracy_only_when_it_tells_something_accuracy_does_not(tmp_path):
    balanced = [
        row("late", "source-only", 0, 0.80, target_balanced_accuracy=0.80, target_macro_f1=0.79),
        row("late", "dann", 0, 0.85, target_balanced_accuracy=0.846, target_macro_f1=0.84),
    ]
    write(tmp_path, balanced)
    assert "balanced acc" not in build_report(tmp_path, feature_picture=False).read_text()
    lopsided = [
        row("late", "source-only", 0, 0.95, target_balanced_accuracy=0.70, target_macro_f1=0.75),
        row("late", "source-only", 1, 0.93, target_balanced_accuracy=0.60, target_macro_f1=0.65),
        row("late", "dann", 0, 0.94, target_balanced_accuracy=0.80, target_macro_f1=0.82),
    ]
    write(tmp_path, lopsided)
    text = build_report(tmp_path, feature_picture=False).read_text()
    assert "| default | late | source-only | 94.0 ± 1.0 | 65.0 ± 5.0 | 70.0 ± 5.0 |" in text
    assert "| default | late | dann | 94.0 ± 0.0 | 80.0 ± 0.0 | 82.0 ± 0.0 |" in text
    write(tmp_path, [{k: v for k, v in r.items() if "balanced" not in k and "f1" not in k} for r in lopsided])
    assert "balanced acc" not in build_report(tmp_path, feature_picture=False).read_text()  # older results


def test_report_refuses_a_missing_or_malformed_results_file(tmp_path):
    with pytest.raises(DataError, match="results.csv: missing file"):
        build_report(tmp_path)
    (tmp_path / "results.csv").write_text("fusion,seed\nlate,0\n")
    with pytest.raises(DataError, match="missing columns"):
        build_report(tmp_path)


def test_a_regression_grid_reports_errors_and_their_change_against_source_only(tmp_path):
    fields = ["task", "fusion", "transfer", "seed", "target_mae", "oracle_target_mae", "source_val_mae"]
    fields += ["target_r2", "selection", "train_seconds"]
    fields += ["target_accuracy", "oracle_target_accuracy", "source_val_accuracy"]  # empty, as a run writes
    maes = {("source-only", 0): 10.0, ("source-only", 1): 12.0, ("dann", 0): 9.0, ("dann", 1): 12.5}
    out = tmp_path / "bench"
    out.mkdir()
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for (transfer, seed), mae in maes.items():
            writer.writerow(
                dict(task="t", fusion="late", transfer=transfer, seed=seed, target_mae=mae,
                     oracle_target_mae=mae, source_val_mae=1.0, target_r2=0.5, selection="source-val",
                     train_seconds=1.0)
            )  # fmt: skip
    text = build_report(out).read_text()
    assert "| target acc |" not in text and "Every run is a regression; its target error is" in text
    # dann - source-only per seed: -1.0 and +0.5, mean -0.25, std 0.75
    assert "| t | late | -0.25 ± 0.75 |" in text
    assert "No source-only baseline" not in text
