"""Registry of dataset files: where each comes from upstream and its sha256.

The data root is ``$CROSSFUSE_DATA`` when set (a mirror laid out as ``<dataset>/<path>``), else a user
cache folder. A file missing from the root is downloaded with :mod:`pooch` from its upstream URL (or from
``$CROSSFUSE_MIRROR_URL``, a base URL serving the same layout) and verified; a file whose sha256 differs
from the registry is refused.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import pooch

from crossfuse.errors import DataError

#: Upstream base URLs, pinned to the commits whose files the registry's checksums describe.
UPSTREAM = {
    "fsdd": "https://raw.githubusercontent.com/Jakobovski/free-spoken-digit-dataset/"
    "26eb9aaf76e81b692f806f9140c2d2777410d7a1/",
    "mnist_t10k": {
        "t10k-images-idx3-ubyte.gz": "https://raw.githubusercontent.com/kelas/mnist/"
        "283b387221ab46655e600cfcc25d843bb14292b9/",
        "t10k-labels-idx1-ubyte.gz": "https://raw.githubusercontent.com/kelas/mnist/"
        "283b387221ab46655e600cfcc25d843bb14292b9/",
        "qmnist-test-labels-idx2-int.gz": "https://raw.githubusercontent.com/facebookresearch/qmnist/"
        "94061367ec2e099ea18c553c75727ecf849ddb9b/",
    },
    "usps": {
        "usps.h5": "https://raw.githubusercontent.com/niuers/Learning-From-Data-A-Short-Course/"
        "35684e893b63bf4039bafcc6d34fe935851baf9a/data/",
    },
}


@dataclass(frozen=True)
class RegisteredFile:
    """One upstream file: its dataset, path inside the dataset folder, URL and sha256."""

    dataset: str
    path: str
    sha256: str

    @property
    def url(self) -> str:
        mirror = os.environ.get("CROSSFUSE_MIRROR_URL")
        if mirror:
            return f"{mirror.rstrip('/')}/{self.dataset}/{self.path}"
        base = UPSTREAM[self.dataset]
        if isinstance(base, dict):
            return base[Path(self.path).name] + self.path
        return base + self.path


@cache
def registry(dataset: str) -> dict[str, RegisteredFile]:
    """All registered files of ``dataset``, keyed by their path inside the dataset folder."""
    if dataset not in UPSTREAM:
        raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(UPSTREAM))}")
    text = resources.files("crossfuse.data").joinpath(f"registry/{dataset}.txt").read_text()
    files = {}
    for line in text.splitlines():
        if line.strip():
            digest, path = line.split(maxsplit=1)
            files[path] = RegisteredFile(dataset, path, digest)
    return files


def data_root() -> Path:
    """``$CROSSFUSE_DATA`` if set, else the user cache folder for crossfuse data."""
    env = os.environ.get("CROSSFUSE_DATA")
    return Path(env) if env else Path(pooch.os_cache("crossfuse")) / "data"


def cache_root() -> Path:
    """Where derived features are cached: ``$CROSSFUSE_CACHE`` or the user cache folder."""
    env = os.environ.get("CROSSFUSE_CACHE")
    return Path(env) if env else Path(pooch.os_cache("crossfuse")) / "features"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(dataset: str, path: str, verify: bool = True) -> Path:
    """Return the local path of a registered file, downloading and verifying it if missing.

    Parameters
    ----------
    dataset, path
        The file's dataset and its path inside that dataset's folder.
    verify
        Check the sha256 of a file already present (downloads are always checked).

    Raises
    ------
    DataError
        If the file is not registered, cannot be downloaded, or its checksum is wrong.
    """
    entry = registry(dataset).get(path)
    if entry is None:
        raise DataError(f"{dataset}/{path}: not a registered file of dataset {dataset!r}")
    local = data_root() / dataset / path
    if local.exists():
        if verify:
            found = sha256_of(local)
            if found != entry.sha256:
                raise DataError(
                    f"{local}: sha256 mismatch (expected {entry.sha256}, found {found}); "
                    "the file is corrupt or not the registered version: delete it to download it again"
                )
        return local
    try:
        pooch.retrieve(
            entry.url,
            known_hash=f"sha256:{entry.sha256}",
            fname=local.name,
            path=local.parent,
            progressbar=False,
        )
    except ValueError as error:  # pooch's hash mismatch
        raise DataError(f"{entry.url}: downloaded file refused: {error}".replace("\n", " ")) from None
    except Exception as error:  # network, HTTP status, permissions
        raise DataError(f"{dataset}/{path}: cannot download from {entry.url}: {error}") from None
    return local


def verify_dataset(dataset: str) -> list[str]:
    """Paths of ``dataset`` that are missing or whose checksum is wrong under the data root."""
    problems = []
    for path, entry in registry(dataset).items():
        local = data_root() / dataset / path
        if not local.exists():
            problems.append(f"{local}: missing")
        elif sha256_of(local) != entry.sha256:
            problems.append(f"{local}: sha256 mismatch")
    return problems
