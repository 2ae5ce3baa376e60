"""Fusion modules: ``Cls(input_dims, output_dim, **options)``, called on ``dict[str, Tensor]``."""

from crossfuse.fusion.early import EarlyFusion
from crossfuse.fusion.hierarchical import HierarchicalFusion
from crossfuse.fusion.late import LateFusion
from crossfuse.fusion.low_rank import LowRankFusion
from crossfuse.fusion.nuclear_norm import NuclearNormFusion
from crossfuse.fusion.tensor import TensorFusion

#: Names used by ``crossfuse run --fusion``.
FUSIONS = {
    "early": EarlyFusion,
    "late": LateFusion,
    "hierarchical": HierarchicalFusion,
    "tfn": TensorFusion,
    "lmf": LowRankFusion,
    "nuclear": NuclearNormFusion,
}

__all__ = [
    "FUSIONS",
    "EarlyFusion",
    "HierarchicalFusion",
    "LateFusion",
    "LowRankFusion",
    "NuclearNormFusion",
    "TensorFusion",
]
