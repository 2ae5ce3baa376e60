"""Samples that lack a modality (every value NaN): loaded, trained on and predicted with a learned
placeholder in place of the missing encoding (a NaN in part of a sample, a missing value, is
``tests/test_missing_values.py``'s)."""

import numpy as np
import pytest
import torch

import crossfuse
from crossfuse.config import load_config
from crossfuse.data.folder import check_modality, load_folder
from crossfuse.data.missing import missing_rows, modalities_with_missing_rows, present_rows
from crossfuse.errors import ConfigError, DataError
from crossfuse.evaluation.density_ratio import DensityRatio
from crossfuse.model import build_model
from crossfuse.runner import run
from crossfuse.transfer import TRANSFERS
from tests.conftest import write_folder

SHAPES = {"seq": (5, 4), "vec": (6,)}


def test_a_sample_is_missing_when_every_value_is_nan():
    x = np.ones((4, 2, 3), dtype=np.float32)
    x[1] = np.nan
    x[2, 0, 0] = np.nan  # part of a sample: a missing value, not a missing sample
    assert missing_rows(x).tolist() == [False, True, False, False]
    assert len(present_rows(x)) == 3
    assert missing_rows(np.ones((3, 2), dtype=np.int64)).tolist() == [False] * 3
    assert modalities_with_missing_rows({"a": x, "b": np.ones((4, 1))}) == ["a"]


def test_missing_samples_load_and_an_infinity_is_refused():
    x = np.zeros((4, 3), dtype=np.float64)
    x[2] = np.nan
    assert np.isnan(check_modality("vec", x, "f.npy")[2]).all()
    with pytest.raises(DataError, match=r"f.npy: modality 'vec' is missing .* at sample 2"):
        check_modality("vec", x, "f.npy", missing_allowed=False)
    x[1, 0] = np.inf
    with pytest.raises(DataError, match=r"modality 'vec' contains inf \(first at sample 1\)"):
        check_modality("vec", x, "f.npy")


def toy_with_holes(tmp_path, lacking_every: bool = False):
    rng = np.random.default_rng(0)
    n = 240
    labels = rng.integers(0, 3, n)
    domains = np.where(np.arange(n) < n // 2, "a", "b")
    vec = (rng.normal(size=(n, 6)) + np.eye(3)[labels] @ rng.normal(size=(3, 6)) * 2).astype(np.float32)
    seq = (rng.normal(size=(n, 5, 4)) + labels[:, None, None] * 0.8).astype(np.float32)
    vec[::7] = np.nan  # in both domains, training and scored rows
    holes = np.arange(3, n, 11)
    seq[holes[holes % 7 != 0]] = np.nan  # no sample lacks both
    if lacking_every:
        seq[7] = np.nan  # vec[7] is missing too
    return write_folder(tmp_path / "holes", {"vec": vec, "seq": seq}, labels, domains)


def test_a_sample_that_lacks_every_modality_is_refused(tmp_path):
    folder = toy_with_holes(tmp_path, lacking_every=True)
    with pytest.raises(DataError, match=r"modalities: sample 7 lacks every modality"):
        load_folder(folder)


def test_a_missing_sample_gets_the_placeholder_and_the_others_their_own_encoding():
    torch.manual_seed(0)
    model = build_model(SHAPES, 3, "late", hidden_dim=8, missing_modalities=["vec"]).eval()
    assert list(model.placeholders) == ["vec"]
    with torch.no_grad():
        model.placeholders["vec"].normal_()
    inputs = {"seq": torch.randn(5, 5, 4), "vec": torch.randn(5, 6)}
    holed = {"seq": inputs["seq"], "vec": inputs["vec"].clone()}
    holed["vec"][2] = float("nan")
    with torch.no_grad():
        features, reference = model.encode(holed), model.encode(inputs)
    assert torch.equal(features["vec"][2], model.placeholders["vec"])
    kept = [0, 1, 3, 4]
    assert torch.allclose(features["vec"][kept], reference["vec"][kept], atol=1e-6)
    assert torch.equal(features["seq"], reference["seq"])


def test_the_placeholder_learns_and_no_nan_reaches_a_gradient():
    torch.manual_seed(0)
    model = build_model(SHAPES, 3, "lmf", hidden_dim=8, missing_modalities=["seq", "vec"])
    inputs = {"seq": torch.randn(8, 5, 4), "vec": torch.randn(8, 6)}
    inputs["vec"][:3] = float("nan")
    inputs["seq"][5] = float("nan")
    loss = torch.nn.functional.cross_entropy(model(inputs), torch.arange(8) % 3)
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert model.placeholders["vec"].grad.abs().sum() > 0 and model.placeholders["seq"].grad.abs().sum() > 0


def test_normalisation_statistics_leave_the_missing_samples_out():
    model = build_model({"vec": (2,), "other": (1,)}, 2, "late", hidden_dim=4, missing_modalities=["vec"])
    vec = np.array([[1.0, 2.0], [np.nan, np.nan], [3.0, 6.0]], dtype=np.float32)
    model.fit_normalizers({"vec": vec, "other": np.ones((3, 1), dtype=np.float32)})
    assert torch.allclose(model.normalizers["vec"].mean.flatten(), torch.tensor([2.0, 4.0]))


@pytest.mark.parametrize("transfer", [t for t in TRANSFERS if t != "finetune"])
def test_every_method_takes_a_step_on_samples_with_holes(transfer):
    from crossfuse.train.lifecycle import start_method
    from crossfuse.train.loop import TrainingObjective

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(SHAPES, 3, "late", hidden_dim=8, missing_modalities=["seq", "vec"])
    method = TRANSFERS[transfer]()
    arrays = {m: rng.normal(size=(16, *s)).astype(np.float32) for m, s in SHAPES.items()}
    target = {m: (x + 1).astype(np.float32) for m, x in arrays.items()}
    for x in (arrays, target):
        x["vec"][::4] = np.nan
        x["seq"][1::5] = np.nan
    labels = np.arange(16) % 3
    start_method(method, model, arrays, target, seed=0, n_source_domains=2, source_labels=labels)
    method.batch_source_domains = torch.arange(16) % 2
    model.fit_normalizers(arrays)
    to_t = lambda a: {m: torch.from_numpy(x) for m, x in a.items()}  # noqa: E731
    loss = TrainingObjective(model, method)(to_t(arrays), torch.from_numpy(labels), to_t(target), 0.5)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in list(model.parameters()) + list(method.parameters()) if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)


def test_density_ratio_puts_a_missing_sample_at_the_training_mean():
    rng = np.random.default_rng(0)
    source = {"vec": rng.normal(size=(60, 3)).astype(np.float32)}
    target = {"vec": (rng.normal(size=(60, 3)) + 1).astype(np.float32)}
    source["vec"][0] = np.nan
    ratio = DensityRatio(seed=0).fit(source, target)
    weights = ratio.weights(source)
    assert np.isfinite(weights).all()
    joined = np.concatenate([source["vec"], target["vec"]])
    at_mean = {"vec": np.nanmean(joined[~np.isnan(joined).all(1)], axis=0, keepdims=True)}
    assert np.isclose(weights[0], ratio.weights(at_mean)[0])


def test_a_run_on_samples_with_holes_trains_and_its_model_predicts_them(tmp_path):
    folder = toy_with_holes(tmp_path)
    lines = []
    config = load_config(None, {"data": str(folder), "source": ["a"], "target": ["b"], "transfer": "dann"})
    result = run(config.model_copy(update={"epochs": 3}), tmp_path / "run", log=lines.append)
    assert any("samples lack modality 'vec'" in line for line in lines)
    assert result.target_accuracy > 0.5  # three classes
    model = crossfuse.load(tmp_path / "run")
    data = load_folder(folder)
    inputs = data.modalities
    probabilities = model.predict_proba(inputs)
    assert np.isfinite(probabilities).all()
    # a sample that lacks 'vec' is predicted as if 'vec' were left out of the call
    row = int(np.flatnonzero(missing_rows(inputs["vec"]))[0])
    alone = model.predict_proba({"seq": inputs["seq"][row : row + 1]})
    assert np.allclose(probabilities[row], alone[0], atol=1e-6)
    # the exported program takes the NaN samples too
    program = torch.export.load(str(model.export(tmp_path / "model.pt2"))).module()
    exported = program(*(torch.from_numpy(inputs[m]) for m in sorted(inputs)))
    assert np.allclose(exported.detach().numpy(), probabilities, atol=1e-5)


def test_a_model_without_a_placeholder_for_a_modality_with_holes_is_refused(tmp_path):
    folder = toy_with_holes(tmp_path)
    config = load_config(None, {"data": str(folder), "source": ["a"], "target": ["b"]})
    own = build_model(SHAPES, 3, "late", hidden_dim=8)
    with pytest.raises(ConfigError, match=r"modality 'seq' is missing .* no placeholder"):
        run(config, None, log=lambda _: None, model=own)
