"""Per-domain standardisation (``--normalization domain``): each source domain's rows mapped onto the
target's moments, the model keeping the target's statistics; checked against the formula computed by
hand, on a shift it undoes, and for its refusals."""

import numpy as np
import pytest
import torch

import crossfuse
from crossfuse.config import load_config
from crossfuse.errors import ConfigError
from crossfuse.runner import build, prepare_task
from tests.conftest import gain_offset_arrays, toy_arrays, write_folder


def by_hand(x: np.ndarray, rows: np.ndarray, own: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(x - mean_d) / std_d * std_T + mean_T`` per feature (dense Gaussian columns: the scale is the
    standard deviation), from the statistics of the ``own`` and ``target`` rows."""
    x = x.astype(np.float64)
    mean_d, std_d = x[own].mean(0), x[own].std(0)
    mean_t, std_t = x[target].mean(0), x[target].std(0)
    return (x[rows] - mean_d) / std_d * std_t + mean_t


@pytest.fixture
def three_domains(tmp_path):
    """Vectors in three domains with their own gains and offsets; domain ``c`` the target."""
    rng = np.random.default_rng(3)
    n = 300
    labels = rng.integers(0, 3, n)
    domains = np.array(["a", "b", "c"])[np.arange(n) % 3]
    gain = np.select([domains == "a", domains == "b"], [1.0, 2.5], 0.6)[:, None]
    offset = np.select([domains == "a", domains == "b"], [0.0, -4.0], 3.0)[:, None]
    clean = rng.normal(size=(n, 5)) + np.eye(3)[labels] @ rng.normal(size=(3, 5)) * 2
    vec = (clean * gain + offset).astype(np.float32)
    return write_folder(tmp_path / "three", {"vec": vec}, labels, domains), vec


def test_each_source_domain_is_mapped_onto_the_target_moments_as_the_formula_says(three_domains):
    folder, vec = three_domains
    config = load_config(
        None, {"data": str(folder), "source": ["a", "b"], "target": ["c"], "normalization": "domain"}
    )
    dataset, task, split = prepare_task(config)
    mapped = dataset.modalities["vec"]
    for domain in ("a", "b"):
        rows = np.flatnonzero(dataset.domains == domain)
        own = split.source_train[dataset.domains[split.source_train] == domain]
        np.testing.assert_allclose(
            mapped[rows], by_hand(vec, rows, own, split.target_train), rtol=1e-5, atol=1e-5
        )
    target = np.flatnonzero(dataset.domains == "c")
    np.testing.assert_array_equal(mapped[target], vec[target])  # the target's rows are not touched
    # A domain's training rows now have the target's moments (validation rows were mapped alike).
    train_a = split.source_train[dataset.domains[split.source_train] == "a"]
    np.testing.assert_allclose(mapped[train_a].mean(0), vec[split.target_train].mean(0), atol=1e-4)
    np.testing.assert_allclose(mapped[train_a].std(0), vec[split.target_train].std(0), rtol=1e-4)
    # The default leaves every row as it was.
    plain, _, _ = prepare_task(config.model_copy(update={"normalization": "auto"}))
    np.testing.assert_array_equal(plain.modalities["vec"], vec)


def test_the_model_keeps_the_target_statistics_and_standardises_each_domain_by_its_own(three_domains):
    folder, vec = three_domains
    config = load_config(
        None,
        {"data": str(folder), "source": ["a", "b"], "target": ["c"], "normalization": "domain", "epochs": 1},
    )
    lines = []
    run = build(config, log=lines.append)
    assert (
        "note: --normalization domain: each of 2 source domain(s) standardised by its own statistics, "
        "the model keeping the target's statistics" in lines
    )
    normalizer = run.model.normalizers["vec"]
    target = vec[run.split.target_train].astype(np.float64)
    assert normalizer.kind == "feature"
    np.testing.assert_allclose(normalizer.mean.numpy(), target.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(normalizer.std.numpy(), target.std(0), rtol=1e-5)
    # What reaches the encoder: each source domain standardised by its own training rows' moments.
    for domain in ("a", "b"):
        own = run.split.source_train[run.dataset.domains[run.split.source_train] == domain]
        standardised = normalizer(torch.from_numpy(run.dataset.modalities["vec"][own])).double().numpy()
        np.testing.assert_allclose(standardised.mean(0), 0.0, atol=1e-4)
        np.testing.assert_allclose(standardised.std(0), 1.0, rtol=1e-4)


def test_counts_keep_one_scale_a_modality_per_domain(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    labels = rng.integers(0, 2, n)
    domains = np.where(np.arange(n) % 2 == 0, "s", "t")
    counts = rng.poisson(3 + 2 * labels[:, None] + np.where(domains == "t", 4, 0)[:, None], size=(n, 6))
    folder = write_folder(tmp_path / "counts", {"words": counts.astype(np.float32)}, labels, domains)
    config = load_config(
        None, {"data": str(folder), "source": ["s"], "target": ["t"], "normalization": "domain"}
    )
    dataset, _, split = prepare_task(config)
    x = counts.astype(np.float64)
    own, target = split.source_train, split.target_train
    spread = lambda rows: np.sqrt(((x[rows] - x[rows].mean(0)) ** 2).mean())  # noqa: E731
    rows = np.flatnonzero(domains == "s")
    expected = (x[rows] - x[own].mean(0)) / spread(own) * spread(target) + x[target].mean(0)
    np.testing.assert_allclose(dataset.modalities["words"][rows], expected, rtol=1e-5, atol=1e-5)


def test_missing_values_and_missing_samples_stay_missing(tmp_path):
    labels, domains, vec, seq = toy_arrays()
    vec = vec.astype(np.float32)
    vec[3, 1] = np.nan  # a missing value in a source row
    seq = seq.astype(np.float32)
    seq[5] = np.nan  # a source sample without its sequence
    folder = write_folder(tmp_path / "holes", {"vec": vec, "seq": seq}, labels, domains)
    config = load_config(
        None, {"data": str(folder), "source": ["a"], "target": ["b"], "normalization": "domain"}
    )
    dataset, _, _ = prepare_task(config)
    assert (
        np.isnan(dataset.modalities["vec"][3, 1]) and np.isfinite(dataset.modalities["vec"][3, [0, 2]]).all()
    )
    assert np.isnan(dataset.modalities["seq"][5]).all()
    assert np.isfinite(dataset.modalities["seq"][6]).all()


def test_it_undoes_a_gain_and_offset_that_the_default_does_not(tmp_path):
    """skada's conditional shift in spirit: the target is the source's distribution times 0.5, plus 3."""
    labels, domains, x = gain_offset_arrays(seed=1)
    folder = write_folder(tmp_path / "gain", {"x": x.astype(np.float32)}, labels, domains)
    accuracy = {}
    for mode in ("auto", "domain"):
        settings = {"data": str(folder), "source": ["s"], "target": ["t"], "normalization": mode, "epochs": 5}
        accuracy[mode] = crossfuse.run(load_config(None, settings), log=lambda _: None).target_accuracy
    assert accuracy["domain"] > 0.9
    assert (
        accuracy["domain"] > accuracy["auto"] + 0.2
    )  # the default's source scale puts every target row on one side


def test_prediction_from_the_run_folder_uses_the_target_statistics(three_domains, tmp_path):
    folder, vec = three_domains
    out = tmp_path / "run"
    settings = {"data": str(folder), "source": ["a"], "target": ["c"], "normalization": "domain", "epochs": 2}
    crossfuse.run_experiment(load_config(None, settings), out, log=lambda _: None)
    trained = crossfuse.load(out)
    assert trained.card["normalization"] == "domain"
    run = build(load_config(None, settings), log=lambda _: None)
    np.testing.assert_allclose(
        trained.model.normalizers["vec"].mean.numpy(), run.model.normalizers["vec"].mean.numpy(), rtol=1e-6
    )


def test_several_targets_are_each_mapped_by_their_own_training_rows(three_domains):
    folder, vec = three_domains
    config = load_config(
        None, {"data": str(folder), "source": ["a"], "target": ["b", "c"], "normalization": "domain"}
    )
    dataset, _, split = prepare_task(config)
    for domain in ("a", "b", "c"):
        rows = np.flatnonzero(dataset.domains == domain)
        pool = split.source_train if domain == "a" else split.target_train
        own = pool[dataset.domains[pool] == domain]
        expected = by_hand(vec, rows, own, split.target_train)  # onto the pooled targets' moments
        np.testing.assert_allclose(dataset.modalities["vec"][rows], expected, rtol=1e-5, atol=1e-5)


def test_without_target_rows_the_held_out_domain_is_standardised_by_its_scored_rows(three_domains):
    """Domain generalisation: the reference is the pooled source; the held-out domain's own statistics
    come from its scored rows (transductive: values, never labels)."""
    folder, vec = three_domains
    settings = {"data": str(folder), "source": ["a", "b"], "target": ["c"], "transfer": "erm"}
    config = load_config(None, settings | {"normalization": "domain", "epochs": 1})
    dataset, _, split = prepare_task(config)
    assert len(split.target_train) == 0
    for domain in ("a", "b", "c"):
        rows = np.flatnonzero(dataset.domains == domain)
        pool = split.target_test if domain == "c" else split.source_train
        own = pool[dataset.domains[pool] == domain]
        expected = by_hand(vec, rows, own, split.source_train)
        np.testing.assert_allclose(dataset.modalities["vec"][rows], expected, rtol=1e-5, atol=1e-5)
    lines = []
    run = build(config, log=lines.append)
    assert any("each held-out domain by the statistics of its own scored rows" in line for line in lines)
    reference = vec[split.source_train].astype(np.float64)
    np.testing.assert_allclose(run.model.normalizers["vec"].mean.numpy(), reference.mean(0), atol=1e-4)
    np.testing.assert_allclose(run.model.normalizers["vec"].std.numpy(), reference.std(0), rtol=1e-4)


def test_a_modality_that_no_reference_row_has_is_refused(tmp_path):
    labels, domains, vec, seq = toy_arrays()
    seq = seq.astype(np.float32)
    seq[domains == "b"] = np.nan  # no target row has its sequence
    folder = write_folder(tmp_path / "lacking", {"vec": vec.astype(np.float32), "seq": seq}, labels, domains)
    config = load_config(
        None, {"data": str(folder), "source": ["a"], "target": ["b"], "normalization": "domain"}
    )
    with pytest.raises(ConfigError, match="modality 'seq' by the statistics of the unlabelled target rows"):
        prepare_task(config)


def test_the_estimator_takes_it_with_and_without_target_rows():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 160)
    x = rng.normal(size=(160, 3)) + y[:, None] * 2.0
    domain = np.where(np.arange(160) < 80, 1, -2)
    x[domain < 0] = 2.0 * x[domain < 0] - 5.0
    model = crossfuse.MultimodalClassifier(normalization="domain", epochs=5).fit(
        x, np.where(domain > 0, y, -1), sample_domain=domain
    )
    assert model.get_params()["normalization"] == "domain"
    assert model.score(x[domain < 0], y[domain < 0]) > 0.85
    pooled = crossfuse.MultimodalClassifier(normalization="domain", epochs=5).fit(x[:80], y[:80])
    assert pooled.score(x[:80], y[:80]) > 0.85  # one source domain: its own statistics, as auto's


def test_an_estimator_standardizes_on_a_new_domains_rows():
    labels, domains, x = gain_offset_arrays(seed=6)
    source, target = domains == "s", domains == "t"
    model = crossfuse.MultimodalClassifier(epochs=5).fit(x[source], labels[source])
    before = model.score(x[target], labels[target])
    assert model.standardize_on(x[target]) is model
    after = model.score(x[target], labels[target])
    assert after > 0.9 and after > before + 0.2


@pytest.mark.parametrize("targets", [[], ["t", "u"]])
def test_counts_keep_one_scale_when_the_model_is_fitted_on_mapped_rows(tmp_path, targets):
    """Without target rows (the pooled source is the reference) or with several targets (mapped target
    rows), the model's statistics come from mapped values, which are no longer integers: it keeps the
    kind the domains were mapped with, one scale for counts."""
    rng = np.random.default_rng(7)
    n = 300
    labels = rng.integers(0, 2, n)
    domains = np.array(["a", "b", "t", "u"])[np.arange(n) % 4]
    counts = rng.poisson(3 + 2 * labels[:, None] + (np.arange(n) % 4)[:, None], size=(n, 6))
    folder = write_folder(tmp_path / "counts", {"words": counts.astype(np.float32)}, labels, domains)
    settings = {"data": str(folder), "source": ["a", "b"], "normalization": "domain", "epochs": 1}
    settings |= {"target": targets or ["t"], "transfer": "source-only" if targets else "erm"}
    run = build(load_config(None, settings), log=lambda _: None)
    assert run.dataset.standardization_kinds == {"words": "global"}
    normalizer = run.model.normalizers["words"]
    assert normalizer.kind == "global"
    assert np.unique(normalizer.std.numpy()).size == 1  # one scale for the whole modality
