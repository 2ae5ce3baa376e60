import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_mirror() -> Path | None:
    env = os.environ.get("CROSSFUSE_DATA")
    if env and Path(env).is_dir():
        return Path(env)
    return SHARED_DATA if SHARED_DATA.is_dir() else None


requires_data = pytest.mark.skipif(data_mirror() is None, reason="no dataset mirror (../shared/data)")


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Features are cached in a fresh folder per test session; the data root is the shared mirror."""
    os.environ["CROSSFUSE_CACHE"] = str(tmp_path_factory.mktemp("feature-cache"))
    mirror = data_mirror()
    if mirror is not None:
        os.environ["CROSSFUSE_DATA"] = str(mirror)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    yield


def write_folder(root: Path, modalities: dict, labels, domains, split=None) -> Path:
    (root / "modalities").mkdir(parents=True, exist_ok=True)
    for name, array in modalities.items():
        np.save(root / "modalities" / f"{name}.npy", array)
    np.save(root / "labels.npy", labels)
    np.save(root / "domains.npy", domains)
    if split is not None:
        np.save(root / "split.npy", split)
    return root


def toy_arrays(shift: float = 1.5, n: int = 240, seed: int = 0):
    """Labels (three classes), domains (``a``, then ``b`` with its vectors moved by ``shift``), vectors
    ``(n, 6)`` and sequences ``(n, 5, 4)`` with a learnable signal."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    domains = np.where(np.arange(n) < n // 2, "a", "b")
    moved = np.where(domains == "b", shift, 0.0)[:, None]
    vec = rng.normal(size=(n, 6)) + np.eye(3)[labels] @ rng.normal(size=(3, 6)) * 2 + moved
    seq = rng.normal(size=(n, 5, 4)) + labels[:, None, None] * 0.8
    return labels, domains, vec, seq


def gain_offset_arrays(seed: int, n: int = 400):
    """Two classes in domains ``s`` (first half) and ``t``, whose vectors ``(n, 4)`` are ``0.5 x + 3`` of
    the source's distribution (skada's ``conditional_shift`` in spirit): labels, domains, vectors."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    domains = np.where(np.arange(n) < n // 2, "s", "t")
    x = rng.normal(size=(n, 4)) + np.where(labels == 1, 1.5, -1.5)[:, None]
    x[domains == "t"] = 0.5 * x[domains == "t"] + 3.0
    return labels, domains, x


@pytest.fixture
def toy_folder(tmp_path):
    """A small two-modality, two-domain folder with a learnable signal and a shift."""
    labels, domains, vec, seq = toy_arrays()
    return write_folder(tmp_path / "toy", {"vec": vec.astype(np.float32), "seq": seq}, labels, domains)
