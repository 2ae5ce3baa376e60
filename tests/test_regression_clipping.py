"""A regression's predictions stay within the training targets' range widened by a margin."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import crossfuse
from crossfuse.config import load_config
from crossfuse.errors import ConfigError
from crossfuse.objective import REGRESSION_MARGIN, Regression
from crossfuse.runner import run_experiment
from tests.conftest import write_folder
from tests.test_cli import crossfuse as cli


def quiet(line):
    return None


def test_bounds_and_clipping_by_hand():
    targets = np.array([10.0, 40.0, 25.0, np.nan, 30.0])  # a missing target does not set a bound
    objective = Regression("mse", margin=0.2).fit(targets[[0, 1, 2, 4]])
    low, high = 10 - 0.2 * 30, 40 + 0.2 * 30
    assert float(objective.low) == pytest.approx(low) and float(objective.high) == pytest.approx(high)
    mean, std = np.mean([10, 40, 25, 30]), np.std([10, 40, 25, 30])
    outputs = torch.tensor([[0.3], [-50.0], [50.0], [(high - mean) / std - 1e-3]])
    expected = np.clip(np.array([0.3, -50.0, 50.0, (high - mean) / std - 1e-3]) * std + mean, low, high)
    np.testing.assert_allclose(objective.predictions(outputs).numpy()[:, 0], expected, rtol=1e-6)
    # within the bounds the predictions are exactly the unclipped ones
    free = Regression("mse", margin=None).fit(targets[[0, 1, 2, 4]])
    assert torch.equal(objective.predictions(outputs[:1]), free.predictions(outputs[:1]))


def test_several_targets_are_bounded_each_by_its_own_range():
    targets = np.array([[0.0, 100.0], [1.0, 300.0], [0.5, 200.0]])
    objective = Regression("mse", n_targets=2, margin=0.1).fit(targets)
    np.testing.assert_allclose(objective.low.numpy(), [-0.1, 80.0], rtol=1e-6)
    np.testing.assert_allclose(objective.high.numpy(), [1.1, 320.0], rtol=1e-6)
    predicted = objective.predictions(torch.tensor([[100.0, -100.0]])).numpy()
    np.testing.assert_allclose(predicted, [[1.1, 80.0]], rtol=1e-6)


@pytest.mark.parametrize("margin", [None, math.inf])
def test_without_clipping_the_layout_is_the_one_saved_before_it(margin):
    objective = Regression("mse", margin=margin).fit(np.array([1.0, 2.0, 3.0]))
    assert objective.margin is None and set(objective.state_dict()) == {"mean", "std"}
    assert float(objective.predictions(torch.tensor([[1e6]]))) > 1e5


def test_a_negative_margin_is_refused():
    with pytest.raises(ConfigError, match="regression margin"):
        Regression("mse", margin=-0.1)
    with pytest.raises(ConfigError, match="regression_margin"):
        load_config(None, {"regression_margin": -1})


def far_out_folder(root, n=300, seed=0):
    """One feature in [0, 1] on the training rows, the target ``10 x`` (range 0-10); the last ten target
    rows lie at x = 1000, far beyond anything trained on."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(n, 1))
    x[-10:] = 1000.0
    domains = np.where(np.arange(n) < n - 60, "a", "b")
    return write_folder(root, {"vec": x.astype(np.float32)}, (10 * x[:, 0]).astype(np.float64), domains)


def test_a_run_bounds_far_out_predictions_and_the_saved_model_keeps_the_bounds(tmp_path):
    folder = far_out_folder(tmp_path / "f")
    x = np.load(folder / "modalities" / "vec.npy")
    for margin, out in ((None, "clipped"), (math.inf, "free")):
        values = dict(data=str(folder), source=["a"], target=["b"], epochs=3, regression_margin=margin)
        run_experiment(load_config(None, values), tmp_path / out, log=quiet)
    clipped, free = crossfuse.load(tmp_path / "clipped"), crossfuse.load(tmp_path / "free")
    card = json.loads((tmp_path / "clipped" / "model.json").read_text())
    assert card["regression_margin"] == REGRESSION_MARGIN
    assert json.loads((tmp_path / "free" / "model.json").read_text())["regression_margin"] is None
    # the bounds come from the source training rows (a share of domain a's): within its range, widened
    high = float(clipped.model.objective.high)
    source = 10 * x[:-60, 0]
    assert 10.0 < high <= source.max() + 0.1 * (source.max() - source.min())
    np.testing.assert_allclose(clipped.predict({"vec": x[-10:]}), high, rtol=1e-6)  # at the upper bound
    assert np.all(free.predict({"vec": x[-10:]}) > 2 * high)  # the same model unclipped extrapolates
    program = torch.export.load(str(clipped.export(tmp_path / "clipped.pt2"))).module()
    with torch.no_grad():
        served = program(torch.tensor(x[-10:], dtype=torch.float32))[:, 0].numpy()
    np.testing.assert_allclose(served, high, rtol=1e-6)  # the exported program clips too


def test_a_model_saved_before_clipping_loads_and_predicts_unclipped(tmp_path):
    folder = far_out_folder(tmp_path / "f")
    config = load_config(None, dict(data=str(folder), source=["a"], target=["b"], epochs=2))
    run_experiment(config, tmp_path / "run", log=quiet)
    card_path, weights_path = tmp_path / "run" / "model.json", tmp_path / "run" / "model.safetensors"
    card = json.loads(card_path.read_text())
    del card["regression_margin"]  # as an older crossfuse wrote it
    card_path.write_text(json.dumps(card))
    weights = {k: v for k, v in load_file(str(weights_path)).items() if not k.endswith((".low", ".high"))}
    save_file(weights, str(weights_path))
    model = crossfuse.load(tmp_path / "run")
    assert model.model.objective.margin is None
    x = np.load(folder / "modalities" / "vec.npy")
    assert model.predict({"vec": x[-10:]}).max() > 100  # far beyond the targets' range of 0-10


def test_the_command_line_and_the_estimator_take_the_margin(tmp_path, monkeypatch, capsys):
    folder = far_out_folder(tmp_path / "f")
    code, _, err = cli(
        monkeypatch, capsys, "run", "--data", folder, "--source", "a", "--target", "b", "--epochs", "1",
        "--regression-margin", "0.5", "--out", tmp_path / "run",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "model.json").read_text())["regression_margin"] == 0.5
    code, _, err = cli(
        monkeypatch, capsys, "run", "--data", folder, "--source", "a", "--target", "b", "--epochs", "1",
        "--regression-margin", "-1", "--out", tmp_path / "bad",
    )  # fmt: skip
    assert code == 2 and "regression_margin" in err and len(err.strip().splitlines()) == 1
    x = np.load(folder / "modalities" / "vec.npy")
    y = 10 * x[:, 0]
    regressor = crossfuse.MultimodalRegressor(epochs=2, regression_margin=0.0).fit(x[:-60], y[:-60])
    assert regressor.get_params()["regression_margin"] == 0.0
    assert regressor.predict(x[-10:]).max() <= y[:-60].max() + 1e-4
