"""``crossfuse adapt --method standardize``: a trained model's input standardisation re-fitted on the
target's rows (source-free per-domain standardisation), checked against the statistics computed by hand,
on a shift it undoes, for a regression, and for its refusals."""

import json

import numpy as np
import pytest

import crossfuse
from crossfuse.config import load_config
from crossfuse.source_free import adapt_run
from tests.conftest import gain_offset_arrays, write_folder
from tests.test_cli import crossfuse as command


def shifted_folders(tmp_path, regression: bool = False):
    """A training folder (domains ``s`` and ``t``, the target ``0.5 x + 3`` of the source's distribution;
    vectors ``x`` and counts ``n``) and a folder of the target rows alone."""
    labels, domains, x = gain_offset_arrays(seed=4)
    rng = np.random.default_rng(5)
    counts = rng.poisson(4 + labels[:, None], size=(len(labels), 3)).astype(np.float32)
    y = x[:, :2].sum(1) + rng.normal(scale=0.1, size=len(labels)) if regression else labels
    arrays = {"x": x.astype(np.float32), "n": counts}
    train = write_folder(tmp_path / "train", arrays, y, domains)
    rows = domains == "t"
    target = write_folder(
        tmp_path / "target", {m: a[rows] for m, a in arrays.items()}, y[rows], domains[rows]
    )
    return train, target, arrays, rows, y


def train_source_only(train, out, objective="auto"):
    settings = {"data": str(train), "source": ["s"], "target": ["t"], "epochs": 5, "objective": objective}
    crossfuse.run_experiment(load_config(None, settings), out, log=lambda _: None)
    return out


def test_standardize_refits_each_modality_on_the_target_rows_keeping_its_kind(tmp_path):
    train, target, arrays, rows, labels = shifted_folders(tmp_path)
    run = train_source_only(train, tmp_path / "run")
    before = crossfuse.load(run)
    kinds = {m: before.model.normalizers[m].kind for m in ("x", "n")}
    assert kinds == {"x": "feature", "n": "global"}
    accuracy, n = adapt_run(run, target, tmp_path / "adapted", method="standardize")
    assert n == rows.sum()
    adapted = crossfuse.load(tmp_path / "adapted")
    x = arrays["x"][rows].astype(np.float64)
    normalizer = adapted.model.normalizers["x"]
    assert normalizer.kind == "feature"
    np.testing.assert_allclose(normalizer.mean.numpy(), x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(normalizer.std.numpy(), x.std(0), rtol=1e-5)
    counts = arrays["n"][rows].astype(np.float64)
    pooled = np.sqrt(((counts - counts.mean(0)) ** 2).mean())  # one scale for the counts, as before
    assert adapted.model.normalizers["n"].kind == "global"
    np.testing.assert_allclose(adapted.model.normalizers["n"].std.numpy(), pooled, rtol=1e-5)
    # Nothing but the statistics changed: every other weight is the trained model's.
    trained_state, adapted_state = before.model.state_dict(), adapted.model.state_dict()
    for name, value in trained_state.items():
        if not name.startswith("normalizers."):
            assert np.array_equal(value.numpy(), adapted_state[name].numpy()), name
    card = json.loads((tmp_path / "adapted" / "model.json").read_text())
    assert card["adapted_with"] == "standardize"
    # The target is the source's distribution times 0.5 plus 3: by its own statistics it is the source's.
    source_scaled = (before.predict({m: a[rows] for m, a in arrays.items()}) == labels[rows]).mean()
    assert accuracy > 0.9 and accuracy > source_scaled + 0.2


def test_standardize_then_shot_runs_both_steps(tmp_path, monkeypatch, capsys):
    train, target, _, _, _ = shifted_folders(tmp_path)
    run = train_source_only(train, tmp_path / "run")
    out = tmp_path / "both"
    args = ["adapt", run, "--data", target, "--out", out, "--epochs", "1", "--method", "standardize+shot"]
    code, printed, err = command(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "adapted (standardize+shot)" in printed and "accuracy" in printed
    adapted = crossfuse.load(out)
    standardized = crossfuse.load(run)
    assert adapted.card["adapted_with"] == "standardize+shot"
    # SHOT trained the encoders after the statistics were re-fitted: both differ from the source model.
    assert not np.array_equal(
        adapted.model.normalizers["x"].mean.numpy(), standardized.model.normalizers["x"].mean.numpy()
    )
    changed = [
        name
        for name, value in standardized.model.state_dict().items()
        if name.startswith("encoders.")
        and not np.array_equal(value.numpy(), adapted.model.state_dict()[name].numpy())
    ]
    assert changed


def test_a_regression_takes_standardize_and_is_refused_shot(tmp_path, monkeypatch, capsys):
    train, target, _, rows, y = shifted_folders(tmp_path, regression=True)
    run = train_source_only(train, tmp_path / "run", objective="regression")
    code, printed, err = command(
        monkeypatch,
        capsys,
        "adapt",
        run,
        "--data",
        target,
        "--out",
        tmp_path / "a",
        "--method",
        "standardize",
    )
    assert code == 0, err
    assert "mean absolute error" in printed
    code, _, err = command(monkeypatch, capsys, "adapt", run, "--data", target, "--out", tmp_path / "b")
    assert code == 2 and "use --method standardize" in err and len(err.strip().splitlines()) == 1


def test_an_unknown_method_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    train, target, _, _, _ = shifted_folders(tmp_path)
    run = train_source_only(train, tmp_path / "run")
    code, _, err = command(
        monkeypatch, capsys, "adapt", run, "--data", target, "--out", tmp_path / "o", "--method", "bn"
    )
    assert code == 2 and "method 'bn': unknown" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_single_target_row_is_refused(tmp_path):
    train, target, arrays, rows, labels = shifted_folders(tmp_path)
    run = train_source_only(train, tmp_path / "run")
    one = write_folder(tmp_path / "one", {m: a[rows][:1] for m, a in arrays.items()}, labels[rows][:1], ["t"])
    with pytest.raises(crossfuse.DataError, match="modality '.*' is in 1 row"):
        adapt_run(run, one, tmp_path / "o", method="standardize")


def test_a_loaded_model_standardizes_on_rows_in_memory_as_adapt_does(tmp_path):
    train, target, arrays, rows, labels = shifted_folders(tmp_path)
    run = train_source_only(train, tmp_path / "run")
    adapt_run(run, target, tmp_path / "adapted", method="standardize")
    in_memory = crossfuse.load(run)
    inputs = {m: a[rows] for m, a in arrays.items()}
    assert in_memory.standardize_on(inputs) == ["n", "x"]
    from_folder = crossfuse.load(tmp_path / "adapted")
    np.testing.assert_array_equal(in_memory.predict_proba(inputs), from_folder.predict_proba(inputs))


def test_predict_standardize_scores_a_folder_by_its_own_statistics(tmp_path, monkeypatch, capsys):
    train, target, _, _, _ = shifted_folders(tmp_path)
    run = train_source_only(train, tmp_path / "run")
    weights = (run / "model.safetensors").read_bytes()
    scores = {}
    for flag in ([], ["--standardize"]):
        out = tmp_path / f"p{len(flag)}.csv"
        code, printed, err = command(
            monkeypatch, capsys, "predict", run, "--data", target, "--out", out, *flag
        )
        assert code == 0, err
        scores[bool(flag)] = float(printed.split("accuracy ")[1].split()[0])
    adapted, _ = adapt_run(run, target, tmp_path / "adapted", method="standardize")
    assert scores[True] == pytest.approx(adapted, abs=1e-4)  # the same statistics as adapt's
    assert scores[True] > scores[False] + 0.2
    assert (run / "model.safetensors").read_bytes() == weights  # the run folder is left as it was
    code, _, err = command(
        monkeypatch, capsys, "predict", run, "--data", tmp_path / "nowhere", "--standardize"
    )
    assert code == 2 and "nowhere: not a folder" in err
