from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from crossfuse.encoders.image import ImageEncoder
from crossfuse.encoders.sequence import SequenceEncoder
from crossfuse.encoders.vector import VectorEncoder
from crossfuse.errors import DataError


def encoder_for(
    name: str, sample_shape: Sequence[int], output_dim: int = 64, dropout: float = 0.1
) -> nn.Module:
    """The encoder for one modality from the shape of one sample.

    ``(d,)`` -> :class:`VectorEncoder`, ``(T, F)`` -> :class:`SequenceEncoder`,
    ``(C, H, W)`` -> :class:`ImageEncoder`.
    """
    shape = tuple(int(s) for s in sample_shape)
    if len(shape) == 1:
        return VectorEncoder(shape[0], output_dim, dropout=dropout)
    if len(shape) == 2:
        return SequenceEncoder(shape[1], output_dim, dropout=dropout)
    if len(shape) == 3:
        return ImageEncoder(shape[0], output_dim, dropout=dropout)
    raise DataError(
        f"modality {name!r}: samples of shape {shape} are not supported "
        "(use (d,) vectors, (T, F) sequences or (C, H, W) images)"
    )
