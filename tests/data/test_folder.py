import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from crossfuse.data.dataset import Task, split_task
from crossfuse.data.folder import load_folder
from crossfuse.errors import DataError
from tests.conftest import write_folder


def test_loads_modalities_labels_domains(toy_folder):
    data = load_folder(toy_folder)
    assert sorted(data.modalities) == ["seq", "vec"]
    assert data.modalities["seq"].shape == (240, 5, 4) and data.modalities["seq"].dtype == np.float32
    assert data.n_classes == 3 and data.domain_names == ["a", "b"]
    assert data.split is None


def test_integer_domains_and_integer_valued_float_labels(tmp_path):
    root = write_folder(
        tmp_path / "d", {"x": np.ones((4, 2))}, np.array([0.0, 1.0, 1.0, 0.0]), np.array([1, 1, 2, 2])
    )
    data = load_folder(root)
    assert data.labels.dtype == np.int64 and data.domain_names == ["1", "2"]


def test_split_file_decides_the_rows_each_set_uses(tmp_path):
    n = 12
    domains = np.array(["s"] * 6 + ["t"] * 6)
    split = np.array(["train"] * 5 + ["test"] + ["train", "train", "test", "test", "all", "all"])
    root = write_folder(
        tmp_path / "d", {"x": np.arange(n, dtype=float)[:, None]}, np.arange(n) % 2, domains, split
    )
    data = load_folder(root)
    parts = split_task(data, Task(("s",), ("t",)), seed=0)
    assert sorted(np.concatenate([parts.source_train, parts.source_val]).tolist()) == [0, 1, 2, 3, 4]
    assert parts.target_train.tolist() == [6, 7, 10, 11]
    assert parts.target_test.tolist() == [8, 9, 10, 11]


def test_without_split_a_seeded_split_is_made(toy_folder):
    data = load_folder(toy_folder)
    task = Task(("a",), ("b",))
    first, again, other = (split_task(data, task, seed) for seed in (0, 0, 1))
    np.testing.assert_array_equal(first.target_test, again.target_test)
    assert not np.array_equal(first.target_test, other.target_test)
    assert len(first.target_test) == 60 and len(first.target_train) == 60


def _bad(kind, root):
    rng = np.random.default_rng(0)
    good = {"x": rng.normal(size=(8, 3)).astype(np.float32)}
    labels, domains = np.arange(8) % 2, np.array(["s"] * 4 + ["t"] * 4)
    if kind == "lengths":
        return write_folder(root, {"x": good["x"][:7]}, labels, domains), "x.npy"
    if kind == "inf":
        bad = good["x"].copy()
        bad[0, 0] = np.inf
        return write_folder(root, {"x": bad}, labels, domains), "contains inf (first at sample 0)"
    if kind == "huge":
        bad = good["x"].astype(np.float64)
        bad[2, 0] = 1e300
        return write_folder(root, {"x": bad}, labels, domains), "beyond the float32 range (first at sample 2)"
    if kind == "labels":
        bad = labels + 0.5
        bad[2] = np.inf
        return write_folder(root, good, bad, domains), "labels.npy: targets contain inf"
    if kind == "several-targets":
        targets = np.stack([labels + 0.5, labels * 2.5], axis=1)
        targets[3, 1] = np.nan  # several targets: a row has all of them or none
        return write_folder(root, good, targets, domains), "sample 3 has 1 of its 2 targets missing"
    if kind == "no-labels":
        return write_folder(root, good, np.full(8, -1), domains), "labels.npy: no row has a label"
    if kind == "object-labels":
        return write_folder(root, good, np.array([1.5j] * 8), domains), "labels.npy: labels must be"
    if kind == "unclear-channels":
        images = np.zeros((8, 6, 5, 7), dtype=np.float32)
        return write_folder(root, {"img": images}, labels, domains), "cannot tell the channel axis"
    if kind == "missing-domains":
        write_folder(root, good, labels, domains)
        (root / "domains.npy").unlink()
        return root, "domains.npy: missing file"
    if kind == "corrupt":
        write_folder(root, good, labels, domains)
        (root / "modalities" / "x.npy").write_bytes(b"\x93NUMPY garbage")
        return root, "x.npy: not a readable .npy"
    if kind == "not-npy":
        write_folder(root, good, labels, domains)
        (root / "modalities" / "x.npy").write_text("1,2,3\n4,5,6\n")  # a CSV under a .npy name
        return root, "x.npy: not a .npy file (write it with numpy.save)"
    if kind == "single-value":
        return write_folder(root, {"x": np.array(3.0)}, labels, domains), "x.npy: holds a single value"
    if kind == "single-label":
        return write_folder(root, good, np.array(1), domains), "labels.npy: holds a single value"
    if kind == "empty-modalities":
        write_folder(root, {}, labels, domains)
        return root, "no modality files"
    if kind == "bad-split":
        return write_folder(root, good, labels, domains, np.array(["train"] * 7 + ["dev"])), "split.npy"
    raise AssertionError(kind)


BAD_KINDS = [
    "lengths",
    "huge",
    "inf",
    "labels",
    "several-targets",
    "no-labels",
    "object-labels",
    "unclear-channels",
    "missing-domains",
    "corrupt",
    "not-npy",
    "single-value",
    "single-label",
    "empty-modalities",
    "bad-split",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_folders_are_refused_naming_the_culprit(kind, tmp_path):
    root, culprit = _bad(kind, tmp_path / kind)
    with pytest.raises(DataError, match=None) as caught:
        load_folder(root)
    assert culprit in str(caught.value)
    assert "\n" not in str(caught.value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 3)),
        elements=st.floats(allow_nan=True, allow_infinity=True),
    ),
    n_labels=st.integers(0, 7),
)
def test_generated_arrays_load_cleanly_or_fail_with_data_error(tmp_path_factory, values, n_labels):
    root = write_folder(
        tmp_path_factory.mktemp("gen"),
        {"m": values},
        np.zeros(n_labels, dtype=int),
        np.array(["d"] * n_labels),
    )
    try:
        data = load_folder(root)
    except DataError as error:
        assert str(error).startswith(str(root)) and "\n" not in str(error)
    else:
        single = values.astype(np.float32)  # NaN in part of a sample is a missing value, which loads
        assert not np.isinf(single).any() and not np.isnan(single).all(1).any()
        assert len(values) == n_labels > 0
        assert data.modalities["m"].shape == values.shape


def test_float_labels_are_regression_targets_unless_classes_are_asked_for(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.normal(size=8)
    labels[3] = np.nan  # a missing target
    root = write_folder(
        tmp_path / "r", {"x": rng.normal(size=(8, 2))}, labels, np.array(["s"] * 4 + ["t"] * 4)
    )
    data = load_folder(root)
    assert data.objective == "regression" and data.n_classes == 1
    assert data.labelled.tolist() == [True, True, True, False, True, True, True, True]
    with pytest.raises(DataError, match="labels.npy: labels must be class values .*--objective regression"):
        load_folder(root, objective="classification")
    np.save(root / "labels.npy", np.nan_to_num(labels))
    with pytest.raises(DataError, match="labels.npy: labels must be class values .*--objective regression"):
        load_folder(root, objective="classification")
    many = write_folder(
        tmp_path / "m", {"x": rng.normal(size=(80, 2))}, np.arange(80.0), np.array(["s"] * 80)
    )
    assert load_folder(many).objective == "regression"  # 80 distinct integer values: a measurement
    few = write_folder(
        tmp_path / "f", {"x": rng.normal(size=(8, 2))}, np.arange(8.0) % 3, np.array(["s"] * 8)
    )
    assert load_folder(few).objective == "classification"
    # whole numbers with NaN where a label is unknown (a data frame's float column): still those classes,
    # the same task as with every label given, NaN a missing label
    unknown = np.arange(8.0) % 3
    unknown[[5, 7]] = np.nan
    np.save(few / "labels.npy", unknown)
    data = load_folder(few)
    assert data.objective == "classification" and data.classes == [0, 1, 2]
    assert data.labels.tolist() == [0, 1, 2, 0, 1, -1, 0, -1]
    unknown[2] = np.inf
    np.save(few / "labels.npy", unknown)
    with pytest.raises(DataError, match="labels.npy: labels contain inf"):
        load_folder(few)


def test_a_domain_the_folder_does_not_have_is_named_not_read_as_empty(toy_folder):
    """``--source 1 --target 2`` on domains ``a`` / ``b`` read no row, and the refusal used to name an
    empty modality instead of the domains."""
    with pytest.raises(DataError, match=r"domains.npy: no domain '1', '2' in this folder \(domains: a, b\)"):
        load_folder(toy_folder, domains=["1", "2"])
    assert set(load_folder(toy_folder, domains=["a"]).domains) == {"a"}


def test_a_source_without_a_target_points_to_erm(tmp_path):
    rng = np.random.default_rng(0)
    root = write_folder(
        tmp_path / "f", {"x": rng.normal(size=(8, 3))}, np.arange(8) % 2, np.array(["s"] * 4 + ["t"] * 4)
    )
    data = load_folder(root)
    with pytest.raises(
        DataError, match=r"give --source and --target \(domains: s, t\); or, .* --transfer erm$"
    ):
        data.resolve_task(None, ["s"], None)
    with pytest.raises(DataError, match=r"give --source and --target \(domains: s, t\)$"):
        data.resolve_task(None, None, None)
    assert data.resolve_task(None, ["s"], None, require_target=False).target == ()


def test_labels_saved_as_a_column_are_one_label_a_sample(tmp_path):
    from crossfuse.data.folder import read_labels

    np.save(tmp_path / "labels.npy", np.array([[3], [7], [3], [-1]]))
    labels, classes, objective = read_labels(tmp_path / "labels.npy", 4)
    assert objective == "classification" and classes == [3, 7] and labels.tolist() == [0, 1, 0, -1]
    from crossfuse.prediction_table import _label_values

    assert _label_values(tmp_path / "labels.npy", 4).tolist() == [3, 7, 3, None]  # crossfuse predict too
