"""Regression targets, modality dropout and robustness: the maths by hand and runs end to end."""

import json

import numpy as np
import pytest
import torch

import crossfuse
from crossfuse.config import load_config
from crossfuse.errors import CrossfuseError
from crossfuse.evaluation.robustness import (
    effective_robustness,
    perturb,
    relative_robustness,
    robustness_curves,
)
from crossfuse.model import build_model
from crossfuse.objective import Regression, classification_metrics, regression_metrics
from crossfuse.runner import run_experiment
from crossfuse.train.loop import accuracy, predict
from tests.conftest import write_folder
from tests.test_cli import crossfuse as cli


def quiet(line):
    return None


def regression_folder(root, n=240, seed=0):
    """Two modalities, a linear target in its own units (around 100), domain ``b`` shifted."""
    rng = np.random.default_rng(seed)
    domains = np.where(np.arange(n) < n // 2, "a", "b")
    vec = rng.normal(size=(n, 4)) + np.where(domains == "b", 0.5, 0.0)[:, None]
    seq = rng.normal(size=(n, 5, 3))
    target = 100 + 20 * vec[:, 0] - 10 * vec[:, 1] + 5 * seq[:, :, 0].mean(1) + rng.normal(size=n)
    return write_folder(root, {"vec": vec.astype(np.float32), "seq": seq.astype(np.float32)}, target, domains)


def test_regression_loss_by_hand():
    objective = Regression("mse").fit(np.array([10.0, 20.0, 30.0]))
    std = np.std([10.0, 20.0, 30.0])
    outputs = torch.tensor([[0.5], [-1.0]])
    targets = torch.tensor([25.0, 10.0])
    z = (np.array([25.0, 10.0]) - 20.0) / std
    expected = np.mean((np.array([0.5, -1.0]) - z) ** 2)
    assert float(objective.loss(outputs, targets)) == pytest.approx(expected, rel=1e-6)
    weights = torch.tensor([3.0, 1.0])
    weighted = (3 * (0.5 - z[0]) ** 2 + (-1.0 - z[1]) ** 2) / 4
    assert float(objective.loss(outputs, targets, weights)) == pytest.approx(weighted, rel=1e-6)
    l1 = Regression("l1").fit(np.array([10.0, 20.0, 30.0]))
    assert float(l1.loss(outputs, targets)) == pytest.approx(
        np.mean(np.abs(np.array([0.5, -1.0]) - z)), rel=1e-6
    )
    np.testing.assert_allclose(
        objective.predictions(outputs).numpy()[:, 0], [20 + 0.5 * std, 20 - std], rtol=1e-6
    )


def test_regression_metrics_by_hand():
    predicted = np.array([[1.0], [2.0], [4.0], [0.0]])
    targets = np.array([1.5, 2.0, 3.0, np.nan])  # the last has no target
    m = regression_metrics(predicted, targets)
    error = np.array([-0.5, 0.0, 1.0])
    assert m["mae"] == pytest.approx(0.5) and m["rmse"] == pytest.approx(np.sqrt((error**2).mean()))
    assert m["corr"] == pytest.approx(np.corrcoef([1, 2, 4], [1.5, 2, 3])[0, 1])
    assert m["r2"] == pytest.approx(
        1 - (error**2).sum() / ((np.array([1.5, 2, 3]) - 2.1666666) ** 2).sum(), rel=1e-5
    )


def test_classification_metrics_by_hand_and_against_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    labels = np.array([0, 0, 0, 0, 1, 1, 2, -1])  # the last row has no label
    predicted = np.array([0, 0, 0, 1, 1, 0, 3, 2])  # class 3 is predicted, never a label
    m = classification_metrics(np.eye(4)[predicted], labels)
    # recalls: class 0 3/4, class 1 1/2, class 2 0/1; F1: 0 6/8, 1 2/4, 2 0/1, 3 0/1
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 0.5 + 0) / 3)
    assert m["macro_f1"] == pytest.approx((6 / 8 + 2 / 4 + 0 + 0) / 4)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels[:7], predicted[:7]))
    assert m["macro_f1"] == pytest.approx(f1_score(labels[:7], predicted[:7], average="macro"))
    assert classification_metrics(np.eye(2)[[0, 1]], np.array([-1, -1])) == {
        "balanced_accuracy": None,
        "macro_f1": None,
    }


def adaptation_methods(regression: bool) -> list[str]:
    """The registered adaptation methods whose maths holds (or not) for a regression."""
    from crossfuse.registry import TRANSFERS

    return [
        name
        for name in TRANSFERS.names()
        if not TRANSFERS[name].domain_generalization and TRANSFERS[name].supports_regression == regression
    ]


@pytest.mark.parametrize("transfer", adaptation_methods(regression=True))
def test_a_regression_run_end_to_end(tmp_path, transfer):
    folder = regression_folder(tmp_path / "f")
    config = load_config(
        None, dict(data=str(folder), source=["a"], target=["b"], epochs=3, transfer=transfer)
    )
    metrics = run_experiment(config, tmp_path / "run", log=quiet)
    assert metrics["objective"] == "regression" and metrics["target_accuracy"] is None
    for key in (
        "target_mae",
        "target_rmse",
        "target_corr",
        "target_r2",
        "oracle_target_mae",
        "source_val_mae",
    ):
        assert metrics[key] is not None and np.isfinite(metrics[key]), key
    assert metrics["target_rmse"] >= metrics["target_mae"] > 0
    model = crossfuse.load(tmp_path / "run")
    values = model.predict({m: np.load(folder / "modalities" / f"{m}.npy") for m in ("vec", "seq")})
    assert values.shape == (240,) and 50 < values.mean() < 150  # in the targets' units


def test_regression_learns_and_predict_writes_values(tmp_path, monkeypatch, capsys):
    folder = regression_folder(tmp_path / "f", n=600)
    config = load_config(None, dict(data=str(folder), source=["a"], target=["b"], epochs=15))
    metrics = run_experiment(config, tmp_path / "run", log=quiet)
    assert metrics["target_r2"] > 0.5 and not metrics["warnings"]
    code, out, err = cli(
        monkeypatch, capsys, "predict", tmp_path / "run", "--data", folder, "--out", tmp_path / "p.csv"
    )
    assert code == 0, err and "mean absolute error" in out
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header == "row,domain,label,prediction"


def test_entropy_selection_is_refused_for_regression(tmp_path):
    folder = regression_folder(tmp_path / "f")
    config = load_config(
        None, dict(data=str(folder), source=["a"], target=["b"], epochs=1, selection="entropy")
    )
    with pytest.raises(CrossfuseError, match="cannot score a regression"):
        run_experiment(config, None, log=quiet)


# --- modality dropout ------------------------------------------------------------------------------


SHAPES = {"seq": (5, 3), "vec": (4,)}


def inputs(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, *s, generator=g) for m, s in SHAPES.items()}


@pytest.mark.parametrize("fusion", ["early", "late", "hierarchical", "tfn", "lmf", "nuclear"])
def test_missing_modality_prediction_equals_the_output_with_its_placeholder(fusion):
    torch.manual_seed(0)
    model = build_model(SHAPES, 3, fusion, hidden_dim=8, modality_dropout=0.5).eval()
    with torch.no_grad():
        model.placeholders["vec"].normal_()  # a trained placeholder is not zero
        batch = inputs()
        without = model({"seq": batch["seq"]})
        features = model.encode(batch)
        features["vec"] = model.placeholders["vec"].expand(6, -1)
        by_hand = model.head(model.fuse(features))
    torch.testing.assert_close(without, by_hand)


def test_modality_dropout_drops_with_probability_p_and_never_everything():
    torch.manual_seed(0)
    model = build_model(SHAPES, 3, "late", hidden_dim=8, modality_dropout=0.4)
    dropped = model._draw_dropped(20000)
    assert not dropped.all(1).any()
    # each modality: dropped with P, except when both were drawn (P^2) and it was the one restored (half)
    expected = 0.4 - 0.4**2 / 2
    assert dropped.float().mean(0).numpy() == pytest.approx([expected, expected], abs=0.01)


def test_placeholders_train_and_a_model_without_them_refuses_a_missing_modality():
    torch.manual_seed(0)
    model = build_model(SHAPES, 3, "lmf", hidden_dim=8, modality_dropout=0.9)
    loss = torch.nn.functional.cross_entropy(model(inputs(32)), torch.arange(32) % 3)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.placeholders.values())
    plain = build_model(SHAPES, 3, "lmf", hidden_dim=8)
    with pytest.raises(CrossfuseError, match="modality 'vec' is missing .*--modality-dropout"):
        plain({"seq": inputs()["seq"]})


def test_predict_accepts_a_folder_without_a_modality_only_when_trained_for_it(tmp_path, monkeypatch, capsys):
    folder = regression_folder(tmp_path / "f")
    base = dict(data=str(folder), source=["a"], target=["b"], epochs=2)
    run_experiment(load_config(None, base | {"modality_dropout": 0.5}), tmp_path / "md", log=quiet)
    run_experiment(load_config(None, base), tmp_path / "plain", log=quiet)
    partial = write_folder(
        tmp_path / "partial", {"vec": np.load(folder / "modalities" / "vec.npy")}, [0.0], ["a"]
    )
    (partial / "labels.npy").unlink()
    (partial / "domains.npy").unlink()
    code, _, err = cli(
        monkeypatch, capsys, "predict", tmp_path / "md", "--data", partial, "--out", tmp_path / "p.csv"
    )
    assert code == 0, err
    code, _, err = cli(
        monkeypatch, capsys, "predict", tmp_path / "plain", "--data", partial, "--out", tmp_path / "q.csv"
    )
    assert code == 2 and "modality 'seq' is missing" in err and err.count("\n") == 1


# --- robustness ------------------------------------------------------------------------------------


def test_noise_at_strength_zero_is_exactly_the_clean_score_and_figures_by_hand():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = {
        "seq": rng.normal(size=(40, 5, 3)).astype(np.float32),
        "vec": rng.normal(size=(40, 4)).astype(np.float32),
    }
    labels = rng.integers(0, 3, 40)
    model = build_model(SHAPES, 3, "late", hidden_dim=8)
    model.fit_normalizers(x)
    result = robustness_curves(model, x, labels, accuracy, seed=0)
    clean = accuracy(predict(model, x)[0], labels)
    assert result["clean"] == clean
    assert all(curve[0] == clean for curve in result["noise"].values())
    assert set(result["noise"]) == {"seq", "vec", "all"} and set(result["missing"]) == {"seq", "vec"}
    curve = [1.0, 0.9, 0.8, 0.8, 0.7, 0.6, 0.6, 0.5, 0.4, 0.4, 0.3]
    trapezoids = [(a + b) * 0.05 for a, b in zip(curve[:-1], curve[1:], strict=True)]
    assert relative_robustness(curve) == pytest.approx(sum(trapezoids))
    reference = [0.9, 0.7, 0.5, 0.4, 0.3, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1]
    by_hand = sum(f - (r + 0.1) for f, r in zip(curve, reference, strict=True))
    assert effective_robustness(curve, reference) == pytest.approx(by_hand)
    assert effective_robustness(curve, reference, lower_is_better=True) == pytest.approx(-by_hand)


def test_time_masking_masks_the_share_of_frames_and_noise_scales_with_strength():
    model = build_model(SHAPES, 3, "late", hidden_dim=8)
    rng = np.random.default_rng(0)
    x = {
        "seq": rng.normal(size=(10, 5, 3)).astype(np.float32) + 3,
        "vec": rng.normal(size=(10, 4)).astype(np.float32),
    }
    model.fit_normalizers(x)
    masked = perturb(model, "seq", x["seq"], 0.4, np.random.default_rng(1))
    changed_frames = (masked != x["seq"]).any(2).sum(1)
    assert (changed_frames == 2).all()  # round(0.4 * 5) frames a sample
    small = perturb(model, "vec", x["vec"], 0.1, np.random.default_rng(2)) - x["vec"]
    large = perturb(model, "vec", x["vec"], 1.0, np.random.default_rng(2)) - x["vec"]
    np.testing.assert_allclose(large, 10 * small, rtol=1e-4, atol=1e-6)


def test_robustness_command_writes_curves_and_a_table(tmp_path, monkeypatch, capsys, toy_folder):
    base = dict(data=str(toy_folder), source=["a"], target=["b"], epochs=2)
    run_experiment(load_config(None, base), tmp_path / "run", log=quiet)
    run_experiment(load_config(None, base | {"fusion": "lmf"}), tmp_path / "other", log=quiet)
    code, out, err = cli(
        monkeypatch, capsys, "robustness", tmp_path / "other", "--reference", tmp_path / "run"
    )
    assert code == 0, err
    result = json.loads((tmp_path / "other" / "robustness.json").read_text())
    assert result["metric"] == "target accuracy" and len(result["noise"]["all"]) == 11
    assert "| all |" in out and (tmp_path / "other" / "robustness.png").exists()
    assert out.count("without ") == 2


@pytest.mark.parametrize("fusion", ["early", "late", "hierarchical", "tfn", "lmf", "nuclear"])
def test_every_fusion_regresses_and_every_parameter_gets_a_gradient(fusion):
    torch.manual_seed(0)
    model = build_model(SHAPES, 3, fusion, hidden_dim=8, objective="regression")
    model.objective.fit(np.array([1.0, 2.0, 4.0]))
    outputs = model(inputs())
    assert outputs.shape == (6, 1)
    loss = model.objective.loss(outputs, torch.arange(6.0)) + model.penalty()
    loss.backward()
    for key, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, key


def test_bench_reports_regression_errors_and_robustness(tmp_path, monkeypatch, capsys):
    folder = regression_folder(tmp_path / "f")
    args = ["bench", "--data", folder, "--source", "a", "--target", "b", "--fusions", "late,lmf"]
    args += [
        "--transfers",
        "source-only,coral",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--jobs",
        "1",
        "--robustness",
    ]
    code, _, err = cli(monkeypatch, capsys, *args, "--out", tmp_path / "bench")
    assert code == 0, err
    report = (tmp_path / "bench" / "report.md").read_text()
    assert "## Regression runs" in report and "| a-to-b | lmf | coral | 1 |" in report
    assert "## Robustness (target MAE" in report and (tmp_path / "bench" / "robustness.png").exists()
    table = report.split("## Robustness")[1]
    reference_row = next(
        line for line in table.splitlines() if line.startswith("| a-to-b | late | source-only |")
    )
    assert reference_row.endswith("0.000 |")  # late source-only against itself


def test_single_modality_loss_by_hand_and_it_trains_each_path():
    from crossfuse.train.loop import single_modality_loss

    torch.manual_seed(0)
    model = build_model(SHAPES, 3, "late", hidden_dim=8, modality_dropout=0.5, dropout=0.0).eval()
    batch, labels = inputs(8), torch.arange(8) % 3
    with torch.no_grad():
        model.placeholders["seq"].normal_()
        model.placeholders["vec"].normal_()
        features = model.encode(batch)
        by_hand = []
        for kept in ("seq", "vec"):
            other = "vec" if kept == "seq" else "seq"
            alone = {kept: features[kept], other: model.placeholders[other].expand(8, -1)}
            by_hand.append(torch.nn.functional.cross_entropy(model.head(model.fuse(alone)), labels))
        expected = torch.stack(by_hand).mean()
        assert float(single_modality_loss(model, batch, labels)) == pytest.approx(float(expected), rel=1e-6)


def test_a_method_without_regression_maths_is_refused_in_one_line(tmp_path):
    folder = regression_folder(tmp_path / "f")
    config = load_config(None, dict(data=str(folder), source=["a"], target=["b"], epochs=1, transfer="mcc"))
    with pytest.raises(CrossfuseError, match="--transfer mcc: minimum class confusion works on class"):
        run_experiment(config, None, log=quiet)
    refused = adaptation_methods(regression=False)
    assert {"mcc", "cdan", "shot", "mimicry", "jan", "bnm", "vada"} <= set(refused)
    for transfer in refused:
        config = load_config(
            None, dict(data=str(folder), source=["a"], target=["b"], epochs=1, transfer=transfer)
        )
        with pytest.raises(
            CrossfuseError, match=rf"--transfer {transfer}: .*a regression has none"
        ) as caught:
            run_experiment(config, None, log=quiet)
        assert "\n" not in str(caught.value)
