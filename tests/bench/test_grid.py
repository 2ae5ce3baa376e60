import csv
import json

import pytest

from crossfuse.bench import grid
from crossfuse.bench.grid import RunSpec, resolve_suite, run_grid, suite_settings
from crossfuse.errors import ConfigError


def fake_runner(calls, fail_on=None):
    def run_one(spec, base, run_dir):
        calls.append(spec.name)
        if spec.name == fail_on:
            raise KeyboardInterrupt  # an interruption in the middle of the grid
        metrics = {
            "task": spec.task,
            "fusion": spec.fusion,
            "transfer": spec.transfer,
            "seed": spec.seed,
            "target_accuracy": 0.5,
            "oracle_target_accuracy": 0.6,
            "source_val_accuracy": 0.9,
            "selection": "source-val",
            "train_seconds": 1.0,
        }
        from pathlib import Path

        Path(run_dir).mkdir(parents=True)
        (Path(run_dir) / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    return run_one


def read_rows(out):
    with open(out / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_finished_runs_are_not_repeated(tmp_path, monkeypatch):
    specs = grid.grid(["early", "late"], ["source-only"], [0, 1], ["default"])
    calls = []
    monkeypatch.setattr(grid, "_run_one", fake_runner(calls))
    run_grid(specs, tmp_path, {}, jobs=1, log=lambda s: None)
    assert len(calls) == 4 and len(read_rows(tmp_path)) == 4
    calls.clear()
    more = specs + grid.grid(["tfn"], ["source-only"], [0], ["default"])
    run_grid(more, tmp_path, {}, jobs=1, log=lambda s: None)
    assert calls == ["default-tfn-source-only-seed0"]
    assert len(read_rows(tmp_path)) == 5


def test_an_interrupted_grid_keeps_every_finished_run(tmp_path, monkeypatch):
    specs = grid.grid(["early"], ["source-only", "dann", "mixup"], [0], ["default"])
    calls = []
    monkeypatch.setattr(grid, "_run_one", fake_runner(calls, fail_on="default-early-mixup-seed0"))
    with pytest.raises(KeyboardInterrupt):
        run_grid(specs, tmp_path, {}, jobs=1, log=lambda s: None)
    rows = read_rows(tmp_path)
    assert sorted(r["transfer"] for r in rows) == ["dann", "source-only"]
    calls.clear()
    monkeypatch.setattr(grid, "_run_one", fake_runner(calls))
    run_grid(specs, tmp_path, {}, jobs=1, log=lambda s: None)
    assert calls == ["default-early-mixup-seed0"]
    assert len(read_rows(tmp_path)) == 3


def test_suites():
    quick = resolve_suite("quick", None, None, None, None)
    assert len(quick) == 4 * 3 * 3
    assert {s.transfer for s in quick} == {"source-only", "dann", "mixup"}
    from crossfuse.registry import FUSIONS, TRANSFERS

    full = resolve_suite("full", None, None, None, None)
    adaptation = {n for n in TRANSFERS if not TRANSFERS[n].domain_generalization}
    assert {"dann", "m3sda", "shot"} <= adaptation and not {"erm", "coral-dg"} & adaptation
    assert len(full) == len(FUSIONS) * len(adaptation) * 3 * 3
    assert {s.transfer for s in full} == adaptation and {s.fusion for s in full} == set(FUSIONS)
    assert resolve_suite("quick", ["lmf"], ["dann"], [5], None) == [RunSpec("default", "lmf", "dann", 5)]
    moons = resolve_suite("two-moons", None, None, None, None)
    assert {s.fusion for s in moons} == {"late"} and {s.seed for s in moons} == {0, 1, 2}
    assert "dann" in {s.transfer for s in moons} and not {"mimicry", "correspondence"} & {
        s.transfer for s in moons
    }, "one modality: the cross-modal methods are left out"
    halves = {s.transfer for s in resolve_suite("digits-halves", None, None, None, None)}
    assert {"mimicry", "correspondence"} <= halves and "erm" not in halves
    assert {s.task for s in resolve_suite("av-digits", None, None, None, None)} == {
        "default",
        "speakers",
        "writers",
        "sklearn",
    }
    assert suite_settings("usps-mnist")["data"] == "usps-mnist"
    with pytest.raises(ConfigError, match="suite 'huge'"):
        resolve_suite("huge", None, None, None, None)


def test_bench_command_applies_the_suite_settings(monkeypatch, capsys, tmp_path):
    import sys

    from crossfuse.cli import main

    seen = []
    monkeypatch.setattr(
        grid, "_run_one", lambda spec, base, run_dir: seen.append(base) or {"target_accuracy": 0.0}
    )
    monkeypatch.setattr("crossfuse.bench.report.build_report", lambda out: out / "report.md")
    monkeypatch.setattr(grid, "write_results", lambda out: None)
    argv = [
        "crossfuse",
        "bench",
        "--suite",
        "quick",
        "--fusions",
        "late",
        "--transfers",
        "dann",
        "--seeds",
        "0",
    ]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(tmp_path), "--jobs", "1"])
    with pytest.raises(SystemExit):
        main()
    quick_epochs = grid.SUITES["quick"]["settings"]["epochs"]
    assert seen == [{"epochs": quick_epochs, "data": "av-digits", "record_selection": True}]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(tmp_path / "b"), "--jobs", "1", "--epochs", "3"])
    with pytest.raises(SystemExit):
        main()
    assert seen[-1]["epochs"] == 3


def test_a_data_set_suite_runs_on_its_named_data(monkeypatch, capsys, tmp_path):
    from tests.test_cli import crossfuse

    out = tmp_path / "moons"
    code, _, _ = crossfuse(
        monkeypatch, capsys, "bench", "--suite", "two-moons", "--transfers", "source-only",
        "--seeds", "0", "--epochs", "1", "--jobs", "1", "--out", out,
    )  # fmt: skip
    assert code == 0
    with open(out / "results.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["dataset"] == "two-moons" and row["task"] == "default" and row["target"] == "target"
    assert row["source_domains"] == "source"


def test_processes_start_with_the_runs_that_follow_their_whole_schedule():
    specs = grid.grid(["early", "late"], ["source-only", "dann"], [0], ["default"])
    ordered = grid.longest_first(specs)
    assert [s.transfer for s in ordered] == ["dann", "dann", "source-only", "source-only"]
    assert [s.fusion for s in ordered] == ["early", "late", "early", "late"]  # grid order otherwise
    assert sorted(ordered, key=lambda s: s.name) == sorted(specs, key=lambda s: s.name)


def test_a_worker_that_runs_several_runs_gives_each_the_numbers_of_a_lone_run(tmp_path, toy_folder):
    """Bench workers stay alive across runs (a process pool); a run's result must not depend on what ran
    before it in the same process."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["--data", str(toy_folder), "--source", "a", "--target", "b", "--epochs", "2"]
    transfers = ["dann", "coral", "source-only"]
    bench = [sys.executable, "-m", "crossfuse", "bench", *common, "--fusions", "late", "--seeds", "0"]
    bench += ["--transfers", ",".join(transfers), "--jobs", "2", "--out", str(tmp_path / "bench")]
    done = subprocess.run(bench, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-800:]
    for transfer in transfers:
        lone = tmp_path / f"lone-{transfer}"
        command = [sys.executable, "-m", "crossfuse", "run", *common, "--fusion", "late"]
        command += ["--transfer", transfer, "--out", str(lone)]
        assert subprocess.run(command, env=env, capture_output=True).returncode == 0
        pooled = next((tmp_path / "bench" / "runs").glob(f"*-late-{transfer}-seed0"))
        ours, theirs = (json.loads((folder / "history.json").read_text()) for folder in (pooled, lone))
        assert [{k: v for k, v in e.items() if k != "criteria"} for e in ours] == theirs
        metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (pooled, lone)]
        assert metrics[0]["target_accuracy"] == metrics[1]["target_accuracy"]
