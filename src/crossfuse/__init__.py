"""crossfuse: multimodal fusion and cross-domain transfer in PyTorch.

``crossfuse.load(RUN)`` gives the trained model of a run folder (:class:`~crossfuse.predictor.TrainedModel`,
with ``predict`` and ``predict_proba``). Names are imported on first use, so ``import crossfuse`` (and the
command line's start-up) stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crossfuse")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

_EXPORTS = {
    "load": "crossfuse.predictor",
    "TrainedModel": "crossfuse.predictor",
    "load_folder": "crossfuse.data.folder",
    "MultimodalModel": "crossfuse.model",
    "RunConfig": "crossfuse.config",
    "run_experiment": "crossfuse.runner",
    "CrossfuseError": "crossfuse.errors",
    "DataError": "crossfuse.errors",
    "ConfigError": "crossfuse.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'crossfuse' has no attribute {name!r}")
