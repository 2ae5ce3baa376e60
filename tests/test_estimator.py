"""The scikit-learn style estimators: skada's sample_domain convention, flat or dict inputs, clone and
cross-validation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

import crossfuse
from crossfuse.errors import DataError


def shifted(n=160, seed=0):
    """Two modalities (a 4-vector and a 1x4x4 image), three string classes, the second half shifted."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 3, n)
    centres = rng.normal(size=(3, 4)) * 2
    vector = centres[classes] + rng.normal(size=(n, 4)) + np.where(np.arange(n) >= n // 2, 0.5, 0.0)[:, None]
    image = rng.normal(size=(n, 1, 4, 4)) * 0.3 + classes[:, None, None, None]
    labels = np.array(["cat", "dog", "owl"])[classes]
    domain = np.where(np.arange(n) < n // 2, 1, -2)
    return {"vector": vector.astype(np.float32), "image": image.astype(np.float32)}, labels, domain


def test_fit_predict_in_the_users_label_values_and_the_runs_own_model(tmp_path):
    x, y, domain = shifted()
    masked = np.where(domain > 0, y, "")
    estimator = crossfuse.MultimodalClassifier(transfer="dann", epochs=3, out=tmp_path / "run")
    assert estimator.fit(x, masked, sample_domain=domain) is estimator
    assert list(estimator.classes_) == ["cat", "dog", "owl"]
    target = {m: a[domain < 0] for m, a in x.items()}
    probabilities = estimator.predict_proba(target)
    assert probabilities.shape == (80, 3) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    predicted = estimator.predict(target)
    assert set(predicted) <= {"cat", "dog", "owl"}
    assert np.array_equal(predicted, crossfuse.load(tmp_path / "run").predict(target))
    accuracy = estimator.score(target, y[domain < 0])
    assert accuracy == pytest.approx(float((predicted == y[domain < 0]).mean()))
    assert estimator.result_.transfer == "dann" and estimator.result_.target_domains == ["target2"]


def test_target_labels_given_to_fit_are_never_trained_on():
    x, y, domain = shifted()
    masked = np.where(domain > 0, y, "")
    target = {m: a[domain < 0] for m, a in x.items()}
    blind = crossfuse.MultimodalClassifier(transfer="mcc", epochs=3).fit(x, masked, sample_domain=domain)
    told = crossfuse.MultimodalClassifier(transfer="mcc", epochs=3).fit(x, y, sample_domain=domain)
    assert np.array_equal(blind.predict_proba(target), told.predict_proba(target))
    assert blind.result_.target_accuracy is None and told.result_.target_accuracy is not None


def test_a_flat_array_is_split_by_the_modalities_layout():
    x, y, domain = shifted()
    flat = np.concatenate([x["vector"], x["image"].reshape(len(y), -1)], axis=1)
    layout = {"vector": 4, "image": (1, 4, 4)}
    from_flat = crossfuse.MultimodalClassifier(modalities=layout, epochs=3).fit(flat, y, sample_domain=domain)
    from_dict = crossfuse.MultimodalClassifier(epochs=3).fit(x, y, sample_domain=domain)
    assert np.array_equal(from_flat.predict_proba(flat), from_dict.predict_proba(x))
    with pytest.raises(
        DataError, match=r"X: 20 columns, but modalities \(vector \(4,\), image \(1, 3, 4\)\) take 16"
    ):
        crossfuse.MultimodalClassifier(modalities={"vector": 4, "image": (1, 3, 4)}).fit(
            flat, y, sample_domain=domain
        )


def test_clone_and_cross_validation_take_it():
    x, y, _ = shifted()
    estimator = crossfuse.MultimodalClassifier(fusion="lmf", epochs=2, fusion_options={"rank": 2})
    copy = clone(estimator)
    assert copy.get_params() == estimator.get_params() and copy.get_params()["fusion"] == "lmf"
    assert copy.set_params(lr=3e-3).lr == 3e-3
    flat = np.concatenate([x["vector"], x["image"].reshape(len(y), -1)], axis=1)
    estimator.set_params(modalities={"vector": 4, "image": (1, 4, 4)})
    scores = cross_val_score(estimator, flat, y, cv=2)  # no sample_domain: every row is source
    assert scores.shape == (2,) and (scores > 1 / 3).all()


def test_without_target_rows_source_only_runs_as_erm_and_adaptation_is_refused():
    x, y, _ = shifted()
    fitted = crossfuse.MultimodalClassifier(epochs=2).fit(x, y)
    assert fitted.result_.transfer == "erm" and fitted.result_.target_domains == []
    with pytest.raises(DataError, match="transfer 'dann' adapts to target rows"):
        crossfuse.MultimodalClassifier(transfer="dann").fit(x, y)
    with pytest.raises(DataError, match="sample_domain: need 160 nonzero integers"):
        crossfuse.MultimodalClassifier().fit(x, y, sample_domain=np.zeros(160, dtype=int))
    with pytest.raises(crossfuse.ConfigError, match="not fitted yet"):
        crossfuse.MultimodalClassifier().predict(x)


def test_the_regressor_scores_r2_and_masks_nan_targets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 5)).astype(np.float32)
    y = x @ rng.normal(size=5) + 0.1 * rng.normal(size=160)
    domain = np.where(np.arange(160) < 80, 1, -2)
    masked = np.where(domain > 0, y, np.nan)
    regressor = crossfuse.MultimodalRegressor(transfer="coral", epochs=5).fit(x, masked, sample_domain=domain)
    predicted = regressor.predict(x[80:])
    residual = ((y[80:] - predicted) ** 2).sum() / ((y[80:] - y[80:].mean()) ** 2).sum()
    assert regressor.score(x[80:], y[80:]) == pytest.approx(1 - residual, rel=1e-5)
    assert regressor.score(x, masked) == pytest.approx(regressor.score(x[:80], y[:80]), rel=1e-6)


def test_the_readme_estimator_example_runs(capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "MultimodalClassifier" in b)
    exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    assert float(re.search(r"target accuracy (\d\.\d+)", printed).group(1)) > 0.5
    assert re.search(r"\[[\d. ]+\]", printed)  # the three fold scores


def test_y_of_several_outputs_or_other_rows_is_refused_naming_y_or_x():
    x, labels, domain = shifted(40)
    with pytest.raises(
        DataError, match=r"^y: expected one label a row, shape \(n_samples,\), found \(40, 3\)$"
    ):
        crossfuse.MultimodalClassifier(epochs=1).fit(x["vector"], np.zeros((40, 3)), sample_domain=domain)
    with pytest.raises(DataError, match=r"^X: modality 'vector' has 40 rows and y has 39"):
        crossfuse.MultimodalClassifier(epochs=1).fit(x, labels[:39], sample_domain=domain[:39])
    column = crossfuse.MultimodalClassifier(epochs=1).fit(x, labels[:, None], sample_domain=domain)
    assert list(column.classes_) == ["cat", "dog", "owl"], "a column vector of labels is one label a row"


def test_several_outputs_through_scikit_learns_multi_output_wrapper():
    from sklearn.multioutput import MultiOutputRegressor

    x, _, domain = shifted(40)
    outputs = np.stack([x["vector"][:, 0] * 3, x["vector"][:, 1] - 10], axis=1)
    wrapped = MultiOutputRegressor(crossfuse.MultimodalRegressor(epochs=2)).fit(
        x["vector"], outputs, sample_domain=domain
    )
    assert wrapped.predict(x["vector"][:5]).shape == (5, 2)
    assert [e.result_.objective for e in wrapped.estimators_] == ["regression", "regression"]


def test_a_refused_input_is_named_as_the_caller_gave_it_not_as_a_scratch_file():
    x, labels, domain = shifted(40)
    broken = {m: a.copy() for m, a in x.items()}
    broken["vector"][3, 1] = np.inf
    with pytest.raises(DataError, match=r"^X: modality 'vector' contains inf \(first at sample 3\)$"):
        crossfuse.MultimodalClassifier(epochs=1).fit(broken, labels, sample_domain=domain)
    with pytest.raises(DataError, match=r"^y: labels must be class values .*use MultimodalRegressor\)$"):
        crossfuse.MultimodalClassifier(epochs=1).fit(x, np.linspace(0.5, 3.5, 40), sample_domain=domain)


def test_a_data_frame_with_text_columns_is_refused_naming_them():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 3)), columns=["age", "dose", "weight"])
    frame["sex"] = np.where(rng.random(40) < 0.5, "f", "m")
    frame["site"] = pd.Categorical(np.where(rng.random(40) < 0.5, "x", "y"))
    frame["smoker"] = rng.random(40) < 0.5  # bool counts as a number
    labels = rng.integers(0, 2, 40)
    with pytest.raises(ValueError, match=r"X: column\(s\) 'sex', 'site' hold text or categories"):
        crossfuse.MultimodalClassifier(epochs=1).fit(frame, labels)
    assert crossfuse.MultimodalClassifier(epochs=1).fit(frame.drop(columns=["sex", "site"]), labels)
    dated = frame.drop(columns=["sex", "site"]).assign(seen=pd.date_range("2020-01-01", periods=40))
    with pytest.raises(ValueError, match=r"X: column\(s\) 'seen' hold dates or durations; .* days since"):
        crossfuse.MultimodalClassifier(epochs=1).fit(dated, labels)
    # numbers held as Python objects (as some pandas operations leave them), a missing one as None
    held = frame.drop(columns=["sex", "site"]).assign(dose=[None, *frame["dose"][1:]])
    held["dose"] = held["dose"].astype(object)
    fitted = crossfuse.MultimodalClassifier(epochs=1).fit(held, labels)
    assert fitted.predict(held).shape == (40,)
