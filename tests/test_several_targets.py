"""Several regression targets in one model: labels ``(N, k)``, one output a target, each standardised
on its own; the maths by hand, every regression method end to end, prediction and the estimator."""

import numpy as np
import pytest
import torch

import crossfuse
from crossfuse.config import load_config
from crossfuse.errors import ConfigError, DataError
from crossfuse.objective import Regression, regression_metrics
from crossfuse.registry import TRANSFERS
from crossfuse.runner import run_experiment
from tests.conftest import write_folder
from tests.test_cli import crossfuse as cli


def two_target_folder(root, n=240, seed=0, missing_rows=()):
    """A vector and a sequence modality; targets in two units (around 100 and around -0.5)."""
    rng = np.random.default_rng(seed)
    domains = np.where(np.arange(n) < n // 2, "a", "b")
    vec = rng.normal(size=(n, 4)) + np.where(domains == "b", 0.5, 0.0)[:, None]
    seq = rng.normal(size=(n, 5, 3))
    first = 100 + 20 * vec[:, 0] - 10 * vec[:, 1] + rng.normal(size=n)
    second = -0.5 + 0.2 * seq[:, :, 0].mean(1) + 0.05 * vec[:, 2] + 0.01 * rng.normal(size=n)
    targets = np.stack([first, second], axis=1)
    targets[list(missing_rows)] = np.nan
    modalities = {"vec": vec.astype(np.float32), "seq": seq.astype(np.float32)}
    return write_folder(root, modalities, targets, domains), targets


def test_each_target_is_standardised_on_its_own_and_a_rows_loss_is_their_mean_by_hand():
    targets = np.array([[100.0, -1.0], [110.0, 0.0], [130.0, 4.0]])
    objective = Regression("mse", n_targets=2).fit(targets)
    assert torch.allclose(objective.mean, torch.tensor([340 / 3, 1.0]))
    assert torch.allclose(objective.std, torch.tensor(targets.std(0), dtype=torch.float32))
    outputs = torch.tensor([[0.5, -0.5, 9.0], [0.0, 1.0, 9.0]])  # a head wider than k: extra columns unread
    y = torch.tensor(targets[:2], dtype=torch.float32)
    z = (y - objective.mean) / objective.std
    expected = ((outputs[:, :2] - z) ** 2).mean(1)
    assert torch.allclose(objective.row_losses(outputs, y), expected)
    assert torch.allclose(objective.predictions(outputs), outputs[:, :2] * objective.std + objective.mean)
    l1 = Regression("l1", n_targets=2).fit(targets)
    assert torch.allclose(l1.row_losses(outputs, y), (outputs[:, :2] - z).abs().mean(1))


def test_metrics_of_several_targets_are_the_means_of_each_targets():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 2)) * [1.0, 100.0]
    p = y + rng.normal(size=(50, 2))
    each = [regression_metrics(p[:, j], y[:, j]) for j in range(2)]
    both = regression_metrics(p, y)
    for name in ("mae", "rmse", "corr", "r2"):
        assert both[name] == pytest.approx((each[0][name] + each[1][name]) / 2)
    from sklearn.metrics import mean_absolute_error, r2_score

    assert both["mae"] == pytest.approx(mean_absolute_error(y, p))
    assert both["r2"] == pytest.approx(r2_score(y, p))


REGRESSION_METHODS = [
    n
    for n in TRANSFERS.names()
    if not TRANSFERS[n].domain_generalization and TRANSFERS[n].supports_regression
]


@pytest.mark.parametrize("transfer", REGRESSION_METHODS)
def test_every_regression_method_trains_one_model_for_two_targets(tmp_path, transfer):
    folder, targets = two_target_folder(tmp_path / "f")
    config = load_config(
        None, dict(data=str(folder), source=["a"], target=["b"], epochs=3, transfer=transfer)
    )
    metrics = run_experiment(config, tmp_path / "run", log=lambda _: None)
    for key in ("target_mae", "target_rmse", "target_r2", "source_val_mae", "oracle_target_mae"):
        assert metrics[key] is not None and np.isfinite(metrics[key]), key
    model = crossfuse.load(tmp_path / "run")
    values = model.predict({m: np.load(folder / "modalities" / f"{m}.npy") for m in ("vec", "seq")})
    assert values.shape == (240, 2)
    assert 50 < values[:, 0].mean() < 150 and -3 < values[:, 1].mean() < 2  # each in its own units


def test_two_targets_are_learnt_and_predict_writes_a_column_each(tmp_path, monkeypatch, capsys):
    folder, targets = two_target_folder(tmp_path / "f", n=600, missing_rows=[450, 451])
    config = load_config(None, dict(data=str(folder), source=["a"], target=["b"], epochs=15))
    metrics = run_experiment(config, tmp_path / "run", log=lambda _: None)
    assert metrics["target_r2"] > 0.5 and not metrics["warnings"]
    model = crossfuse.load(tmp_path / "run")
    values = model.predict({m: np.load(folder / "modalities" / f"{m}.npy") for m in ("vec", "seq")})
    target = np.arange(600) >= 300
    for j in range(2):  # each target is learnt, not only the one in the larger unit
        known = target & ~np.isnan(targets[:, j])
        assert np.corrcoef(values[known, j], targets[known, j])[0, 1] > 0.7, j
    code, out, err = cli(
        monkeypatch, capsys, "predict", tmp_path / "run", "--data", folder, "--out", tmp_path / "p.csv"
    )
    assert code == 0, err
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "row,domain,label_0,label_1,prediction_0,prediction_1"
    assert lines[451 + 1].split(",")[2:4] == ["", ""]  # a row without its targets


def test_a_row_with_some_of_its_targets_is_refused_by_name(tmp_path):
    folder, targets = two_target_folder(tmp_path / "f")
    targets[7, 1] = np.nan
    np.save(folder / "labels.npy", targets)
    config = load_config(None, dict(data=str(folder), source=["a"], target=["b"], epochs=1))
    with pytest.raises(DataError, match=r"labels.npy: sample 7 has 1 of its 2 targets missing"):
        run_experiment(config, None, log=lambda _: None)
    classify = load_config(
        None, dict(data=str(folder), source=["a"], target=["b"], objective="classification")
    )
    with pytest.raises(DataError, match="2 label columns are regression targets"):
        run_experiment(classify, None, log=lambda _: None)


def test_the_regressor_fits_several_targets_as_one_model():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5))
    y = np.stack([3 * x[:, 0], x[:, 1] - 10], axis=1)
    domain = np.where(np.arange(120) < 60, 1, -2)
    fitted = crossfuse.MultimodalRegressor(epochs=5).fit(x, np.where(domain[:, None] > 0, y, np.nan), domain)
    predicted = fitted.predict(x[60:])
    assert predicted.shape == (60, 2) and predicted.dtype == np.float64
    assert fitted.score(x[60:], y[60:]) > 0.3


def test_columns_of_whole_numbers_are_not_guessed_to_be_targets(tmp_path):
    folder, targets = two_target_folder(tmp_path / "f")
    np.save(folder / "labels.npy", (targets > np.median(targets, 0)).astype(np.int64))  # multi-label?
    options = dict(data=str(folder), source=["a"], target=["b"], epochs=1)
    with pytest.raises(DataError, match="2 columns of whole numbers; give --objective regression"):
        run_experiment(load_config(None, options), None, log=lambda _: None)
    metrics = run_experiment(
        load_config(None, {**options, "objective": "regression"}), None, log=lambda _: None
    )
    assert metrics["objective"] == "regression"


def test_one_hot_labels_are_refused_with_the_class_column_they_stand_for(tmp_path):
    folder, targets = two_target_folder(tmp_path / "f")
    classes = (targets[:, 0] > np.median(targets[:, 0])).astype(int)
    np.save(folder / "labels.npy", np.eye(2, dtype=np.int64)[classes])
    options = dict(data=str(folder), source=["a"], target=["b"], epochs=1)
    with pytest.raises(DataError, match=r"each row is one-hot: .*labels\.argmax\(axis=1\)"):
        run_experiment(load_config(None, options), None, log=lambda _: None)
    np.save(folder / "labels.npy", classes)  # the fix it names
    assert run_experiment(load_config(None, options), None, log=lambda _: None)["n_classes"] == 2


def test_selection_weighs_each_target_by_its_spread_by_hand():
    from crossfuse.selection.base import Evidence

    labels = np.array([[100.0, 0.0], [300.0, 1.0], [200.0, 2.0]])  # spreads 81.6 and 0.816
    predicted = labels + [[10.0, 0.1], [0.0, 0.0], [-20.0, 0.3]]
    evidence = Evidence(val_probabilities=predicted, val_labels=labels, kind="regression")
    expected = (np.abs(predicted - labels) / labels.std(0)).mean(1)
    assert np.allclose(evidence.val_errors, expected)
    one = Evidence(val_probabilities=predicted[:, :1], val_labels=labels[:, 0], kind="regression")
    assert np.array_equal(one.val_errors, [10.0, 0.0, 20.0])  # one target: raw units, as before


def test_a_users_model_must_predict_as_many_values_as_the_data_has_targets(tmp_path):
    from crossfuse.model import build_model
    from crossfuse.runner import run

    folder, _ = two_target_folder(tmp_path / "f")
    config = load_config(None, dict(data=str(folder), source=["a"], target=["b"], epochs=1))
    shapes = {"vec": (4,), "seq": (5, 3)}
    one = build_model(shapes, 1, objective="regression", hidden_dim=8)
    with pytest.raises(ConfigError, match="predicts 1 value.s. a sample, the data has 2 targets"):
        run(config, None, log=lambda _: None, model=one)
    two = build_model(shapes, 1, objective="regression", hidden_dim=8, n_targets=2)
    assert run(config, None, log=lambda _: None, model=two).metrics()["target_mae"] is not None
