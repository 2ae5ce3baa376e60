"""Label-free model selection: criteria as objects, one file each, registered by name in
:data:`crossfuse.registry.SELECTION_CRITERIA`; higher scores are better."""

from crossfuse.registry import SELECTION_CRITERIA
from crossfuse.selection.base import Evidence, ImportanceWeightedCriterion, SelectionCriterion
from crossfuse.selection.dev import DeepEmbeddedValidation, dev_risk
from crossfuse.selection.entropy import TargetEntropy, mean_entropy
from crossfuse.selection.guarded import GuardedSourceValidation
from crossfuse.selection.iwv import ImportanceWeightedValidation
from crossfuse.selection.snd import SoftNeighbourhoodDensity, soft_neighbourhood_density
from crossfuse.selection.source_val import SourceValidation

__all__ = [
    "SELECTION_CRITERIA",
    "DeepEmbeddedValidation",
    "Evidence",
    "GuardedSourceValidation",
    "ImportanceWeightedCriterion",
    "ImportanceWeightedValidation",
    "SelectionCriterion",
    "SoftNeighbourhoodDensity",
    "SourceValidation",
    "TargetEntropy",
    "dev_risk",
    "mean_entropy",
    "soft_neighbourhood_density",
]
