"""``--normalization quantile``: each vector feature mapped through its training quantiles to a standard
normal, checked against the mid-rank distribution function computed by hand, against scikit-learn's
``QuantileTransformer`` where they agree, and through a run folder, ``load``, export and source-free
re-fitting."""

import numpy as np
import pytest
import torch
from scipy.special import ndtri

import crossfuse
from crossfuse.config import NORMALIZATIONS, load_config
from crossfuse.data.summary import scaling_line
from crossfuse.normalize import N_QUANTILES, QUANTILE_BOUND, Standardize, resolve_normalization
from crossfuse.source_free import adapt_run
from tests.conftest import toy_arrays, write_folder


def mid_rank_scores(train: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The maths by hand, in float64: each feature's quantiles at ``N_QUANTILES`` even levels, the level of
    a value read by linear interpolation once from below and once from above (so that a value several
    quantiles share gets the middle of their levels), kept within the bound, through the normal's
    inverse."""
    levels = np.linspace(0, 1, N_QUANTILES)
    out = np.empty(values.shape)
    for j in range(train.shape[1]):
        column = train[:, j][~np.isnan(train[:, j])]
        q = np.quantile(column, levels)
        from_below = np.interp(values[:, j], q, levels)
        from_above = -np.interp(-values[:, j], -q[::-1], -levels[::-1])
        level = np.clip((from_below + from_above) / 2, QUANTILE_BOUND, 1 - QUANTILE_BOUND)
        out[:, j] = ndtri(level)
    return out


def scores(normalizer: Standardize, values: np.ndarray) -> np.ndarray:
    return normalizer(torch.tensor(values, dtype=torch.float32)).numpy()


def test_scores_match_the_mid_rank_distribution_function_computed_by_hand():
    rng = np.random.default_rng(0)
    train = np.c_[
        rng.lognormal(size=500),  # skewed amounts
        rng.integers(0, 2, 500),  # yes / no
        rng.integers(0, 5, 500),  # a small count, many ties
        np.full(500, 3.0),  # constant
    ]
    values = np.c_[
        rng.lognormal(size=300) * 3,  # some beyond the training range
        rng.integers(-1, 3, 300),
        rng.integers(0, 7, 300),
        rng.integers(2, 5, 300),
    ].astype(float)
    normalizer = Standardize((4,), "quantile").fit(train)
    assert normalizer.kind == "quantile"
    np.testing.assert_allclose(scores(normalizer, values), mid_rank_scores(train, values), atol=2e-5)


def test_a_yes_no_feature_gets_the_middle_of_each_answers_share():
    answers = np.r_[np.zeros(700), np.ones(300)][:, None]
    normalizer = Standardize((1,), "quantile").fit(answers)
    no, yes = scores(normalizer, np.array([[0.0], [1.0]]))[:, 0]
    # The quantiles at levels i / 999 are the sorted rows themselves: 0 up to 699 / 999, then 1. Each
    # answer gets the middle of its levels, about 0.35 and 0.85 (the middles of its 70% and 30%).
    assert no == pytest.approx(ndtri(349.5 / 999), abs=1e-5)
    assert yes == pytest.approx(ndtri(849.5 / 999), abs=1e-5)


def test_continuous_scores_equal_scikit_learns_quantile_transformer():
    from sklearn.preprocessing import QuantileTransformer

    rng = np.random.default_rng(1)
    train = rng.normal(size=(N_QUANTILES, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0]
    values = rng.normal(size=(200, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0]
    expected = QuantileTransformer(output_distribution="normal").fit(train).transform(values)
    normalizer = Standardize((3,), "quantile").fit(train)
    np.testing.assert_allclose(scores(normalizer, values), expected, atol=1e-4)


def test_values_beyond_the_training_range_stop_at_the_bound_on_either_side():
    train = np.linspace(-1.0, 1.0, 50)[:, None]
    normalizer = Standardize((1,), "quantile").fit(train)
    out = scores(normalizer, np.array([[-7.0], [-1.0], [0.0], [1.0], [40.0]]))[:, 0]
    bound = -ndtri(QUANTILE_BOUND)
    np.testing.assert_allclose(out, [-bound, -bound, 0.0, bound, bound], atol=1e-5)
    assert bound == pytest.approx(5.1993, abs=1e-4)
    double = normalizer(torch.tensor([[-7.0], [0.5]], dtype=torch.float64))  # float64 rows: one cast
    assert double.dtype == torch.float64 and double[0, 0].item() == pytest.approx(-bound, abs=1e-5)


def test_missing_values_are_left_out_and_score_zero_with_their_indicator():
    rng = np.random.default_rng(2)
    train = rng.exponential(size=(400, 2))
    holed = train.copy()
    holed[::4, 0] = np.nan
    normalizer = Standardize((2,), "quantile", indicators=[0]).fit(holed)
    present = ~np.isnan(holed[:, 0])
    reference = Standardize((1,), "quantile").fit(holed[present, :1])
    np.testing.assert_array_equal(normalizer.quantiles[0].numpy(), reference.quantiles[0].numpy())
    out = scores(normalizer, holed[:8])
    assert out.shape == (8, 3)
    assert out[0, 0] == 0.0 and out[0, 2] == 1.0 and out[1, 2] == 0.0
    np.testing.assert_allclose(out[1:4, :2], mid_rank_scores(holed, holed[1:4]), atol=2e-5)


def test_sequences_and_images_are_scaled_per_feature_and_the_line_says_who_chose():
    assert "quantile" in NORMALIZATIONS
    assert resolve_normalization("quantile", np.zeros((4, 3))) == "quantile"
    assert resolve_normalization("quantile", np.zeros((4, 5, 3))) == "feature"
    sequence = Standardize((5, 3), "quantile").fit(np.random.default_rng(3).normal(size=(40, 5, 3)))
    assert sequence.kind == "feature" and not hasattr(sequence, "quantiles")
    line = scaling_line({"x": (7,), "s": (5, 3)}, {"x": "quantile", "s": "feature"}, "quantile")
    assert line == (
        "inputs: s (a sequence of 5 frames x 3 features) scales per frame feature; x (a vector of 7 "
        "features) each feature mapped through its training quantiles to a normal (chosen by "
        "--normalization quantile)"
    )
    assert not scaling_line({"x": (7,)}, {"x": "quantile"}, "quantile").endswith(")")


def test_only_a_quantile_model_keeps_quantiles_so_older_run_folders_load_unchanged():
    assert "quantiles" in Standardize((3,), "quantile").state_dict()
    for mode in ("auto", "feature", "global", "domain", "none"):
        assert set(Standardize((3,), mode).state_dict()) == {"mean", "std"}


def test_a_quantile_run_predicts_loads_and_exports_the_same_scores(tmp_path):
    labels, domains, vec, seq = toy_arrays()
    skewed = np.exp(vec).astype(np.float32)  # the signal, spread over orders of magnitude
    folder = write_folder(tmp_path / "data", {"vec": skewed, "seq": seq.astype(np.float32)}, labels, domains)
    settings = {
        "data": str(folder),
        "source": ["a"],
        "target": ["b"],
        "epochs": 3,
        "normalization": "quantile",
    }
    lines = []
    crossfuse.run_experiment(load_config(None, settings), tmp_path / "run", log=lines.append)
    assert any(
        line.startswith("inputs:")
        and "vec (a vector of 6 features) each feature mapped through its training quantiles" in line
        and "(chosen by --normalization quantile)" in line  # the sequence is scaled per frame feature
        for line in lines
    )
    trained = crossfuse.load(tmp_path / "run")
    normalizer = trained.model.normalizers["vec"]
    assert normalizer.kind == "quantile" and trained.model.normalizers["seq"].kind == "feature"
    source = domains == "a"
    kept = normalizer.quantiles.numpy()  # fitted on the source's training rows, a share of the source
    assert (np.diff(kept, axis=1) >= 0).all() and (kept[:, -1] > kept[:, 0]).all()
    assert (kept[:, 0] >= skewed[source].min(0)).all() and (kept[:, -1] <= skewed[source].max(0)).all()
    inputs = {"vec": skewed, "seq": seq.astype(np.float32)}
    probabilities = trained.predict_proba(inputs)
    program = torch.export.load(str(trained.export(tmp_path / "model.pt2"))).module()
    served = program(*[torch.from_numpy(inputs[m]) for m in sorted(inputs)])
    served = served[0] if isinstance(served, tuple) else served
    np.testing.assert_allclose(served.detach().numpy(), probabilities, atol=1e-5)
    accuracy = (trained.predict(inputs)[~source] == labels[~source]).mean()
    assert accuracy > 0.5  # three classes: it learnt through the mapping


def test_source_free_standardize_refits_the_quantiles_on_the_target(tmp_path):
    labels, domains, vec, _ = toy_arrays(shift=3.0)
    x = np.exp(vec / 2).astype(np.float32)
    train = write_folder(tmp_path / "train", {"x": x}, labels, domains)
    rows = domains == "b"
    target = write_folder(tmp_path / "target", {"x": x[rows]}, labels[rows], domains[rows])
    settings = {
        "data": str(train),
        "source": ["a"],
        "target": ["b"],
        "epochs": 3,
        "normalization": "quantile",
    }
    crossfuse.run_experiment(load_config(None, settings), tmp_path / "run", log=lambda _: None)
    adapt_run(tmp_path / "run", target, tmp_path / "adapted", method="standardize")
    normalizer = crossfuse.load(tmp_path / "adapted").model.normalizers["x"]
    assert normalizer.kind == "quantile"
    expected = Standardize((6,), "quantile").fit(x[rows]).quantiles
    np.testing.assert_allclose(normalizer.quantiles.numpy(), expected.numpy(), rtol=1e-6)


def test_a_regressor_predicts_beyond_the_training_range_as_at_its_edge():
    rng = np.random.default_rng(4)
    x = rng.lognormal(sigma=2.0, size=(200, 1))  # one feature over orders of magnitude
    y = np.log(x[:, 0]) + rng.normal(scale=0.1, size=200)
    model = crossfuse.MultimodalRegressor(normalization="quantile", epochs=3).fit(x, y)
    beyond = np.array([[x.min() / 10], [x.max() * 10]])  # past every training row, held out or not
    far = np.array([[x.min() / 1e6], [x.max() * 1e6]])
    np.testing.assert_array_equal(model.predict(far), model.predict(beyond))
    low, high = model.predict(beyond)
    assert high - low > 0.5 * (y.max() - y.min())  # the trend, learnt within the range, up to its edges
