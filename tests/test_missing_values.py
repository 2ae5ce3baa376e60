"""Missing values (a NaN in part of a sample): left out of the normalisation statistics, filled in with
the feature's training mean inside the model, trained on by every method, predicted and exported."""

import json
import math

import numpy as np
import pytest
import torch

import crossfuse
from crossfuse.cli import main
from crossfuse.config import load_config
from crossfuse.data.folder import check_modality, load_folder
from crossfuse.errors import DataError
from crossfuse.evaluation.density_ratio import DensityRatio
from crossfuse.model import build_model
from crossfuse.normalize import Standardize, plain_moments, present_moments, resolve_normalization
from crossfuse.runner import run
from crossfuse.transfer import TRANSFERS
from tests.conftest import toy_arrays, write_folder

SHAPES = {"seq": (5, 4), "vec": (6,)}


def column_statistics(column: list[float]) -> tuple[float, float]:
    """Mean and scale (``max(std, 0.1 max |x - mean|)``) of the values of a column that are there."""
    present = [v for v in column if not math.isnan(v)]
    mean = sum(present) / len(present)
    std = math.sqrt(sum((v - mean) ** 2 for v in present) / len(present))
    return mean, max(std, 0.1 * max(abs(v - mean) for v in present))


def test_feature_statistics_leave_missing_values_out_and_the_mean_fills_them_in():
    x = np.array([[1.0, 10.0], [np.nan, 20.0], [3.0, np.nan], [8.0, 50.0]], dtype=np.float32)
    normalizer = Standardize((2,), "feature").fit(x)
    for j in range(2):
        mean, scale = column_statistics(x[:, j].astype(float).tolist())
        assert normalizer.mean[j].item() == pytest.approx(mean, rel=1e-6)
        assert normalizer.std[j].item() == pytest.approx(scale, rel=1e-6)
    out = normalizer(torch.from_numpy(x))
    assert out[1, 0].item() == 0.0 and out[2, 1].item() == 0.0  # the mean, standardised
    present = ~np.isnan(x)
    expected = (x - normalizer.mean.numpy()) / normalizer.std.numpy()
    np.testing.assert_allclose(out.numpy()[present], expected[present], rtol=1e-6)


def test_a_feature_without_any_value_gets_mean_zero_and_scale_one():
    x = np.array([[1.0, np.nan], [2.0, np.nan], [4.0, np.nan]])
    normalizer = Standardize((2,), "feature").fit(x)
    assert normalizer.mean[1].item() == 0.0 and normalizer.std[1].item() == 1.0
    assert torch.equal(normalizer(torch.tensor([[2.0, float("nan")]]))[0, 1], torch.tensor(0.0))


def test_auto_reads_the_values_that_are_there_and_global_pools_them():
    counts = np.array([[0.0, 3.0, np.nan], [2.0, np.nan, 1.0], [4.0, 5.0, 2.0], [1.0, 1.0, 0.0]])
    assert resolve_normalization("auto", counts) == "global"  # non-negative integers, dense
    assert resolve_normalization("auto", counts + 0.5) == "feature"
    normalizer = Standardize((3,), "auto").fit(counts)
    assert normalizer.kind == "global"
    means = [np.mean([v for v in counts[:, j] if not np.isnan(v)]) for j in range(3)]
    deviations = [counts[i, j] - means[j] for i in range(4) for j in range(3) if not np.isnan(counts[i, j])]
    spread = math.sqrt(sum(d * d for d in deviations) / len(deviations))
    np.testing.assert_allclose(normalizer.mean.numpy(), means, rtol=1e-6)
    np.testing.assert_allclose(normalizer.std.numpy(), [spread] * 3, rtol=1e-6)


def test_images_and_sequences_pool_the_present_values_per_channel():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(5, 2, 3, 3)) + np.array([1.0, -4.0])[None, :, None, None]
    images[0, 1, 2, 2] = images[3, 0, 0, 1] = np.nan
    normalizer = Standardize((2, 3, 3), "feature").fit(images)
    for c in range(2):
        mean, scale = column_statistics(images[:, c].ravel().tolist())
        assert normalizer.mean[c, 0, 0].item() == pytest.approx(mean, rel=1e-6)
        assert normalizer.std[c, 0, 0].item() == pytest.approx(scale, rel=1e-6)
    out = normalizer(torch.from_numpy(images).float())
    assert out[0, 1, 2, 2].item() == 0.0 and torch.isfinite(out).all()
    frames = rng.normal(size=(4, 5, 3))
    frames[2, 1, 0] = np.nan
    sequence = Standardize((5, 3), "feature").fit(frames)
    mean, _ = column_statistics(frames[:, :, 0].ravel().tolist())
    assert sequence.mean[0, 0].item() == pytest.approx(mean, rel=1e-6)


def test_complete_data_keeps_the_plain_statistics_and_its_numbers():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(50, 4)) * [1, 10, 100, 0.1]
    for got, want in zip(present_moments(data, (0,)), plain_moments(data, (0,)), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10)
    normalizer = Standardize((4,), "feature").fit(data)
    x = torch.from_numpy(data).float()
    assert torch.equal(normalizer(x), (x - normalizer.mean) / normalizer.std)


def test_density_ratio_puts_a_missing_value_at_the_training_mean():
    rng = np.random.default_rng(0)
    source = {"vec": rng.normal(size=(60, 3))}
    target = {"vec": rng.normal(size=(60, 3)) + 1}
    source["vec"][4, 1] = target["vec"][7, 2] = np.nan
    ratio = DensityRatio(seed=0).fit(source, target)
    weights = ratio.weights(source)
    assert np.isfinite(weights).all()
    joined = np.concatenate([source["vec"], target["vec"]])
    filled = source["vec"][4:5].copy()
    filled[0, 1] = np.mean(joined[~np.isnan(joined[:, 1]), 1])
    assert np.isclose(weights[4], ratio.weights({"vec": filled})[0])


def test_check_modality_keeps_missing_values_unless_the_model_cannot_fill_them():
    x = np.zeros((4, 3))
    x[1, 0] = np.nan
    assert np.isnan(check_modality("vec", x, "f.npy")[1, 0])
    with pytest.raises(DataError, match=r"^f.npy: modality 'vec' has NaN in part of sample 1, .*none"):
        check_modality("vec", x, "f.npy", partial_allowed=False)


@pytest.mark.parametrize("transfer", [t for t in TRANSFERS if t != "finetune"])
def test_every_method_takes_a_step_on_samples_with_missing_values(transfer):
    from crossfuse.train.lifecycle import start_method
    from crossfuse.train.loop import TrainingObjective

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(SHAPES, 3, "late", hidden_dim=8)
    method = TRANSFERS[transfer]()
    source = {m: rng.normal(size=(16, *s)).astype(np.float32) for m, s in SHAPES.items()}
    target = {m: (x + 1).astype(np.float32) for m, x in source.items()}
    for x in (source, target):
        x["vec"][rng.random(x["vec"].shape) < 0.2] = np.nan
        x["seq"][::3, 2, 1] = np.nan
    labels = np.arange(16) % 3
    start_method(method, model, source, target, seed=0, n_source_domains=2, source_labels=labels)
    method.batch_source_domains = torch.arange(16) % 2
    to_t = lambda a: {m: torch.from_numpy(x) for m, x in a.items()}  # noqa: E731
    loss = TrainingObjective(model, method)(to_t(source), torch.from_numpy(labels), to_t(target), 0.5)
    assert torch.isfinite(loss)
    loss.backward()
    parameters = list(model.parameters()) + list(method.parameters())
    assert all(torch.isfinite(p.grad).all() for p in parameters if p.grad is not None)
    assert model.encoders["vec"].net[0].weight.grad.abs().sum() > 0


def folder_with_missing_values(tmp_path, share: float = 0.2):
    labels, domains, vec, seq = toy_arrays(shift=0.5)
    rng = np.random.default_rng(1)
    vec[rng.random(vec.shape) < share] = np.nan
    seq[rng.random(seq.shape) < share / 4] = np.nan
    vec[5] = np.nan  # a sample that lacks the modality, beside the missing values
    return write_folder(tmp_path / "holes", {"vec": vec, "seq": seq}, labels, domains)


def test_a_run_with_missing_values_says_so_trains_and_predicts_and_exports_them(tmp_path):
    folder = folder_with_missing_values(tmp_path)
    lines = []
    settings = {"data": str(folder), "source": ["a"], "target": ["b"], "epochs": 4}
    settings["missing_indicators"] = True
    result = run(load_config(None, settings), tmp_path / "run", log=lines.append)
    assert any(
        line.startswith("note: modality 'vec' has ") and "missing values (NaN)" in line
        and line.endswith("the 6 feature(s) with missing values there get an indicator column")
        for line in lines
    )  # fmt: skip
    assert any("samples lack modality 'vec'" in line for line in lines)
    assert result.target_accuracy > 0.6  # three classes
    data = load_folder(folder).modalities
    counts = json.loads((tmp_path / "run" / "metrics.json").read_text())["missing_values"]
    present = ~np.isnan(data["vec"]).all(1)
    assert counts == {
        "vec": int(np.isnan(data["vec"][present]).sum()),
        "seq": int(np.isnan(data["seq"]).sum()),
    }
    model = crossfuse.load(tmp_path / "run")
    inputs = load_folder(folder).modalities
    probabilities = model.predict_proba(inputs)
    assert np.isfinite(probabilities).all()
    # every vector feature has holes in the source rows: each gets an indicator; sequences get none
    normalizer = model.model.normalizers["vec"]
    assert normalizer.indicators == tuple(range(6)) and model.model.normalizers["seq"].indicators == ()
    # a missing value enters as its feature's training mean (0 once standardised) beside its indicator
    row = next(i for i in range(len(inputs["vec"])) if 0 < np.isnan(inputs["vec"][i]).sum() < 6)
    x = inputs["vec"][row]
    by_hand = np.concatenate([np.nan_to_num((x - normalizer.mean.numpy()) / normalizer.std.numpy()),
                              np.isnan(x).astype(np.float32)])  # fmt: skip
    np.testing.assert_allclose(normalizer(torch.from_numpy(x[None]))[0].numpy(), by_hand, rtol=1e-6)
    program = torch.export.load(str(model.export(tmp_path / "model.pt2"))).module()
    exported = program(*(torch.from_numpy(inputs[m]) for m in sorted(inputs)))
    np.testing.assert_allclose(exported.detach().numpy(), probabilities, atol=1e-5)


def test_by_default_a_missing_value_is_predicted_as_its_training_mean(tmp_path):
    folder = folder_with_missing_values(tmp_path)
    settings = {"data": str(folder), "source": ["a"], "target": ["b"], "epochs": 4}
    run(load_config(None, settings), tmp_path / "run", log=quiet)
    model = crossfuse.load(tmp_path / "run")
    assert model.model.normalizers["vec"].indicators == ()
    inputs = load_folder(folder).modalities
    probabilities = model.predict_proba(inputs)
    row = next(i for i in range(len(inputs["vec"])) if 0 < np.isnan(inputs["vec"][i]).sum() < 6)
    filled = inputs["vec"][row : row + 1].copy()
    means = model.model.normalizers["vec"].mean.numpy()
    filled[np.isnan(filled)] = np.broadcast_to(means, filled.shape)[np.isnan(filled)]
    alone = model.predict_proba({"vec": filled, "seq": inputs["seq"][row : row + 1]})
    np.testing.assert_allclose(probabilities[row], alone[0], atol=1e-6)


def quiet(line):
    return None


def test_indicator_columns_by_hand_and_their_weights_learn():
    x = np.array([[1.0, np.nan, 3.0], [3.0, 4.0, np.nan], [2.0, 2.0, 5.0]], dtype=np.float32)
    layer = Standardize((3,), "feature", indicators=(1, 2)).fit(x)
    assert layer.output_shape == (5,)
    mean, std = np.nanmean(x, 0), np.nanstd(x, 0)
    expected = np.concatenate([np.nan_to_num((x - mean) / std), np.isnan(x[:, [1, 2]])], axis=1)
    np.testing.assert_allclose(layer(torch.from_numpy(x)).numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="indicators"):
        Standardize((2, 3), "feature", indicators=(0,))  # vectors only
    # the encoder's weights on the indicator columns receive gradients and change in a step
    torch.manual_seed(0)
    model = build_model({"vec": (3,)}, 2, "late", hidden_dim=8, missing_indicators={"vec": [1, 2]})
    model.fit_normalizers({"vec": x})
    first = model.encoders["vec"].net[0]
    assert first.in_features == 5
    before = first.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(model({"vec": torch.from_numpy(x)}), torch.tensor([0, 1, 0]))
    loss.backward()
    assert first.weight.grad[:, 3:].abs().sum() > 0
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(first.weight[:, 3:], before[:, 3:])


def test_a_value_missing_not_at_random_is_learnt_from_its_indicator(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 3)).astype(np.float32)  # no signal in the values
    # a test whose result, when it is taken, always reads the same, and which is skipped for nine in ten
    # of class 1: the mean fills in that same value, so only the indicator keeps the hole
    x[:, 2] = 1.0
    x[(labels == 1) & (rng.random(n) < 0.9), 2] = np.nan
    x[(labels == 0) & (rng.random(n) < 0.1), 2] = np.nan
    folder = write_folder(tmp_path / "f", {"x": x}, labels, np.where(np.arange(n) < 300, "a", "b"))
    settings = {"data": str(folder), "source": ["a"], "target": ["b"], "epochs": 10}
    with_them = run(load_config(None, settings | {"missing_indicators": True}), tmp_path / "on", log=quiet)
    without = run(load_config(None, settings), tmp_path / "off", log=quiet)  # the default: none
    assert with_them.target_accuracy > 0.8  # 90% is what the hole alone tells
    assert without.target_accuracy < 0.65  # the mean throws the hole away: chance


def test_the_command_line_flag_reaches_the_run_and_its_card(tmp_path, monkeypatch):
    folder = folder_with_missing_values(tmp_path)
    args = ["run", "--data", str(folder), "--source", "a", "--target", "b", "--epochs", "2"]
    args += ["--missing-indicators", "--out", str(tmp_path / "r")]
    monkeypatch.setattr("sys.argv", ["crossfuse", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 0
    card = json.loads((tmp_path / "r" / "model.json").read_text())
    assert card["modalities"]["vec"]["missing_indicators"] == list(range(6))
    assert "missing_indicators" not in card["modalities"]["seq"]  # sequences get none
    assert crossfuse.load(tmp_path / "r").model.encoders["vec"].net[0].in_features == 12


def test_normalization_none_with_missing_values_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    folder = folder_with_missing_values(tmp_path)
    args = ["run", "--data", str(folder), "--source", "a", "--target", "b", "--normalization", "none"]
    monkeypatch.setattr("sys.argv", ["crossfuse", *args, "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note: ")]
    assert len(errors) == 1 and errors[0].startswith("crossfuse: error: ")
    err = errors[0]
    assert "modality 'seq' has" in err and "missing values (NaN)" in err and "--normalization none" in err


def test_a_model_trained_without_a_mean_refuses_a_missing_value_at_prediction(tmp_path):
    folder = folder_with_missing_values(tmp_path, share=0.0)
    config = load_config(
        None,
        {"data": str(folder), "source": ["a"], "target": ["b"], "epochs": 1, "normalization": "none"},
    )
    run(config, tmp_path / "run", log=lambda _: None)
    model = crossfuse.load(tmp_path / "run")
    inputs = load_folder(folder).modalities
    inputs = {m: x[6:10].copy() for m, x in inputs.items()}
    assert len(model.predict(inputs)) == 4
    inputs["seq"][2, 0, 1] = np.nan
    with pytest.raises(
        DataError, match=r"modality 'seq' has NaN in part of sample 2, .*--normalization none"
    ):
        model.predict(inputs)


def test_the_estimator_fits_and_predicts_samples_with_missing_values():
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(120, 4)), "b": rng.normal(size=(120, 3))}
    labels = (x["a"][:, 0] + x["b"][:, 0] > 0).astype(int)
    x["a"][rng.random(x["a"].shape) < 0.2] = np.nan
    domain = np.where(np.arange(120) < 60, 1, -2)
    classifier = crossfuse.MultimodalClassifier(epochs=3).fit(x, labels, sample_domain=domain)
    probabilities = classifier.predict_proba(x)
    assert np.isfinite(probabilities).all() and classifier.score(x, labels) > 0.6
    with_them = crossfuse.MultimodalClassifier(epochs=3, missing_indicators=True).fit(x, labels, domain)
    assert with_them.fitted_model().model.normalizers["a"].indicators == (0, 1, 2, 3)
    assert np.isfinite(with_them.predict_proba(x)).all()
