"""crossfuse: multimodal fusion and cross-domain transfer in PyTorch.

The public API: ``crossfuse.run(config, model=None)`` trains and evaluates one run and returns a
:class:`RunResult`; ``crossfuse.build_model(shapes, n_classes, fusion, encoders=...)`` composes a
:class:`MultimodalModel` from default or user-given encoders; subclass :class:`TransferMethod` (override
``alignment_loss(outputs, progress)``) or :class:`SelectionCriterion` to write a method; the registries
:data:`FUSIONS`, :data:`TRANSFERS` and :data:`SELECTION_CRITERIA` map names to classes (plug-ins through
the entry-point groups ``crossfuse.fusions``, ``crossfuse.transfers``, ``crossfuse.selection``);
``crossfuse.load(RUN)`` gives the trained model of a run folder; :class:`MultimodalEstimator` is the
scikit-learn style estimator (``fit(X, y, sample_domain)``). Names are imported on first use, so
``import crossfuse`` (and the command line's start-up) stays cheap.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    # running and using models
    "run": "crossfuse.runner",
    "run_experiment": "crossfuse.runner",
    "load_dataset": "crossfuse.runner",
    "RunConfig": "crossfuse.config",
    "load_config": "crossfuse.config",
    "RunResult": "crossfuse.results",
    "load": "crossfuse.predictor",
    "TrainedModel": "crossfuse.predictor",
    "MultimodalEstimator": "crossfuse.estimator",
    "MultimodalClassifier": "crossfuse.estimator",
    "MultimodalRegressor": "crossfuse.estimator",
    # data
    "load_folder": "crossfuse.data.folder",
    "MultimodalDataset": "crossfuse.data.dataset",
    # models and fusions
    "MultimodalModel": "crossfuse.model",
    "build_model": "crossfuse.model",
    "FusionModule": "crossfuse.fusion",
    "EarlyFusion": "crossfuse.fusion",
    "LateFusion": "crossfuse.fusion",
    "HierarchicalFusion": "crossfuse.fusion",
    "TensorFusion": "crossfuse.fusion",
    "LowRankFusion": "crossfuse.fusion",
    "NuclearNormFusion": "crossfuse.fusion",
    # transfer methods
    "TransferMethod": "crossfuse.transfer",
    "StepOutputs": "crossfuse.transfer",
    "SourceOnly": "crossfuse.transfer",
    "FineTune": "crossfuse.transfer",
    "ImportanceWeighting": "crossfuse.transfer",
    "DANN": "crossfuse.transfer",
    "CORAL": "crossfuse.transfer",
    "MMD": "crossfuse.transfer",
    "DomainMixup": "crossfuse.transfer",
    # selection
    "SelectionCriterion": "crossfuse.selection",
    "Evidence": "crossfuse.selection",
    # training
    "Trainer": "crossfuse.train.loop",
    "TrainSettings": "crossfuse.train.loop",
    "train": "crossfuse.train.loop",
    "start_method": "crossfuse.train.lifecycle",
    # registries
    "FUSIONS": "crossfuse.registry",
    "TRANSFERS": "crossfuse.registry",
    "SELECTION_CRITERIA": "crossfuse.registry",
    # errors
    "CrossfuseError": "crossfuse.errors",
    "DataError": "crossfuse.errors",
    "ConfigError": "crossfuse.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    if name == "__version__":  # read on first use: importlib.metadata took 40 ms of `import crossfuse`
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("crossfuse")
        except PackageNotFoundError:  # a source tree that is not installed
            return "0+unknown"
    raise AttributeError(f"module 'crossfuse' has no attribute {name!r}")
