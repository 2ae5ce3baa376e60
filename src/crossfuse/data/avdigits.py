"""AV-Digits: spoken digits (FSDD) paired by class with handwritten digit images from several sources.

Each domain is a (speaker, image source) pair written ``speaker+source``, e.g. ``george+mnist-census``,
or ``all+source``: the speakers not named elsewhere, whose recordings are shared out among the ``all+``
domains by take number (take ``t`` to the ``t mod k``-th of ``k``, in sorted order), so those domains
differ only in their image source. Every recording of the speaker is paired with an image of the same
digit drawn, without replacement and
seeded, from the image source, so no image appears twice within one built dataset. Audio becomes an MFCC
sequence ``(frames, 13)`` resampled to a fixed number of frames; images become ``(1, 16, 16)`` in [0, 1].
Both are cached on disk under a key of their settings, so a second build does not recompute them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile
import torch

from crossfuse.data.audio_features import mfcc, resample_frames
from crossfuse.data.dataset import MultimodalDataset, Task
from crossfuse.data.image_sources import IMAGE_SOURCES, load_image_source
from crossfuse.data.registry import cache_root, fetch, registry
from crossfuse.errors import DataError

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
FEATURE_VERSION = 1

TASKS = {
    "default": Task(
        ("george+mnist-census", "jackson+mnist-census", "lucas+mnist-census"),
        ("nicolas+usps", "theo+usps", "yweweler+usps"),
        "speakers george, jackson, lucas with MNIST Census-employee digits -> "
        "nicolas, theo, yweweler with USPS digits",
    ),
    "speakers": Task(
        ("george+mnist-census", "jackson+mnist-census", "lucas+mnist-census"),
        ("nicolas+mnist-census", "theo+mnist-census", "yweweler+mnist-census"),
        "speaker shift only: the image source is the same on both sides",
    ),
    "writers": Task(
        ("george+mnist-census", "jackson+mnist-census", "lucas+mnist-census"),
        ("nicolas+mnist-hs", "theo+mnist-hs", "yweweler+mnist-hs"),
        "speakers and MNIST writer population (Census employees -> high-school students)",
    ),
    "sklearn": Task(
        ("george+usps", "jackson+usps", "lucas+usps"),
        ("nicolas+sklearn", "theo+sklearn", "yweweler+sklearn"),
        "speakers and USPS -> scikit-learn 8x8 digits",
    ),
}


def _cached(name: str, settings: dict, compute) -> dict[str, np.ndarray]:
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / f"{name}-{key}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as stored:
            return {k: stored[k] for k in stored.files}
    arrays = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(path)  # atomic: a half-written cache is never read
    return arrays


def audio_features(n_frames: int = 40, n_coefficients: int = 13) -> dict[str, np.ndarray]:
    """MFCC sequences of all FSDD recordings: ``features (3000, n_frames, n_coefficients)``, ``digit``,
    ``speaker`` (index into :data:`SPEAKERS`) and ``take`` (the recording index, 0-49)."""
    settings = {"v": FEATURE_VERSION, "frames": n_frames, "coefficients": n_coefficients}

    def compute() -> dict[str, np.ndarray]:
        features, digits, speakers, takes = [], [], [], []
        for path in sorted(registry("fsdd")):
            match = re.fullmatch(r"recordings/(\d)_([a-z]+)_(\d+)\.wav", path)
            if match is None:
                continue
            signal, rate = soundfile.read(fetch("fsdd", path), dtype="float64")
            if signal.ndim != 1:
                raise DataError(f"fsdd/{path}: expected mono audio, found shape {signal.shape}")
            sequence = mfcc(torch.from_numpy(signal * 32768.0), rate, n_coefficients=n_coefficients)
            features.append(resample_frames(sequence, n_frames).float().numpy())
            digits.append(int(match[1]))
            speakers.append(SPEAKERS.index(match[2]))
            takes.append(int(match[3]))
        return {
            "features": np.stack(features),
            "digit": np.array(digits, dtype=np.int64),
            "speaker": np.array(speakers, dtype=np.int64),
            "take": np.array(takes, dtype=np.int64),
        }

    return _cached("fsdd-mfcc", settings, compute)


def image_features(source: str, size: int = 16) -> dict[str, np.ndarray]:
    """Images ``(N, 1, size, size)`` and labels of one image source, cached."""
    settings = {"v": FEATURE_VERSION, "source": source, "size": size}

    def compute() -> dict[str, np.ndarray]:
        images, labels = load_image_source(source, size)
        return {"images": images, "labels": labels}

    return _cached(f"images-{source}", settings, compute)


def all_domains() -> list[str]:
    return [f"{speaker}+{source}" for speaker in SPEAKERS for source in IMAGE_SOURCES]


#: The speaker part of a domain that shares out the recordings of every speaker not named elsewhere.
ALL_SPEAKERS = "all"


def parse_domain(domain: str) -> tuple[str, str]:
    speaker, _, source = domain.partition("+")
    if (speaker not in SPEAKERS and speaker != ALL_SPEAKERS) or source not in IMAGE_SOURCES:
        raise DataError(
            f"domain {domain!r}: AV-Digits domains are speaker+source with speaker in "
            f"{', '.join(SPEAKERS)} or {ALL_SPEAKERS!r}, and source in {', '.join(IMAGE_SOURCES)}"
        )
    return speaker, source


def recordings_of(domains: Sequence[str], audio: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The FSDD rows of each domain: a named speaker's recordings, or an ``all+`` domain's share of the
    recordings of the speakers no domain names."""
    parsed = {d: parse_domain(d) for d in domains}
    named = [s for s, _ in parsed.values() if s != ALL_SPEAKERS]
    if len(set(named)) != len(named):
        raise DataError(f"domains {list(domains)}: a speaker may appear in only one domain")
    shared = sorted(d for d, (s, _) in parsed.items() if s == ALL_SPEAKERS)
    rest = np.isin(audio["speaker"], [SPEAKERS.index(s) for s in SPEAKERS if s not in named])
    rows = {}
    for domain, (speaker, _) in parsed.items():
        if speaker == ALL_SPEAKERS:
            rows[domain] = np.flatnonzero(rest & (audio["take"] % len(shared) == shared.index(domain)))
        else:
            rows[domain] = np.flatnonzero(audio["speaker"] == SPEAKERS.index(speaker))
    return rows


def build_av_digits(domains: Sequence[str], seed: int = 0, n_frames: int = 40) -> MultimodalDataset:
    """Build AV-Digits for the given ``speaker+source`` domains.

    A speaker may appear in only one domain (its recordings are used once); ``all+source`` domains share
    the other speakers' recordings. Images are drawn per class without replacement from each source after
    a shuffle seeded by ``seed``.
    """
    parsed = [parse_domain(d) for d in domains]
    audio = audio_features(n_frames)
    domain_rows = recordings_of(domains, audio)
    rng = np.random.default_rng(seed)
    queues: dict[str, list[list[int]]] = {}
    audio_rows, image_arrays, labels, names = [], [], [], []
    for domain, (_, source) in sorted(zip(domains, parsed, strict=True)):
        pool = image_features(source)
        if source not in queues:
            queues[source] = [list(rng.permutation(np.flatnonzero(pool["labels"] == c))) for c in range(10)]
        for row in domain_rows[domain]:
            digit = int(audio["digit"][row])
            if not queues[source][digit]:
                raise DataError(
                    f"image source {source!r} has too few images of digit {digit} for domains {list(domains)}"
                )
            image_arrays.append(pool["images"][queues[source][digit].pop()])
            audio_rows.append(row)
            labels.append(digit)
            names.append(domain)
    return MultimodalDataset(
        name="av-digits",
        modalities={"audio": audio["features"][audio_rows], "image": np.stack(image_arrays)},
        labels=np.array(labels, dtype=np.int64),
        domains=np.array(names),
        tasks=dict(TASKS),
    )


def load_av_digits(
    task: str | None = None,
    source: Sequence[str] | None = None,
    target: Sequence[str] | None = None,
    seed: int = 0,
) -> MultimodalDataset:
    """AV-Digits built for one task (named, or given by its source and target domains)."""
    if task is not None and task not in TASKS:
        raise DataError(f"task {task!r}: not a task of dataset 'av-digits' (known: {', '.join(TASKS)})")
    base = TASKS[task or "default"]
    domains = list(source or base.source) + list(target or base.target)
    for domain in domains:
        parse_domain(domain)
    return build_av_digits(domains, seed=seed)


def prepare() -> Path:
    """Fetch and verify every AV-Digits file and compute the cached features."""
    audio_features()
    for source in IMAGE_SOURCES:
        image_features(source)
    return cache_root()
