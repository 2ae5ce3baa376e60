"""Transfer methods: each one file, each a :class:`TransferMethod` registered by name in
:data:`crossfuse.registry.TRANSFERS`."""

from crossfuse.registry import TRANSFERS
from crossfuse.transfer.base import SourceOnly, StepOutputs, TransferMethod
from crossfuse.transfer.coral import CORAL
from crossfuse.transfer.dann import DANN
from crossfuse.transfer.finetune import FineTune
from crossfuse.transfer.importance_weighting import ImportanceWeighting
from crossfuse.transfer.mixup import DomainMixup
from crossfuse.transfer.mmd import MMD

__all__ = [
    "CORAL",
    "DANN",
    "MMD",
    "TRANSFERS",
    "DomainMixup",
    "FineTune",
    "ImportanceWeighting",
    "SourceOnly",
    "StepOutputs",
    "TransferMethod",
]
