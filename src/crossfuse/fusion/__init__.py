"""Fusion modules: ``Cls(input_dims, output_dim, **options)``, called on ``dict[str, Tensor]``.

Each registers its name in :data:`crossfuse.registry.FUSIONS` in its own file.
"""

from crossfuse.fusion._common import FusionModule
from crossfuse.fusion.early import EarlyFusion
from crossfuse.fusion.hierarchical import HierarchicalFusion
from crossfuse.fusion.late import LateFusion
from crossfuse.fusion.low_rank import LowRankFusion
from crossfuse.fusion.nuclear_norm import NuclearNormFusion
from crossfuse.fusion.tensor import TensorFusion
from crossfuse.registry import FUSIONS

__all__ = [
    "FUSIONS",
    "EarlyFusion",
    "FusionModule",
    "HierarchicalFusion",
    "LateFusion",
    "LowRankFusion",
    "NuclearNormFusion",
    "TensorFusion",
]
