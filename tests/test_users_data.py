"""A user's own folder: safe normalisation, labels as they come, flagged failures, predict, load, export."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crossfuse
from crossfuse.config import load_config
from crossfuse.data.folder import load_folder
from crossfuse.errors import CrossfuseError
from crossfuse.normalize import Standardize, resolve_normalization, shares_a_range
from crossfuse.runner import run_experiment, run_warnings
from tests.conftest import requires_data, write_folder
from tests.test_cli import crossfuse as cli


def quiet(line):
    return None


def shifted_folder(root, n=240, seed=0, labels=None, layout="vector", target_label=True):
    """Three classes, two modalities, domain ``b`` shifted; ``labels`` maps class index to label value."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 3, n)
    domains = np.where(np.arange(n) < n // 2, "a", "b")
    shift = np.where(domains == "b", 0.7, 0.0)[:, None]
    vec = rng.normal(size=(n, 6)) + np.eye(3)[classes] @ rng.normal(size=(3, 6)) * 2 + shift
    image = rng.normal(size=(n, 1, 6, 6)) * 0.3 + classes[:, None, None, None] * 0.8
    if layout == "channels_last":
        image = np.moveaxis(image, 1, -1)
    values = classes if labels is None else np.asarray(labels)[classes]
    if not target_label:
        values = np.where(domains == "b", "" if values.dtype.kind == "U" else -1, values)
    return write_folder(root, {"vec": vec.astype(np.float32), "img": image}, values, domains)


def options(folder, **extra):
    return dict(data=str(folder), source=["a"], target=["b"], epochs=2, **extra)


# --- normalisation ---------------------------------------------------------------------------------


def test_constant_feature_gets_scale_one_and_spiky_feature_a_floor():
    x = np.zeros((100, 3))
    x[:, 0] = 5.0  # constant
    x[:, 1] = np.arange(100) % 2  # dense: std 0.5, max deviation 0.5
    x[3, 2] = 10.0  # one spike: std 0.995, max deviation 9.9
    layer = Standardize((3,), "feature").fit(x)
    np.testing.assert_allclose(layer.mean.numpy(), [5.0, 0.5, 0.1], rtol=1e-6)
    spike_std = np.sqrt((0.1**2 * 99 + 9.9**2) / 100)
    np.testing.assert_allclose(layer.std.numpy(), [1.0, 0.5, max(spike_std, 0.99)], rtol=1e-6)
    shifted = torch.tensor([[6.0, 0.5, 0.1]])
    assert float(layer(shifted)[0, 0]) == pytest.approx(1.0)  # not 1e6


def test_global_scale_keeps_the_relative_size_of_features():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 17, size=(50, 4)).astype(float)
    x[:, 0] = 0  # a pixel that is dark in every image
    layer = Standardize((4,), "global").fit(x)
    deviation = x - x.mean(0)
    np.testing.assert_allclose(layer.std.numpy(), np.full(4, np.sqrt((deviation**2).mean())), rtol=1e-6)


@pytest.mark.parametrize(
    "values, expected",
    [
        (np.array([[0, 3], [16, 1]]), "global"),  # counts or 8-bit pixels
        (np.array([[0.0, 0.5], [1.0, 0.25]]), "global"),  # intensities in [0, 1]
        (np.array([[-1.2, 3.5], [0.3, 2.0]]), "feature"),  # dense real features
        (np.array([[0.0, 3.5], [2.2, 1.0]]), "feature"),  # non-negative but real beyond 1
        (np.eye(25)[:, :, None].repeat(2, 2).reshape(25, 50) * 3, "feature"),  # sparse counts: 4% nonzero
        (np.eye(20), "global"),  # 5% nonzero: not sparse
        (np.array([[0, 3, 16], [16, 1, 0], [16, 0, 0]]), "global"),  # a pixel lit once still counts
        (np.array([[30, 250, 1, 0], [19, 110, 0, 1], [25, 140, 1, 1]]), "feature"),  # age, pounds, yes/no
        (np.array([[0.9, 0.01, 0.02], [0.2, 0.0, 0.0]]), "feature"),  # shares that never pass 2%
    ],
)
def test_auto_normalization_by_kind_of_vector(values, expected):
    assert resolve_normalization("auto", values) == expected
    assert resolve_normalization("auto", np.zeros((2, 3, 4))) == "feature"  # sequences stay per feature


def test_features_share_a_range_when_the_median_top_is_a_quarter_of_the_largest():
    # by hand: the tops of the varying features, their median against a quarter of the largest
    def table(tops):
        x = np.zeros((3, len(tops) + 1))
        x[:, 0] = 7.0  # constant: not counted, whatever its value
        x[1, 1:] = tops
        return x

    assert shares_a_range(table([255, 200, 64, 70, 1]))  # median 64 >= 255 / 4 = 63.75
    assert not shares_a_range(table([255, 200, 63, 60, 1]))  # median 63 < 63.75
    assert resolve_normalization("auto", table([255, 200, 64, 70, 1])) == "global"
    assert resolve_normalization("auto", table([255, 200, 63, 60, 1])) == "feature"
    missing = table([255, 200, 63, 60, 1])
    missing[2, 1], missing[1, 1] = 9, np.nan  # tops over the values there: 9, 200, 63, 60, 1
    assert shares_a_range(missing)  # median 60 >= 200 / 4
    assert shares_a_range(np.full((3, 2), 4.0))  # nothing varies: one unit, as before


def test_the_public_pixel_vectors_keep_one_scale_and_an_integer_table_does_not():
    from crossfuse.data.public import digits_halves, two_moons

    halves = digits_halves()
    source = halves.domains == "original"
    for name, pixels in halves.modalities.items():
        assert resolve_normalization("auto", pixels[source]) == "global", name
        assert shares_a_range(pixels[source][:100])
    assert resolve_normalization("auto", two_moons().modalities["xy"]) == "feature"
    # birthwt's first rows as the mother's age, weight in pounds, race 1-3, smoking yes/no
    table = np.array([[19, 182, 2, 0], [33, 155, 3, 0], [20, 105, 1, 1], [21, 108, 1, 1], [18, 107, 1, 1]])
    assert resolve_normalization("auto", table) == "feature"
    assert resolve_normalization("auto", table[:, 2:]) == "global"  # race and smoking alone: tops 3 and 1


@requires_data
def test_usps_and_mnist_pixel_vectors_keep_one_scale():
    from crossfuse.data.public import usps_mnist

    data = usps_mnist(per_domain=300)
    for domain in ("usps", "mnist"):
        assert resolve_normalization("auto", data.modalities["pixels"][data.domains == domain]) == "global"


# --- labels ----------------------------------------------------------------------------------------


def test_labels_7_and_107_make_two_classes_and_string_labels_map_back(tmp_path):
    numbers = load_folder(shifted_folder(tmp_path / "n", labels=[7, 107, 107]))
    assert numbers.n_classes == 2 and numbers.classes == [7, 107]
    words = load_folder(shifted_folder(tmp_path / "w", labels=["cat", "dog", "emu"]))
    assert words.classes == ["cat", "dog", "emu"] and set(words.labels) == {0, 1, 2}
    out = tmp_path / "run"
    metrics = run_experiment(load_config(None, options(tmp_path / "w")), out, log=quiet)
    assert metrics["n_classes"] == 3
    assert 0 <= metrics["target_balanced_accuracy"] <= 1 and 0 <= metrics["target_macro_f1"] <= 1
    assert json.loads((out / "model.json").read_text())["classes"] == ["cat", "dog", "emu"]
    assert set(crossfuse.load(out).predict(words.modalities)) <= {"cat", "dog", "emu"}


def test_unlabelled_target_domain_gives_null_accuracy_with_a_note(tmp_path):
    folder = shifted_folder(tmp_path / "f", labels=["x", "y", "z"], target_label=False)
    lines = []
    metrics = run_experiment(load_config(None, options(folder, transfer="dann")), None, log=lines.append)
    assert metrics["target_accuracy"] is None and metrics["oracle_target_accuracy"] is None
    assert metrics["target_balanced_accuracy"] is None and metrics["target_macro_f1"] is None
    assert metrics["n_target_test_labelled"] == 0
    assert any("no scored target row has a label" in line for line in lines)
    code, out, _ = cli_run(folder, tmp_path / "r")
    assert code == 0 and "n/a" in out


def test_source_rows_without_a_label_are_left_out(tmp_path):
    folder = shifted_folder(tmp_path / "f")
    labels = np.load(folder / "labels.npy")
    labels[:20] = -1  # source rows (domain a is the first half)
    np.save(folder / "labels.npy", labels)
    metrics = run_experiment(load_config(None, options(folder)), None, log=quiet)
    assert metrics["n_source_train"] + metrics["n_source_val"] == 100


def cli_run(folder, out, *extra):
    import crossfuse.cli as module

    argv = ["crossfuse", "run", "--data", str(folder), "--source", "a", "--target", "b", "--epochs", "2"]
    old = sys.argv
    sys.argv = [*argv, "--out", str(out), *map(str, extra)]
    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                module.main()
                code = 0
            except SystemExit as stop:
                code = stop.code
    finally:
        sys.argv = old
    return code, stdout.getvalue(), stderr.getvalue()


# --- failures --------------------------------------------------------------------------------------


def test_a_refused_run_leaves_nothing_that_blocks_the_corrected_command(tmp_path):
    folder = shifted_folder(tmp_path / "f")
    out = tmp_path / "run"
    bad = load_config(None, dict(options(folder), target=["bb"]))
    with pytest.raises(CrossfuseError, match="target domain 'bb'"):
        run_experiment(bad, out, log=quiet)
    assert not out.exists()
    run_experiment(load_config(None, options(folder)), out, log=quiet)
    assert (out / "metrics.json").exists()


def test_a_diverging_run_stops_with_one_line_and_exit_2_and_frees_its_folder(tmp_path):
    folder = shifted_folder(tmp_path / "f")
    out = tmp_path / "run"
    code, _, err = cli_run(folder, out, "--lr", "1e30", "--fusion", "early")
    # the run's opening description, then the failure in one line
    description, failure = err.splitlines()[:2], err.splitlines()[2:]
    assert [line.split(":")[0] for line in description] == ["data", "inputs"]
    assert code == 2 and len(failure) == 1 and "training diverged" in failure[0]
    assert not (out / "config.yaml").exists()
    code, _, _ = cli_run(folder, out, "--fusion", "early")  # the corrected command
    assert code == 0 and (out / "metrics.json").exists()


def one_hot(predicted: list[int], classes: int) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[predicted]


def k_right_of_25_each(k: int) -> np.ndarray:
    """Outputs for 25 rows of class 0 then 25 of class 1, ``k`` of each class answered right."""
    return one_hot([0] * k + [1] * (25 - k) + [1] * k + [0] * (25 - k), 2)


def test_warnings_flag_chance_level_and_exploding_or_flat_loss():
    labels = np.repeat(np.arange(10), 30)
    flat = [{"train_loss": 2.3}, {"train_loss": 2.31}]
    flagged = run_warnings(flat, one_hot([0] * 300, 10), labels)  # one answer for every row: 1/10
    assert any("near chance" in w for w in flagged) and any("did not fall" in w for w in flagged)
    good = one_hot(list(labels[:270]) + [0] * 30, 10)  # 9 classes right, the last wrong: 0.9
    exploded = run_warnings([{"train_loss": 1.0}, {"train_loss": 2e11}], good, labels)
    assert len(exploded) == 1 and "exploded" in exploded[0]
    fell = [{"train_loss": 2.0}, {"train_loss": 0.3}]
    assert run_warnings(fell, good, labels) == []
    ramped = [
        {"train_loss": 0.42},
        {"train_loss": 0.22},
        {"train_loss": 0.51},
    ]  # fell, then a weight ramped in
    assert run_warnings(ramped, good, labels) == []
    assert run_warnings([{"train_loss": 0.42}, {"train_loss": 0.45}, {"train_loss": 0.43}], good, labels)
    # two balanced classes of 25 rows: SE = sqrt(2 * 0.25 / 25) / 2, chance + 2 SE = 0.6414
    two = np.repeat([0, 1], 25)
    assert run_warnings(fell, k_right_of_25_each(16), two)  # 0.64
    assert not run_warnings(fell, k_right_of_25_each(17), two)  # 0.68


def test_chance_is_judged_by_balanced_accuracy_on_unbalanced_classes():
    """45 rows of one class, 3 of the other (94%): a perfect model was "near chance" by plain accuracy
    (0.9375 + 2 sqrt(0.9375 * 0.0625 / 48) > 1); by balanced accuracy chance is 0.5 and the limit
    0.5 + sqrt(0.25 / 45 + 0.25 / 3) = 0.798."""
    labels = np.array([0] * 45 + [1] * 3)
    fell = [{"train_loss": 2.0}, {"train_loss": 0.3}]
    assert run_warnings(fell, one_hot(list(labels), 2), labels) == []
    majority = run_warnings(fell, one_hot([0] * 48, 2), labels)  # plain accuracy 0.9375
    assert len(majority) == 1 and "balanced accuracy 0.500" in majority[0]
    assert not run_warnings(fell, one_hot([0] * 45 + [1, 1, 0], 2), labels)  # (1 + 2/3) / 2 = 0.833
    few = run_warnings(fell, one_hot([0] * 45 + [1, 0, 0], 2), labels)  # (1 + 1/3) / 2 = 0.667
    assert len(few) == 1 and "cannot be told from chance" in few[0] and "smallest class has 3" in few[0]
    # rows without a label do not count; a validation set of one class cannot show chance
    with_unlabelled = np.concatenate([labels, [-1] * 10])
    assert run_warnings(fell, one_hot(list(labels) + [1] * 10, 2), with_unlabelled) == []
    assert run_warnings(fell, one_hot([1] * 20, 2), np.zeros(20, dtype=int)) == []


def test_labels_without_signal_are_flagged_in_metrics_and_summary(tmp_path):
    folder = shifted_folder(tmp_path / "f")
    rng = np.random.default_rng(1)
    np.save(folder / "labels.npy", rng.integers(0, 2, 240))
    rng2 = np.random.default_rng(2)  # inputs unrelated to the labels
    np.save(folder / "modalities" / "vec.npy", rng2.normal(size=(240, 6)).astype(np.float32))
    np.save(folder / "modalities" / "img.npy", rng2.normal(size=(240, 1, 6, 6)).astype(np.float32))
    code, out, _ = cli_run(folder, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert code == 0 and metrics["warnings"] and "WARNING" in out


# --- images given channels last --------------------------------------------------------------------


def test_channel_last_images_are_read_channels_first(tmp_path):
    first = load_folder(shifted_folder(tmp_path / "cf"))
    last = load_folder(shifted_folder(tmp_path / "cl", layout="channels_last"))
    np.testing.assert_array_equal(first.modalities["img"], last.modalities["img"])
    assert last.layouts == {"img": "channels_last"} and first.layouts == {}


# --- several target domains ------------------------------------------------------------------------


def test_each_target_domain_gets_its_accuracy(tmp_path):
    folder = shifted_folder(tmp_path / "f")
    domains = np.load(folder / "domains.npy")
    domains[(domains == "b") & (np.arange(240) % 2 == 0)] = "c"
    np.save(folder / "domains.npy", domains)
    config = load_config(None, dict(options(folder), target=["b", "c"]))
    metrics = run_experiment(config, None, log=quiet)
    per_domain = metrics["target_accuracy_per_domain"]
    assert set(per_domain) == {"b", "c"} and all(0 <= v <= 1 for v in per_domain.values())
    n_b, n_c = (np.isin(domains, d).sum() for d in ("b", "c"))
    assert min(per_domain.values()) <= metrics["target_accuracy"] <= max(per_domain.values())
    assert n_b > 0 and n_c > 0


# --- command-line options --------------------------------------------------------------------------


def test_every_tuned_setting_is_an_option_and_reaches_the_run(tmp_path):
    folder = shifted_folder(tmp_path / "f")
    out = tmp_path / "run"
    code, _, err = cli_run(
        folder, out, "--lr", "0.003", "--batch-size", "32", "--hidden-dim", "16", "--dropout", "0.2",
        "--fusion", "lmf", "--fusion-option", "rank=3", "--transfer", "dann",
        "--transfer-option", "align=fused", "--transfer-option", "weight=0.5",
    )  # fmt: skip
    assert code == 0, err
    saved = json.loads(json.dumps(__import__("yaml").safe_load((out / "config.yaml").read_text())))
    assert saved["lr"] == 0.003 and saved["batch_size"] == 32 and saved["hidden_dim"] == 16
    assert saved["fusion_options"] == {"rank": 3}
    assert saved["transfer_options"] == {"align": "fused", "weight": 0.5}
    assert crossfuse.load(out).model.fusion.rank == 3


def test_help_lists_every_registered_name(monkeypatch, capsys):
    from crossfuse.fusion import FUSIONS
    from crossfuse.registry import SELECTION_CRITERIA
    from crossfuse.transfer import TRANSFERS

    monkeypatch.setenv("COLUMNS", "400")
    code, out, _ = cli(monkeypatch, capsys, "run", "--help")
    assert code == 0
    for name in [*FUSIONS, *TRANSFERS, *SELECTION_CRITERIA]:
        assert name in out, name
    assert "default: 0.001" in out


def python_code_succeeds(code: str):
    """Run ``code`` in a fresh interpreter (what it imports, and how it exits, are what is tested); its
    completed process, after checking that it exited 0."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
    return done


def test_help_reads_the_names_without_importing_torch():
    from crossfuse.registry import FUSIONS, SELECTION_CRITERIA, TRANSFERS, Registry

    for registry in (FUSIONS, TRANSFERS, SELECTION_CRITERIA):
        fresh = Registry(registry.kind, registry.package, registry.group, registry.order)
        assert fresh.listed_names() == registry.names()
    code = (
        "import sys\n"
        "sys.argv = ['crossfuse', 'run', '--help']\n"
        "from crossfuse.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'help imported torch'\n"
    )
    done = python_code_succeeds(code)
    assert "coral-dg" in done.stdout


def test_a_run_imports_neither_scikit_learn_nor_torchs_compiler_and_exits_cleanly(toy_folder, tmp_path):
    """Start-up: a default run needs torch, not scikit-learn, scipy, matplotlib or ``torch._dynamo`` (a
    torch.optim optimiser would import it); the command's fast exit still flushes its output."""
    import subprocess
    import sys

    out = tmp_path / "run"
    args = ["run", "--data", str(toy_folder), "--source", "a", "--target", "b", "--epochs", "1"]
    code = (
        "import sys\n"
        f"sys.argv = ['crossfuse', *{args!r}, '--out', {str(out)!r}]\n"
        "from crossfuse.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('sklearn', 'scipy', 'matplotlib', 'torch._dynamo') if m in sys.modules))\n"
    )
    done = python_code_succeeds(code)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (out / "metrics.json").exists()
    command = subprocess.run(
        [sys.executable, "-m", "crossfuse", *args, "--out", str(tmp_path / "again")],
        capture_output=True,
        text=True,
    )
    assert command.returncode == 0 and "target accuracy" in command.stdout + command.stderr
    refused = subprocess.run([sys.executable, "-m", "crossfuse", "run", "--data", str(tmp_path / "none")])
    assert refused.returncode == 2


# --- using a trained model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished run whose training folder is then deleted; fresh target samples from the same source."""
    root = tmp_path_factory.mktemp("trained")
    folder = shifted_folder(root / "train", n=600, labels=["lo", "mid", "hi"], layout="channels_last")
    config = load_config(None, dict(options(folder), epochs=15))
    metrics = run_experiment(config, root / "run", log=quiet)
    shutil.rmtree(folder)
    fresh = shifted_folder(root / "fresh", n=1200, seed=0, labels=["lo", "mid", "hi"], layout="channels_last")
    return root / "run", fresh, metrics


def test_predict_on_fresh_target_samples_after_the_training_data_is_gone(
    trained, tmp_path, monkeypatch, capsys
):
    run, fresh, metrics = trained
    target = fresh.parent / "fresh-target"
    rows = np.load(fresh / "domains.npy") == "b"
    write_folder(
        target,
        {m: np.load(fresh / "modalities" / f"{m}.npy")[rows] for m in ("vec", "img")},
        np.load(fresh / "labels.npy")[rows],
        np.load(fresh / "domains.npy")[rows],
    )
    (target / "domains.npy").unlink()  # only modalities/ is needed; labels give the accuracy
    code, out, err = cli(monkeypatch, capsys, "predict", run, "--data", target, "--out", tmp_path / "p.csv")
    assert code == 0, err
    with open(tmp_path / "p.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [int(r["row"]) for r in table] == list(range(rows.sum()))
    assert set(table[0]) == {"row", "label", "prediction", "p_hi", "p_lo", "p_mid"}
    accuracy = np.mean([r["prediction"] == r["label"] for r in table])
    assert f"accuracy {accuracy:.4f}" in out
    assert abs(accuracy - metrics["target_accuracy"]) < 0.05
    model = crossfuse.load(run)
    inputs = {m: np.load(target / "modalities" / f"{m}.npy").astype(np.float64) for m in ("vec", "img")}
    assert model.predict(inputs).tolist() == [r["prediction"] for r in table]
    probabilities = model.predict_proba(inputs)
    np.testing.assert_allclose(probabilities[:, 1], [float(r["p_lo"]) for r in table], atol=1e-6)


def test_predict_into_a_folder_and_bench_misread_options_are_one_line(trained, tmp_path, monkeypatch, capsys):
    run, fresh, _ = trained
    (tmp_path / "existing").mkdir()
    for args, culprit in (
        (["predict", run, "--data", fresh, "--out", tmp_path / "existing"], "existing: is a folder"),
        (["bench", "--data", tmp_path / "absent", "--out", tmp_path / "b"], "absent: not a folder"),
        (["bench", "--suite", "nope", "--out", tmp_path / "b"], "suite 'nope': unknown"),
        (["bench", "--seeds", "0,a", "--out", tmp_path / "b"], "--seeds '0,a': 'a' is not an integer"),
        (["bench", "--data", fresh, "--tasks", "x", "--out", tmp_path / "b"], "a data folder has one task"),
    ):
        code, out, err = cli(monkeypatch, capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and culprit in err, err
        assert "Traceback" not in out + err


def test_a_missing_or_misshaped_modality_is_one_line_naming_it(trained):
    model = crossfuse.load(trained[0])
    good = {"vec": np.zeros((3, 6)), "img": np.zeros((3, 6, 6, 1))}
    with pytest.raises(CrossfuseError, match="modality 'img' is missing"):
        model.predict({"vec": good["vec"]})
    with pytest.raises(CrossfuseError, match=r"modality 'vec' has samples of shape \(5,\)"):
        model.predict({**good, "vec": np.zeros((3, 5))})
    with pytest.raises(CrossfuseError, match=r"modality 'vec' is missing \(every value NaN\) at sample 0"):
        model.predict({**good, "vec": np.full((3, 6), np.nan)})  # no placeholder: trained on complete rows
    partly = good["vec"].copy()
    partly[1, 2] = np.nan  # a missing value: filled in with the feature's training mean
    filled = partly.copy()
    filled[1, 2] = model.model.normalizers["vec"].mean.flatten()[2]
    assert np.array_equal(
        model.predict_proba({**good, "vec": partly}), model.predict_proba({**good, "vec": filled})
    )
    assert len(model.predict(good)) == 3


def test_inputs_are_a_dict_of_arrays_or_the_one_modality_s_array(trained):
    model = crossfuse.load(trained[0])
    for inputs, kind in ((np.zeros((3, 6)), "ndarray"), (None, "NoneType")):
        with pytest.raises(
            CrossfuseError, match=rf"inputs: a dict of arrays, one per modality \(img, vec\); got {kind}"
        ):
            model.predict(inputs)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 3)), np.repeat([0, 1], 30)
    alone = crossfuse.MultimodalClassifier(epochs=1).fit(x, y).model_
    (name,) = alone.modalities
    assert np.array_equal(alone.predict_proba(x), alone.predict_proba({name: x}))


def test_load_refuses_a_folder_that_is_not_a_finished_run(tmp_path):
    with pytest.raises(CrossfuseError, match="model.json: missing file"):
        crossfuse.load(tmp_path)


def test_exported_model_serves_in_a_fresh_process_without_crossfuse(trained, tmp_path):
    model = crossfuse.load(trained[0])
    path = model.export(tmp_path / "model.pt2")
    rng = np.random.default_rng(0)
    inputs = {"img": rng.normal(size=(7, 1, 6, 6)), "vec": rng.normal(size=(7, 6))}
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = (
        "import sys, numpy as np, torch\n"
        f"program = torch.export.load({str(path)!r}).module()\n"
        f"x = np.load({str(tmp_path / 'inputs.npz')!r})\n"
        "out = program(*[torch.from_numpy(x[k]).float() for k in ('img', 'vec')])\n"
        f"np.save({str(tmp_path / 'served.npy')!r}, out.detach().numpy())\n"
        "assert not any(name.startswith('crossfuse') for name in sys.modules)\n"
    )
    env = dict(os.environ, PYTHONPATH="")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env)
    np.testing.assert_allclose(np.load(tmp_path / "served.npy"), model.predict_proba(inputs), atol=1e-5)


# --- generated folders -----------------------------------------------------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.sampled_from([(3,), (4, 2), (1, 4, 4), (4, 4, 1)]),
    dtype=st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.bool_]),
    constant_columns=st.booleans(),
    label_kind=st.sampled_from(["small", "sparse", "strings", "missing-target"]),
    scale=st.sampled_from([1e-6, 1.0, 1e6]),
)
def test_generated_folders_never_give_a_traceback_or_a_non_finite_loss(
    tmp_path_factory, shape, dtype, constant_columns, label_kind, scale
):
    rng = np.random.default_rng(0)
    n = 40
    x = rng.normal(size=(n, *shape)) * scale
    if constant_columns:
        x.reshape(n, -1)[:, ::2] = 3.0
    x = (x > 0) if dtype is np.bool_ else np.abs(x).astype(dtype) if dtype is np.uint8 else x.astype(dtype)
    classes = rng.integers(0, 3, n)
    labels = {
        "small": classes,
        "sparse": np.array([7, 107, 1000])[classes],
        "strings": np.array(["a", "b", "c"])[classes],
        "missing-target": np.where(np.arange(n) >= n // 2, -1, classes),
    }[label_kind]
    domains = np.where(np.arange(n) < n // 2, "s", "t")
    root = write_folder(
        tmp_path_factory.mktemp("gen"), {"m": x, "v": rng.normal(size=(n, 2))}, labels, domains
    )
    config = load_config(None, dict(data=str(root), source=["s"], target=["t"], epochs=1))
    try:
        metrics = run_experiment(config, None, log=quiet)
    except CrossfuseError as error:
        assert "\n" not in str(error)
        return
    assert metrics["source_val_accuracy"] is not None
    assert all(np.isfinite(v) for v in (metrics["source_val_accuracy"], metrics["proxy_a_distance"]))


def test_bench_on_a_folder_names_runs_after_the_task_and_draws_every_plot(tmp_path, monkeypatch, capsys):
    folder = shifted_folder(tmp_path / "f")
    args = ["bench", "--data", folder, "--source", "a", "--target", "b", "--fusions", "late"]
    args += ["--transfers", "source-only,coral", "--seeds", "1", "--epochs", "1", "--jobs", "1"]
    code, _, err = cli(monkeypatch, capsys, *args, "--out", tmp_path / "bench")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "bench" / "runs").iterdir())
    assert names == ["a-to-b-late-coral-seed1", "a-to-b-late-source-only-seed1"]
    report = (tmp_path / "bench" / "report.md").read_text()
    for picture in ("gains.png", "a_distance.png", "ablation.png", "tsne.png"):
        assert f"]({picture})" in report and (tmp_path / "bench" / picture).exists(), picture
    assert "±" in report.split("## Gain over source-only")[1].split("\n\n")[1]
    gain = float(report.split("## Gain over source-only")[1].split("| a-to-b | late | ")[1].split(" ")[0])
    caption = "the largest gain in this grid" if gain > 0 else "no method gains in this grid"
    assert caption in report.split("## Features before and after adaptation")[1]
    regret = report.split("## Label-free selection: regret against the oracle")[1]
    for criterion in ("source-val", "iwv", "dev", "entropy"):
        assert f"| {criterion} | 2 |" in regret


def test_bench_takes_a_config_file(tmp_path, monkeypatch, capsys):
    from crossfuse.bench import grid

    seen = []
    monkeypatch.setattr(grid, "_run_one", lambda spec, base, run_dir: seen.append(base) or {})
    monkeypatch.setattr("crossfuse.bench.report.build_report", lambda out: out / "report.md")
    monkeypatch.setattr(grid, "write_results", lambda out: None)
    (tmp_path / "c.yaml").write_text("lr: 0.01\nhidden_dim: 16\n")
    args = ["bench", "--fusions", "late", "--transfers", "dann", "--seeds", "0", "--jobs", "1"]
    code, _, err = cli(monkeypatch, capsys, *args, "--config", tmp_path / "c.yaml", "--out", tmp_path / "b")
    assert code == 0, err
    assert seen[0]["lr"] == 0.01 and seen[0]["hidden_dim"] == 16
    assert Path(tmp_path / "b").exists()


def test_source_free_adaptation_from_a_run_folder_without_its_training_data(
    trained, tmp_path, monkeypatch, capsys
):
    run, fresh, _ = trained  # the training folder, source rows included, was deleted by the fixture
    rows = np.load(fresh / "domains.npy") == "b"
    target = write_folder(
        tmp_path / "target",
        {m: np.load(fresh / "modalities" / f"{m}.npy")[rows] for m in ("vec", "img")},
        np.load(fresh / "labels.npy")[rows],
        np.load(fresh / "domains.npy")[rows],
    )
    out = tmp_path / "adapted"
    code, printed, err = cli(
        monkeypatch, capsys, "adapt", run, "--data", target, "--out", out, "--epochs", "2"
    )
    assert code == 0, err
    assert "accuracy" in printed and (out / "predictions.csv").exists()
    card = json.loads((out / "model.json").read_text())
    assert card["adapted_with"] == "shot" and card["classes"] == ["hi", "lo", "mid"]
    adapted = crossfuse.load(out)
    assert set(adapted.predict({m: np.load(target / "modalities" / f"{m}.npy") for m in ("vec", "img")})) <= {
        "hi",
        "lo",
        "mid",
    }


def test_a_collapse_on_the_unlabelled_target_is_flagged_by_hand():
    from crossfuse.evaluation.warnings import collapse_warnings

    source = np.arange(100) % 10  # ten balanced classes: most frequent share 0.1, limit max(0.3, 0.35)
    healthy = np.eye(10)[np.arange(50) % 10]
    collapsed = np.eye(10)[np.r_[np.zeros(20, int), np.arange(30) % 10]]  # 23 of 50 rows in class 0: 46%
    assert collapse_warnings(healthy, source) == []
    flagged = collapse_warnings(collapsed, source)
    assert len(flagged) == 1 and "46% of the unlabelled target rows" in flagged[0]
    binary = np.arange(10) % 2  # two classes: the limit is min(0.9, max(1.5, 0.75)) = 0.9
    assert collapse_warnings(np.eye(2)[np.r_[np.zeros(17, int), [1, 1, 1]]], binary) == []
    assert collapse_warnings(np.eye(2)[np.r_[np.zeros(19, int), [1]]], binary)
    lopsided = np.r_[np.zeros(90, int), np.ones(10, int)]  # s = 0.9: the limit is (1 + 0.9) / 2 = 0.95
    assert collapse_warnings(np.eye(2)[np.r_[np.zeros(92, int), np.ones(8, int)]], lopsided) == []
    assert (
        "97% of the unlabelled"
        in collapse_warnings(np.eye(2)[np.r_[np.zeros(97, int), [1] * 3]], lopsided)[0]
    )


def test_the_command_still_runs_exit_handlers_before_its_fast_exit(tmp_path):
    """A plug-in's ``atexit`` handler (a logger finishing its upload, say) runs although the command skips
    the interpreter's teardown."""
    marker = tmp_path / "handler-ran"
    code = (
        "import atexit, pathlib, sys\n"
        f"atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('yes'))\n"
        "sys.argv = ['crossfuse', 'datasets', 'list']\n"
        "from crossfuse.cli import entry_point\n"
        "entry_point()\n"
    )
    python_code_succeeds(code)
    assert marker.read_text() == "yes"


def test_a_source_of_one_class_is_refused_in_one_line(tmp_path):
    folder = shifted_folder(tmp_path / "f", labels=["cat", "dog", "owl"])
    labels = np.load(folder / "labels.npy")
    domains = np.load(folder / "domains.npy")
    np.save(folder / "labels.npy", np.where(domains == "a", "dog", labels))
    out = tmp_path / "run"
    code, _, err = cli_run(folder, out)
    assert code == 2 and err.count("\n") == 1
    assert "source (a) has class 'dog'" in err and "at least two classes" in err
    assert not out.exists()
    np.save(folder / "labels.npy", labels)  # two or more classes: it runs
    code, _, _ = cli_run(folder, out)
    assert code == 0 and (out / "metrics.json").exists()


def test_a_one_dimensional_modality_is_one_feature_a_sample(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    labels = rng.integers(0, 2, n)
    age = labels * 2.0 + rng.normal(size=n)  # (N,): one feature a sample
    other = rng.normal(size=(n, 3)) + labels[:, None]
    domains = np.where(np.arange(n) < n // 2, "a", "b")
    folder = write_folder(tmp_path / "f", {"age": age, "other": other}, labels, domains)
    out = tmp_path / "run"
    code, _, err = cli_run(folder, out)
    assert code == 0, err
    model = crossfuse.load(out)
    assert model.modalities["age"] == (1,)
    flat = model.predict_proba({"age": age[:7], "other": other[:7]})
    column = model.predict_proba({"age": age[:7, None], "other": other[:7]})
    assert flat.shape == (7, 2) and np.array_equal(flat, column)


def test_labels_saved_as_python_objects_are_refused_with_the_fix(tmp_path):
    folder = shifted_folder(tmp_path / "f", labels=["cat", "dog", "owl"])
    labels = np.load(folder / "labels.npy")
    np.save(folder / "labels.npy", labels.astype(object))  # what pandas' to_numpy() gives for text
    out = tmp_path / "run"
    code, _, err = cli_run(folder, out)
    assert code == 2 and err.count("\n") == 1
    assert "labels.npy: holds Python objects" in err and "np.asarray(values, dtype=str)" in err
    np.save(folder / "labels.npy", np.asarray(labels.astype(object), dtype=str))  # the fix it names
    code, _, err = cli_run(folder, out)
    assert code == 0, err


def test_a_run_says_what_it_trains_on_and_how_each_modality_is_scaled(tmp_path):
    folder = shifted_folder(tmp_path / "f", labels=["cat", "dog", "owl"])
    from crossfuse.runner import build

    lines = []
    run = build(load_config(None, options(folder)), log=lines.append)
    split, dataset = run.split, run.dataset
    source_labels = dataset.labels[np.concatenate([split.source_train, split.source_val])]
    counts = {name: int((source_labels == k).sum()) for k, name in enumerate(dataset.classes)}
    ranked = sorted(counts, key=lambda name: -counts[name])
    shares = ", ".join(f"{name} {100 * counts[name] / len(source_labels):.0f}%" for name in ranked)
    assert lines[0] == (
        f"data: {len(split.source_train)} source rows to train on ({len(split.source_val)} for validation), "
        f"{len(split.target_train)} unlabelled target rows, {len(split.target_test)} target rows to score; "
        f"3 classes (source: {shares})"
    )
    assert lines[1] == (
        "inputs: img (an image of 1 channel(s), 6x6) scales per channel; vec (a vector of 6 features) "
        "per-feature scales (chosen by --normalization auto)"
    )


def test_the_scaling_line_names_one_scale_and_the_classes_beyond_four_are_counted():
    from crossfuse.data.dataset import MultimodalDataset, TaskSplit
    from crossfuse.data.summary import rows_line, scaling_line

    line = scaling_line({"pixels": (256,), "grey": (28, 28)}, {"pixels": "global", "grey": "none"}, "global")
    assert line == (
        "inputs: grey (a sequence of 28 frames x 28 features) not scaled; "
        "pixels (a vector of 256 features) one scale for all its features"
    )
    labels = np.repeat(np.arange(6), [5, 4, 3, 3, 3, 2])
    data = MultimodalDataset("d", {"x": np.zeros((20, 1))}, labels, np.array(["a"] * 20), None)
    rows = np.arange(20)
    split = TaskSplit(rows[:16], rows[16:], rows[:0], rows[:0], np.ones(20, dtype=int))
    assert rows_line(data, split) == (
        "data: 16 source rows to train on (4 for validation), 0 target rows to score; "
        "6 classes (source: 0 25%, 1 20%, 2 15%, 3 15%, 2 more)"
    )


def test_a_split_without_target_training_rows_points_to_erm(tmp_path):
    folder = shifted_folder(tmp_path / "f")
    domains = np.load(folder / "domains.npy")
    np.save(folder / "split.npy", np.where(domains == "a", "train", "test"))
    code, _, err = cli_run(folder, tmp_path / "run")
    assert code == 2 and err.count("\n") == 1
    assert "target training set of this task is empty" in err and "--transfer erm" in err
    code, _, err = cli_run(folder, tmp_path / "run", "--transfer", "erm")  # the command it names
    assert code == 0, err
