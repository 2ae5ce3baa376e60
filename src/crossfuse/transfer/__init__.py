"""Transfer methods: each one file, each a :class:`TransferMethod`."""

from crossfuse.transfer.base import SourceOnly, StepOutputs, TransferMethod

#: Names used by ``crossfuse run --transfer``.
TRANSFERS: dict[str, type[TransferMethod]] = {
    "source-only": SourceOnly,
}

__all__ = ["TRANSFERS", "SourceOnly", "StepOutputs", "TransferMethod"]
