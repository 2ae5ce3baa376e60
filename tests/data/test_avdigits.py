import numpy as np
import pytest

from crossfuse.data import avdigits
from crossfuse.data.dataset import split_task
from crossfuse.errors import DataError
from tests.conftest import requires_data

pytestmark = requires_data


@pytest.fixture(scope="module")
def default_set():
    return avdigits.load_av_digits(seed=0)


def test_sizes_shapes_and_domains(default_set):
    task = avdigits.TASKS["default"]
    assert len(default_set) == 3000
    assert default_set.modalities["audio"].shape == (3000, 40, 13)
    assert default_set.modalities["image"].shape == (3000, 1, 16, 16)
    assert default_set.modalities["image"].min() >= 0 and default_set.modalities["image"].max() <= 1
    assert all(np.isfinite(x).all() for x in default_set.modalities.values())
    assert default_set.domain_names == sorted(task.source + task.target)
    names, counts = np.unique(default_set.domains, return_counts=True)
    assert (counts == 500).all()


def test_classes_balanced_in_every_domain(default_set):
    for domain in default_set.domain_names:
        assert (np.bincount(default_set.labels[default_set.domains == domain], minlength=10) == 50).all()


def test_pairs_share_the_class_and_images_are_not_reused(default_set):
    census = avdigits.image_features("mnist-census")
    images = default_set.modalities["image"]
    rows = np.flatnonzero(np.char.endswith(default_set.domains.astype(str), "mnist-census"))
    flat_pool = census["images"].reshape(len(census["images"]), -1)
    for row in rows[:40]:
        match = np.flatnonzero((flat_pool == images[row].reshape(1, -1)).all(1))
        assert len(match) >= 1
        assert census["labels"][match[0]] == default_set.labels[row]
    unique = np.unique(images[rows].reshape(len(rows), -1), axis=0)
    assert len(unique) == len(rows)


def test_same_seed_same_data_other_seed_other_pairing(default_set):
    again = avdigits.load_av_digits(seed=0)
    other = avdigits.load_av_digits(seed=1)
    for m in default_set.modalities:
        np.testing.assert_array_equal(again.modalities[m], default_set.modalities[m])
    np.testing.assert_array_equal(other.modalities["audio"], default_set.modalities["audio"])
    assert not np.array_equal(other.modalities["image"], default_set.modalities["image"])
    np.testing.assert_array_equal(other.labels, default_set.labels)


def test_features_are_cached_between_builds(monkeypatch):
    avdigits.audio_features()
    monkeypatch.setattr(avdigits, "mfcc", lambda *a, **k: pytest.fail("recomputed features"))
    assert avdigits.audio_features()["features"].shape == (3000, 40, 13)


def test_split_is_seeded_disjoint_and_covers_the_task(default_set):
    task = default_set.resolve_task(None, None, None)
    split = split_task(default_set, task, seed=3)
    again = split_task(default_set, task, seed=3)
    np.testing.assert_array_equal(split.target_test, again.target_test)
    parts = [split.source_train, split.source_val, split.target_train, split.target_test]
    joined = np.concatenate(parts)
    assert len(joined) == len(np.unique(joined)) == 3000
    assert (split.sample_domain[split.source_train] > 0).all()
    assert (split.sample_domain[split.target_test] < 0).all()
    assert len(split.source_val) == 300


def test_every_named_task_builds():
    for name, task in avdigits.TASKS.items():
        data = avdigits.load_av_digits(task=name)
        assert set(data.domain_names) == set(task.source + task.target)


def test_all_speakers_domains_share_out_the_other_speakers_recordings():
    domains = ["all+mnist-hs", "all+usps", "all+sklearn", "theo+mnist-census"]
    data = avdigits.build_av_digits(domains, seed=0)
    audio = avdigits.audio_features()
    rows = avdigits.recordings_of(domains, audio)
    shared = [rows[d] for d in domains[:3]]
    assert sum(len(r) for r in shared) == 2500, "the five unnamed speakers' recordings, each used once"
    assert len(set(np.concatenate(shared).tolist())) == 2500
    theo = avdigits.SPEAKERS.index("theo")
    assert not any((audio["speaker"][r] == theo).any() for r in shared)
    for r in shared:  # every speaker and every digit in every shared domain, in even shares
        assert set(audio["speaker"][r].tolist()) == set(range(6)) - {theo}
        assert np.bincount(audio["digit"][r], minlength=10).min() >= 80
    assert {d: int((data.domains == d).sum()) for d in domains} == {d: len(rows[d]) for d in domains}


def test_bad_domains_are_refused():
    with pytest.raises(DataError, match="speaker\\+source"):
        avdigits.load_av_digits(source=["bob+usps"], target=["theo+usps"])
    with pytest.raises(DataError, match="only one domain"):
        avdigits.load_av_digits(source=["theo+usps"], target=["theo+sklearn"])
    with pytest.raises(DataError, match="not a task"):
        avdigits.load_av_digits(task="nope")
