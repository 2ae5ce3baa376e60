"""Domain generalisation end to end: unseen domains stay unread, the leave-one-domain-out protocol, and
the methods' recipes."""

import csv
import json

import numpy as np
import pytest

import crossfuse
from crossfuse.bench.grid import modality_count
from crossfuse.bench.protocol import dg_methods, held_out_domains
from crossfuse.config import load_config
from crossfuse.runner import build_method, with_recipe
from tests.conftest import write_folder
from tests.test_cli import crossfuse as run_cli


@pytest.fixture
def domains_folder(tmp_path):
    """Three labelled domains a, b, c with a growing shift, and a domain t whose rows hold an infinity:
    reading them makes the loader refuse the folder."""
    rng = np.random.default_rng(0)
    names = np.repeat(["a", "b", "c", "t"], 60)
    labels = rng.integers(0, 3, len(names))
    shift = np.select([names == "b", names == "c"], [1.0, 2.0], 0.0)[:, None]
    vec = rng.normal(size=(len(names), 5)) + 1.5 * np.eye(3)[labels] @ rng.normal(size=(3, 5)) + shift
    seq = rng.normal(size=(len(names), 4, 3)) + labels[:, None, None] * 0.7
    vec[names == "t", 0] = np.inf
    return write_folder(
        tmp_path / "domains",
        {"vec": vec.astype(np.float32), "seq": seq.astype(np.float32)},
        labels,
        names,
    )


def test_a_run_without_a_target_never_reads_a_target_row(monkeypatch, capsys, domains_folder, tmp_path):
    out = tmp_path / "erm"
    code, stdout, _ = run_cli(
        monkeypatch, capsys, "run", "--data", domains_folder, "--source", "a,b,c", "--transfer", "erm",
        "--epochs", "2", "--out", out,
    )  # fmt: skip
    assert code == 0
    assert "no target domain" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["target_domains"] == [] and metrics["target_accuracy"] is None
    assert metrics["n_target_train"] == 0 and metrics["n_target_test"] == 0
    assert set(metrics["source_val_accuracy_per_domain"]) == {"a", "b", "c"}
    assert metrics["n_source_val"] == 3 * 12, "training-domain validation: a fifth of every source"
    # the same folder with t read is refused: the rows above were never read
    code, _, err = run_cli(
        monkeypatch, capsys, "run", "--data", domains_folder, "--source", "a", "--target", "t",
        "--epochs", "1",
    )  # fmt: skip
    assert code == 2 and "contains inf" in err and "vec" in err


def test_a_generalisation_run_scores_every_target_row_and_trains_on_none(
    monkeypatch, capsys, domains_folder, tmp_path
):
    code, _, _ = run_cli(
        monkeypatch, capsys, "run", "--data", domains_folder, "--source", "a,b", "--target", "c",
        "--transfer", "coral-dg", "--epochs", "2", "--out", tmp_path / "coral",
    )  # fmt: skip
    assert code == 0
    metrics = json.loads((tmp_path / "coral" / "metrics.json").read_text())
    assert metrics["n_target_train"] == 0 and metrics["n_target_test"] == 60
    assert 0 <= metrics["target_accuracy"] <= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--source", "a", "--target", "c", "--transfer", "dann-dg"],
            "--transfer dann-dg: .*needs at least 2",
        ),
        (["--source", "a,b", "--target", "c", "--transfer", "erm", "--selection", "entropy"], "source-val"),
        (["--source", "a,b", "--transfer", "dann"], "give --source and --target"),
    ],
)
def test_generalisation_refusals_are_one_line(monkeypatch, capsys, domains_folder, args, message):
    code, _, err = run_cli(monkeypatch, capsys, "run", "--data", domains_folder, *args, "--epochs", "1")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    import re

    assert re.search(message, err)


def test_multi_source_moment_matching_runs_with_a_target(monkeypatch, capsys, domains_folder, tmp_path):
    code, _, _ = run_cli(
        monkeypatch, capsys, "run", "--data", domains_folder, "--source", "a,b", "--target", "c",
        "--transfer", "m3sda", "--epochs", "2", "--out", tmp_path / "m3sda",
    )  # fmt: skip
    metrics = json.loads((tmp_path / "m3sda" / "metrics.json").read_text())
    assert code == 0 and metrics["n_target_train"] > 0 and metrics["target_accuracy"] is not None


def test_recipes_change_only_what_the_user_left_alone(domains_folder, tmp_path):
    plain = load_config(None, {"transfer": "swa"})
    assert with_recipe(plain, build_method(plain)).weight_averaging == "swa"
    chosen = load_config(None, {"transfer": "swa", "weight_averaging": "ema"})
    assert with_recipe(chosen, build_method(chosen)).weight_averaging == "ema"
    config = load_config(
        None,
        {"data": str(domains_folder), "source": ["a", "b"], "target": ["c"], "transfer": "modality-dropout",
         "epochs": 2},
    )  # fmt: skip
    crossfuse.run(config, tmp_path / "dropout", log=lambda _: None)
    card = json.loads((tmp_path / "dropout" / "model.json").read_text())
    assert card["modality_dropout"] == 0.5
    model = crossfuse.load(tmp_path / "dropout")  # rebuilt as trained, placeholders included
    rows = np.load(domains_folder / "modalities" / "seq.npy")[:5]
    vec = np.load(domains_folder / "modalities" / "vec.npy")[:5]
    assert model.predict_proba({"seq": rows, "vec": vec}).shape == (5, 3)


def test_leave_one_domain_out_bench_on_a_folder(monkeypatch, capsys, domains_folder, tmp_path):
    assert dg_methods()[0] == "erm" and {"coral-dg", "dann-dg", "mixup-dg", "swa"} <= set(dg_methods())
    assert modality_count(str(domains_folder)) == 2 and modality_count("av-digits") == 2
    assert held_out_domains("av-digits", ["image-sources"]) == [
        "all+mnist-hs", "all+mnist-census", "all+usps", "all+sklearn",
    ]  # fmt: skip
    out = tmp_path / "bench"
    code, stdout, _ = run_cli(
        monkeypatch, capsys, "bench", "--protocol", "leave-one-domain-out", "--data", domains_folder,
        "--domains", "a,b,c", "--transfers", "erm,coral-dg", "--seeds", "0", "--epochs", "2",
        "--jobs", "1", "--out", out,
    )  # fmt: skip
    assert code == 0
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["target"], r["transfer"]) for r in rows) == sorted(
        (d, m) for d in "abc" for m in ("erm", "coral-dg")
    )
    for row in rows:  # each held-out domain was unseen: trained on the two others
        assert row["source_domains"] == " | ".join(d for d in "abc" if d != row["target"])
        assert row["n_target_train"] == "0"
    report = (out / "report.md").read_text()
    assert "## Leave one domain out" in report and "| late | erm | 1 |" in report
    assert "coral-dg (late)" in report and (out / "held_out.png").exists()
    code, _, err = run_cli(
        monkeypatch, capsys, "bench", "--protocol", "leave-one-domain-out", "--data", domains_folder,
        "--domains", "a,zz", "--out", tmp_path / "bad",
    )  # fmt: skip
    assert code == 2 and "'zz' is not a domain" in err


def test_leave_one_source_out_validation_runs_and_choice():
    from crossfuse.bench.protocol import is_outer, leave_one_out_specs, leave_one_source_out_choices

    domains = ["a", "b", "c", "d"]
    specs = leave_one_out_specs(domains, ["late"], ["erm", "coral-dg"], [0], "leave-one-source-out")
    outer = [s for s in specs if len(s.source) == 3]
    inner = [s for s in specs if len(s.source) == 2]
    assert len(outer) == 4 * 2 and len(inner) == 4 * 3 * 2, "every other domain held out in turn, per fold"
    for spec in inner:
        fold = spec.task.split("-val-")[0].removeprefix("heldout-")
        assert fold not in spec.source + spec.target, "an inner run never sees the held-out domain"
    three = leave_one_out_specs(domains[:3], ["late"], ["erm", "coral-dg"], [0], "leave-one-source-out")
    assert {s.transfer for s in three if len(s.source) == 1} == {"erm"}, "coral-dg needs two sources"

    def row(method, sources, target, accuracy):
        return {"fusion": "late", "transfer": method, "source_domains": " | ".join(sources),
                "target": target, "target_accuracy": str(accuracy)}  # fmt: skip

    rows = []
    for spec in inner:  # erm scores 0.7 everywhere; coral-dg 0.9 where d is in the run, else 0.6
        if spec.transfer == "erm":
            accuracy = 0.7
        else:
            accuracy = 0.9 if "d" in spec.source + spec.target else 0.6
        rows.append(row(spec.transfer, spec.source, spec.target[0], accuracy))
    rows.append(row("erm", ["a", "b", "c"], "d", 0.5))
    assert is_outer(rows[-1], domains) and not is_outer(rows[0], domains)
    choices = leave_one_source_out_choices(rows, domains)
    assert choices[("late", "d")]["chosen"] == "erm"  # with d held out, coral-dg's inner runs score 0.6
    assert choices[("late", "a")]["chosen"] == "coral-dg"
    assert choices[("late", "a")]["scores"] == pytest.approx({"erm": 0.7, "coral-dg": 0.9})


def test_the_protocol_runs_with_run_defaults_not_a_suite_cap(monkeypatch, capsys, domains_folder, tmp_path):
    from crossfuse.bench import grid

    seen = []
    monkeypatch.setattr(grid, "_run_one", lambda spec, base, run_dir: seen.append(base) or {})
    monkeypatch.setattr(grid, "write_results", lambda out: None)
    monkeypatch.setattr("crossfuse.bench.report.build_report", lambda out: out / "report.md")
    code, _, _ = run_cli(
        monkeypatch, capsys, "bench", "--protocol", "leave-one-domain-out", "--data", domains_folder,
        "--domains", "a,b", "--transfers", "erm", "--seeds", "0", "--jobs", "1", "--out", tmp_path / "b",
    )  # fmt: skip
    assert code == 0 and len(seen) == 2
    assert "epochs" not in seen[0], "each run gets the run's default epochs"


def test_a_finished_generalisation_run_finds_its_split_again(domains_folder, tmp_path):
    from crossfuse.robustness_report import measure_run
    from crossfuse.runner import prepare_task

    config = load_config(
        None,
        {"data": str(domains_folder), "source": ["a", "b"], "target": ["c"], "transfer": "erm", "epochs": 1},
    )
    _, _, split = prepare_task(config)
    assert len(split.target_train) == 0 and len(split.target_test) == 60, "every target row scored"
    crossfuse.run(config, tmp_path / "erm", log=lambda _: None)
    result = measure_run(tmp_path / "erm")
    metrics = json.loads((tmp_path / "erm" / "metrics.json").read_text())
    assert result["clean"] == pytest.approx(metrics["target_accuracy"])
