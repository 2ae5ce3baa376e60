"""Handwritten-digit image sources of AV-Digits, each brought to ``(N, 1, size, size)`` in ``[0, 1]``.

- ``mnist-hs`` / ``mnist-census``: the MNIST test set split by writer population with the QMNIST
  labels (column 1, NIST HSF series: 4 = high-school students, 0 = Census Bureau employees).
- ``usps``: USPS (Hull 1994), train and test parts pooled, 16x16.
- ``sklearn``: scikit-learn's bundled 8x8 digits (UCI optdigits), offline.
"""

from __future__ import annotations

import gzip

import numpy as np
import torch

from crossfuse.data.registry import fetch
from crossfuse.errors import DataError

IMAGE_SOURCES = ("mnist-hs", "mnist-census", "usps", "sklearn")


def _read_idx(path, expected_magic: int, dtype) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DataError(f"{path}: not an IDX file of the expected kind (magic {magic})")
    n_dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * n_dims).reshape(shape)


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(N, H, W)`` images to ``(N, 1, size, size)`` (antialiased bilinear)."""
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    if tensor.shape[-1] != size:
        tensor = torch.nn.functional.interpolate(
            tensor, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return tensor.clamp(0, 1).numpy()


def load_image_source(name: str, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 1, size, size)`` float32 in ``[0, 1]`` and labels ``(N,)`` int64 of one source."""
    if name in ("mnist-hs", "mnist-census"):
        images = _read_idx(fetch("mnist_t10k", "t10k-images-idx3-ubyte.gz"), 2051, np.uint8)
        labels = _read_idx(fetch("mnist_t10k", "t10k-labels-idx1-ubyte.gz"), 2049, np.uint8)
        extended = _read_idx(fetch("mnist_t10k", "qmnist-test-labels-idx2-int.gz"), 3074, ">i4")[:10000]
        if not np.array_equal(extended[:, 0], labels):
            raise DataError("qmnist-test-labels-idx2-int.gz: class column disagrees with MNIST t10k labels")
        keep = extended[:, 1] == (4 if name == "mnist-hs" else 0)
        return resize(images[keep] / 255.0, size), labels[keep].astype(np.int64)
    if name == "usps":
        import h5py

        with h5py.File(fetch("usps", "usps.h5"), "r") as handle:
            data = np.concatenate([handle["train/data"][:], handle["test/data"][:]])
            labels = np.concatenate([handle["train/target"][:], handle["test/target"][:]])
        return resize(data.reshape(-1, 16, 16), size), labels.astype(np.int64)
    if name == "sklearn":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return resize(digits.images / 16.0, size), digits.target.astype(np.int64)
    raise DataError(f"image source {name!r}: unknown (known: {', '.join(IMAGE_SOURCES)})")
