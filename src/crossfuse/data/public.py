"""Public data sets with a domain shift beyond AV-Digits, by name (``--data two-moons``), so that every
default is checked on data it was not tuned on:

- ``two-moons``: DANN's toy problem (Ganin et al., JMLR 2016, section 5.1): scikit-learn's two moons, 600
  a domain, the target rotated by 35 degrees; one modality ``xy`` (2 values).
- ``digits-halves``: scikit-learn's bundled 8x8 digits, the left and right halves as two modalities
  (``left``, ``right``, 32 pixels each); a seeded half of the digits is the source, the other half,
  rotated by 10 degrees with pixel noise (std 1 on the 0-16 scale), the target.
- ``usps-mnist``: USPS (source) and MNIST's test set (target, both writer populations), 2,000 digits a
  domain as 256-pixel vectors in [0, 1] (the files come from the data registry, checksummed).

Each is built the same way every time (seed 0), whatever the run's seed; its ``default`` task goes from
the first domain to the second.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from crossfuse.data.dataset import MultimodalDataset, Task


def _dataset(name: str, modalities: dict[str, np.ndarray], labels, domains, task: Task) -> MultimodalDataset:
    return MultimodalDataset(
        name=name,
        modalities={m: np.ascontiguousarray(x, dtype=np.float32) for m, x in modalities.items()},
        labels=np.asarray(labels, dtype=np.int64),
        domains=np.asarray(domains),
        tasks={"default": task},
        class_names=sorted(int(c) for c in np.unique(labels)),
    )


def two_moons(n_per_domain: int = 600, angle_degrees: float = 35.0, seed: int = 0) -> MultimodalDataset:
    from sklearn.datasets import make_moons

    source, source_labels = make_moons(n_per_domain, noise=0.1, random_state=seed)
    target, target_labels = make_moons(n_per_domain, noise=0.1, random_state=seed + 1)
    theta = np.deg2rad(angle_degrees)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = np.array([0.5, 0.25])
    target = (target - centre) @ rotation.T + centre
    return _dataset(
        "two-moons",
        {"xy": np.concatenate([source, target])},
        np.concatenate([source_labels, target_labels]),
        np.array(["source"] * n_per_domain + ["target"] * n_per_domain),
        Task(("source",), ("target",), f"two moons -> the same rotated by {angle_degrees:g} degrees"),
    )


def digits_halves_arrays(angle_degrees: float = 10.0, noise: float = 1.0, seed: int = 0):
    """``(left, right, labels, domains)``, the halves as ``(N, 8, 4)`` pixel arrays."""
    from scipy.ndimage import rotate
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    images, labels = images[order], digits.target[order]
    n_source = len(images) // 2
    target = rotate(images[n_source:], angle_degrees, axes=(1, 2), reshape=False, order=1)
    target = np.clip(target + rng.normal(scale=noise, size=target.shape), 0, 16)
    images = np.concatenate([images[:n_source], target])
    domains = np.array(["original"] * n_source + ["rotated"] * (len(images) - n_source))
    return images[:, :, :4], images[:, :, 4:], labels, domains


def digits_halves() -> MultimodalDataset:
    left, right, labels, domains = digits_halves_arrays()
    return _dataset(
        "digits-halves",
        {"left": left.reshape(len(left), -1), "right": right.reshape(len(right), -1)},
        labels,
        domains,
        Task(("original",), ("rotated",), "digits -> other digits rotated 10 degrees with noise"),
    )


def usps_mnist(per_domain: int = 2000, seed: int = 0) -> MultimodalDataset:
    from crossfuse.data.image_sources import load_image_source

    rng = np.random.default_rng(seed)
    parts = []
    for domain, sources in (("usps", ["usps"]), ("mnist", ["mnist-census", "mnist-hs"])):
        images, labels = zip(*(load_image_source(s) for s in sources), strict=True)
        images, labels = np.concatenate(images), np.concatenate(labels)
        chosen = rng.permutation(len(labels))[:per_domain]
        parts.append((images[chosen].reshape(len(chosen), -1), labels[chosen], [domain] * len(chosen)))
    return _dataset(
        "usps-mnist",
        {"pixels": np.concatenate([p[0] for p in parts])},
        np.concatenate([p[1] for p in parts]),
        np.array(sum((p[2] for p in parts), [])),
        Task(("usps",), ("mnist",), "USPS digits -> MNIST digits"),
    )


PUBLIC_DATASETS: dict[str, Callable[[], MultimodalDataset]] = {
    "two-moons": two_moons,
    "digits-halves": digits_halves,
    "usps-mnist": usps_mnist,
}
#: Every data set known by name (the rest of ``--data`` values are folders).
NAMED_DATASETS = ("av-digits", *PUBLIC_DATASETS)


def write_folder(dataset: MultimodalDataset, root) -> None:
    """Write ``dataset`` as a bring-your-own-data folder (what the benchmark scripts run on)."""
    from pathlib import Path

    root = Path(root)
    (root / "modalities").mkdir(parents=True, exist_ok=True)
    for name, array in dataset.modalities.items():
        np.save(root / "modalities" / f"{name}.npy", array)
    np.save(root / "labels.npy", dataset.labels)
    np.save(root / "domains.npy", dataset.domains)
