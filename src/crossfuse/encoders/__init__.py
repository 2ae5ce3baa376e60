"""One small encoder per kind of input, chosen from the shape of a modality's samples."""

from crossfuse.encoders.choose import encoder_for
from crossfuse.encoders.image import ImageEncoder
from crossfuse.encoders.sequence import SequenceEncoder
from crossfuse.encoders.vector import VectorEncoder

__all__ = ["ImageEncoder", "SequenceEncoder", "VectorEncoder", "encoder_for"]
