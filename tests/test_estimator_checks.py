"""scikit-learn's own conformance checks (``check_estimator``) on both estimators: input validation with
scikit-learn's errors and warnings, ``n_features_in_``, ``NotFittedError``, sparse and object inputs,
dict class weights, pickling, idempotent fits, and the rest. Three epochs a fit keep it short; the checks
that score a model (``check_classifiers_train``, ``check_class_weight_classifiers``, ...) pass with them.
"""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import crossfuse
from crossfuse.errors import ConfigError
from crossfuse.objective import Classification


@parametrize_with_checks(
    [
        crossfuse.MultimodalClassifier(epochs=3),
        crossfuse.MultimodalRegressor(epochs=3),
        # the quantile mapping through the same checks: tiny fits, constant columns, pickling, sparse input
        crossfuse.MultimodalClassifier(epochs=3, normalization="quantile"),
    ]
)
def test_scikit_learn_conformance(estimator, check):
    check(estimator)


def test_a_regressor_has_no_class_probabilities_and_predict_before_fit_is_refused_both_ways():
    from sklearn.exceptions import NotFittedError

    assert not hasattr(crossfuse.MultimodalRegressor(), "predict_proba")
    x = np.zeros((4, 2))
    for error in (NotFittedError, ConfigError):
        with pytest.raises(error, match="this MultimodalClassifier is not fitted yet"):
            crossfuse.MultimodalClassifier().predict(x)


def test_class_weights_given_per_class_value_by_hand():
    objective = Classification().weigh({"cat": 3.0, "ant": 0.5}, ["ant", "bee", "cat"])
    assert objective.class_weights.tolist() == [0.5, 1.0, 3.0]  # a class left out weighs 1
    with pytest.raises(ConfigError, match="class_weight: no class 'dog'"):
        Classification().weigh({"dog": 2.0}, ["ant", "bee"])
    with pytest.raises(ConfigError, match="not all 0"):
        Classification().weigh({"ant": 0.0, "bee": 0.0}, ["ant", "bee"])
    with pytest.raises(ConfigError, match=">= 0"):
        Classification().weigh({"ant": -1.0}, ["ant", "bee"])


def test_a_data_frame_names_its_features_and_predict_checks_them(tmp_path):
    pandas = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    frame = pandas.DataFrame(rng.normal(size=(60, 3)) + labels[:, None], columns=["age", "bmi", "bp"])
    model = crossfuse.MultimodalClassifier(epochs=2).fit(frame, labels)
    assert list(model.feature_names_in_) == ["age", "bmi", "bp"] and model.n_features_in_ == 3
    assert model.predict(frame).shape == (60,)
    with pytest.raises(ValueError, match="feature names should match"):
        model.predict(frame.rename(columns={"bmi": "weight"}))
    with pytest.raises(ValueError, match="X has 2 features, but MultimodalClassifier is expecting 3"):
        model.predict(frame.to_numpy()[:, :2])
    fitted_on_a_dict = crossfuse.MultimodalClassifier(epochs=2).fit({"v": frame.to_numpy()}, labels)
    assert not hasattr(fitted_on_a_dict, "n_features_in_")
    with pytest.raises(ValueError, match="fitted on a dict of arrays"):
        fitted_on_a_dict.predict(frame.to_numpy())


def test_a_configuration_file_keys_class_weights_by_integer_class_values(tmp_path):
    from crossfuse.config import load_config

    (tmp_path / "run.yaml").write_text("class_weight:\n  0: 1000\n  1: 0.5\n")
    assert load_config(tmp_path / "run.yaml", {}).class_weight == {"0": 1000.0, "1": 0.5}


def test_minus_one_is_a_class_on_source_rows_and_a_missing_label_on_target_rows():
    """libsvm's {-1, +1} labels: -1 on a source row is a class; on a target row (skada's convention) it
    masks the label."""
    rng = np.random.default_rng(0)
    y = np.where(rng.random(200) < 0.5, -1, 1)
    x = rng.normal(size=(200, 3)) + 2.0 * y[:, None]
    plain = crossfuse.MultimodalClassifier(epochs=3).fit(x, y)
    assert list(plain.classes_) == [-1, 1] and set(plain.predict(x)) == {-1, 1}
    assert plain.score(x, y) > 0.9  # the -1 rows count: they are a class
    assert plain.predict_proba(x).shape == (200, 2)
    domain = np.where(np.arange(200) < 100, 1, -2)
    masked = np.where(domain > 0, y, -1)  # every target row masked
    adapted = crossfuse.MultimodalClassifier(transfer="dann", epochs=3).fit(x, masked, sample_domain=domain)
    assert list(adapted.classes_) == [-1, 1] and adapted.score(x[100:], y[100:]) > 0.9
    assert adapted.result_.target_accuracy is None  # the masked target labels were not read as a class
