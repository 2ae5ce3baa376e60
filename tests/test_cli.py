import json
import sys

import pytest

from crossfuse.cli import main
from crossfuse.fusion import FUSIONS
from tests.conftest import requires_data
from tests.data.test_folder import BAD_KINDS
from tests.data.test_folder import _bad as make_bad_folder

CONTRACT_FIELDS = {
    "target_accuracy",
    "oracle_target_accuracy",
    "source_val_accuracy",
    "selection",
    "fusion",
    "transfer",
    "seed",
    "train_seconds",
}


def toy_args(folder):
    return ["--data", folder, "--source", "a", "--target", "b"]


def crossfuse(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["crossfuse", *map(str, args)])
    with pytest.raises(SystemExit) as stop:
        main()
    captured = capsys.readouterr()
    return stop.value.code, captured.out, captured.err


def test_run_on_a_folder_writes_the_run_folder(monkeypatch, capsys, toy_folder, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = crossfuse(
        monkeypatch,
        capsys,
        "run",
        *toy_args(toy_folder),
        "--epochs",
        3,
        "--out",
        out,
    )
    assert code == 0, stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert CONTRACT_FIELDS <= set(metrics)
    assert metrics["selection"] == "source-val" and metrics["epochs_run"] <= 3
    assert 0 <= metrics["target_accuracy"] <= metrics["oracle_target_accuracy"] + 1e-9 <= 1 + 1e-9
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "metrics.json", "log.txt", "model.safetensors"}
    assert "target accuracy" in stdout


def test_toy_shift_is_learned(monkeypatch, capsys, toy_folder, tmp_path):
    code, _, _ = crossfuse(
        monkeypatch,
        capsys,
        "run",
        *toy_args(toy_folder),
        "--epochs",
        15,
        "--out",
        tmp_path / "r",
    )
    assert code == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["source_val_accuracy"] > 0.8


@requires_data
@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_every_fusion_runs_on_av_digits(monkeypatch, capsys, tmp_path, fusion):
    code, stdout, err = crossfuse(
        monkeypatch, capsys, "run", "--fusion", fusion, "--epochs", 1, "--out", tmp_path / fusion
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / fusion / "metrics.json").read_text())
    assert metrics["fusion"] == fusion and metrics["n_target_test"] == 750
    assert metrics["source_val_accuracy"] > 0.3  # chance is 0.1: even one epoch learns


def _config(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def on_folder(folder, *options):
    """``crossfuse run`` arguments for the toy folder's task (source ``a``, target ``b``) and ``options``."""
    return ["--data", folder, "--source", "a", "--target", "b", *options]


BAD_RUNS = {
    "unknown fusion": (lambda d, t: ["--fusion", "fancy"], "fusion 'fancy'"),
    "unknown transfer": (lambda d, t: ["--transfer", "magic"], "transfer 'magic'"),
    "unknown selection": (lambda d, t: ["--selection", "oracle"], "selection 'oracle'"),
    "unknown config key": (
        lambda d, t: ["--config", _config(t, "learning_rate: 0.1\n")],
        "unknown key 'learning_rate'",
    ),
    "mistyped config value": (lambda d, t: ["--config", _config(t, "epochs: many\n")], "field 'epochs'"),
    "config not a mapping": (lambda d, t: ["--config", _config(t, "- 1\n- 2\n")], "expected a mapping"),
    "missing config": (lambda d, t: ["--config", t / "nope.yaml"], "nope.yaml: config file not found"),
    "unknown domain": (lambda d, t: ["--data", d, "--source", "a", "--target", "zz"], "target domain 'zz'"),
    "no task for folder": (lambda d, t: ["--data", d], "give --source and --target"),
    "missing folder": (lambda d, t: ["--data", t / "absent"], "absent: not a folder"),
    "unknown option": (lambda d, t: ["--colour", "red"], "--colour"),
    "text for a transfer's number": (
        lambda d, t: on_folder(d, "--transfer", "dann", "--transfer-option", "weight=abc"),
        "transfer_options for 'dann': weight must be a number (got 'abc')",
    ),
    "text for a fusion's number": (
        lambda d, t: on_folder(d, "--fusion", "lmf", "--fusion-option", "rank=abc"),
        "fusion_options for 'lmf': rank must be a number (got 'abc')",
    ),
    "a number for a flag": (
        lambda d, t: on_folder(d, "--config", _config(t, "transfer: mixup\ntransfer_options: {warmup: 3}\n")),
        "transfer_options for 'mixup': warmup must be true or false (got 3)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_bad_input_exits_2_with_one_line_naming_the_culprit(monkeypatch, capsys, toy_folder, tmp_path, case):
    make_args, culprit = BAD_RUNS[case]
    code, stdout, err = crossfuse(
        monkeypatch, capsys, "run", *make_args(toy_folder, tmp_path), "--out", tmp_path / "o"
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crossfuse: error:"), err
    assert culprit in lines[0]
    assert "Traceback" not in err + stdout
    assert not (tmp_path / "o" / "metrics.json").exists()


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_folder_exits_2_naming_the_file(monkeypatch, capsys, tmp_path, kind):
    root, culprit = make_bad_folder(kind, tmp_path / kind)
    code, stdout, err = crossfuse(
        monkeypatch, capsys, "run", "--data", root, "--source", "s", "--target", "t"
    )
    assert code == 2
    assert culprit in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err + stdout


def test_datasets_list(monkeypatch, capsys):
    code, stdout, _ = crossfuse(monkeypatch, capsys, "datasets", "list")
    assert code == 0 and "fsdd: 3000 files" in stdout and "default:" in stdout
