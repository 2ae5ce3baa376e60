"""The in-memory form every dataset takes: one array per modality, labels, domains, an optional split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from crossfuse.errors import DataError

SPLIT_VALUES = ("train", "test", "all")


@dataclass(frozen=True)
class Task:
    """A named pair of domain lists: labelled source domains and unlabelled target domains."""

    source: tuple[str, ...]
    target: tuple[str, ...]
    description: str = ""


@dataclass
class MultimodalDataset:
    """Samples with several modalities, a class label and a domain name each.

    Attributes
    ----------
    modalities
        ``name -> array`` of shape ``(N, *shape_m)``, float32. ``(N, D)`` is a vector, ``(N, T, F)`` a
        sequence of ``T`` frames, ``(N, C, H, W)`` an image.
    labels
        ``(N,)`` int64 class indices in ``[0, n_classes)``; ``-1`` marks a row without a label.
    domains
        ``(N,)`` domain names (strings).
    split
        ``(N,)`` of ``'train'``, ``'test'`` or ``'all'``, or ``None`` for a seeded split.
    tasks
        Named source/target tasks; ``'default'`` is used when no task or domains are given.
    class_names
        The user's label value of each class index (integers or strings); ``None`` means ``0..C-1``.
    layouts
        ``name -> 'channels_last'`` for image modalities that were given as ``(N, H, W, C)`` and turned
        into ``(N, C, H, W)``.
    objective
        ``'classification'`` (``labels`` are class indices) or ``'regression'`` (``labels`` are float
        targets, NaN where missing).
    unread_domains
        Domains of the data whose rows were not read (a run that does not use them never loads them).
    standardization_kinds
        ``modality -> 'feature' | 'global'``: the kind of statistics ``--normalization domain`` mapped
        the domains with (:mod:`crossfuse.data.domain_moments`), which the model's standardisation keeps
        (the mapped values no longer show it: counts are no longer integers).
    """

    name: str
    modalities: dict[str, np.ndarray]
    labels: np.ndarray
    domains: np.ndarray
    split: np.ndarray | None = None
    tasks: dict[str, Task] = field(default_factory=dict)
    class_names: list | None = None
    layouts: dict[str, str] = field(default_factory=dict)
    objective: str = "classification"
    unread_domains: tuple[str, ...] = ()
    standardization_kinds: dict[str, str] = field(default_factory=dict)

    @property
    def n_targets(self) -> int:
        """How many values a regression predicts a row (the columns of ``labels``); 1 otherwise."""
        return self.labels.shape[1] if self.objective == "regression" and self.labels.ndim == 2 else 1

    @property
    def n_classes(self) -> int:
        if self.objective == "regression":
            return 1
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.labels.max()) + 1

    def rows(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The chosen rows of every modality."""
        return {m: x[indices] for m, x in self.modalities.items()}

    @property
    def labelled(self) -> np.ndarray:
        """``(N,)`` whether each row has a label (class index ``>= 0``; a regression target not NaN)."""
        if self.objective == "regression":
            known = ~np.isnan(self.labels)
            return known if known.ndim == 1 else known.all(1)  # a row has all its targets or none
        return self.labels >= 0

    @property
    def classes(self) -> list:
        """The user's label value of each class index."""
        return list(self.class_names) if self.class_names is not None else list(range(self.n_classes))

    @property
    def domain_names(self) -> list[str]:
        return sorted(set(self.domains.tolist()) | set(self.unread_domains))

    def __len__(self) -> int:
        return len(self.labels)

    def resolve_task(
        self,
        task: str | None,
        source: Sequence[str] | None,
        target: Sequence[str] | None,
        require_target: bool = True,
    ) -> Task:
        """The task to run: explicit ``source``/``target`` domains override the named ``task``.

        ``require_target=False`` (domain generalisation) accepts a task without target domains: the
        model is then trained and scored on the source domains alone.
        """
        if task is not None and task not in self.tasks:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise DataError(f"task {task!r}: not a task of dataset {self.name!r} (known: {known})")
        base = self.tasks.get(task or "default")
        chosen_source = tuple(source) if source else (base.source if base else ())
        chosen_target = tuple(target) if target else (base.target if base else ())
        if not chosen_source or (require_target and not chosen_target):
            alone = (
                "; or, to train on the source domains alone, --transfer erm"
                if chosen_source and not chosen_target
                else ""
            )
            raise DataError(
                f"dataset {self.name!r} has no default task: give --source and --target "
                f"(domains: {', '.join(self.domain_names)}){alone}"
            )
        known = set(self.domain_names)
        for role, names in (("source", chosen_source), ("target", chosen_target)):
            for name in names:
                if name not in known:
                    raise DataError(
                        f"{role} domain {name!r}: not in dataset {self.name!r} "
                        f"(domains: {', '.join(self.domain_names)})"
                    )
        overlap = set(chosen_source) & set(chosen_target)
        if overlap:
            raise DataError(f"domains {sorted(overlap)} are both source and target")
        return Task(chosen_source, chosen_target)


@dataclass(frozen=True)
class TaskSplit:
    """Row indices of one run: labelled source train/val, unlabelled target train, target test.

    ``sample_domain`` follows skada: a positive integer per source domain, negative per target domain.
    """

    source_train: np.ndarray
    source_val: np.ndarray
    target_train: np.ndarray
    target_test: np.ndarray
    sample_domain: np.ndarray


def hold_out(rng: np.random.Generator, rows: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """A seeded ``fraction`` of ``rows`` (at least one row when there are any) and the rest, each sorted."""
    shuffled = rng.permutation(rows)
    n_held = min(len(rows), max(1, int(round(fraction * len(rows)))))
    return np.sort(shuffled[:n_held]), np.sort(shuffled[n_held:])


def split_task(
    dataset: MultimodalDataset,
    task: Task,
    seed: int,
    val_fraction: float = 0.2,
    target_test_fraction: float = 0.5,
    unseen_target: bool = False,
) -> TaskSplit:
    """Split the rows of ``task`` into the four sets a run uses.

    With ``unseen_target`` (domain generalisation) no target row is trained on: the target training set is
    empty and every target row (marked ``test``/``all`` when ``split.npy`` is given) is evaluated; a task
    without target domains has no target rows at all.

    With ``dataset.split``: source rows marked ``train``/``all`` are labelled (a seeded ``val_fraction``
    of them held out for label-free model selection), target rows marked ``train``/``all`` are the
    unlabelled training stream and target rows marked ``test``/``all`` are evaluated (``all`` is the
    transductive protocol). Without it, a seeded split: ``target_test_fraction`` of target rows are
    held out for evaluation. Source rows without a label (``-1``) are left out; target rows without one
    still join the unlabelled stream and are predicted, but cannot be scored.
    """
    rng = np.random.default_rng(seed)
    sample_domain = np.zeros(len(dataset), dtype=np.int64)
    for i, name in enumerate(task.source):
        sample_domain[dataset.domains == name] = i + 1
    for i, name in enumerate(task.target):
        sample_domain[dataset.domains == name] = -(i + 1)
    source_rows = np.flatnonzero(sample_domain > 0)
    target_rows = np.flatnonzero(sample_domain < 0)
    if dataset.split is not None:
        split = dataset.split
        labelled = source_rows[np.isin(split[source_rows], ("train", "all"))]
        labelled = labelled[dataset.labelled[labelled]]
        target_train = target_rows[np.isin(split[target_rows], ("train", "all"))]
        target_test = target_rows[np.isin(split[target_rows], ("test", "all"))]
        if unseen_target:
            target_train = target_rows[:0]
    elif unseen_target:
        labelled = source_rows[dataset.labelled[source_rows]]
        target_train, target_test = target_rows[:0], target_rows
    else:
        labelled = source_rows[dataset.labelled[source_rows]]
        shuffled = rng.permutation(target_rows)
        n_test = max(1, int(round(target_test_fraction * len(shuffled))))
        target_test, target_train = np.sort(shuffled[:n_test]), np.sort(shuffled[n_test:])
    if unseen_target:  # DomainBed's training-domain validation: the same share of every source
        parts = [
            hold_out(rng, labelled[sample_domain[labelled] == i + 1], val_fraction)
            for i in range(len(task.source))
        ]
        source_val = np.sort(np.concatenate([val for val, _ in parts]))
        source_train = np.sort(np.concatenate([train for _, train in parts]))
    else:
        source_val, source_train = hold_out(rng, labelled, val_fraction)
    needed = [("source training", source_train)]
    if not unseen_target:
        needed += [("target training", target_train), ("target test", target_test)]
    elif task.target:
        needed.append(("target test", target_test))
    for label, rows in needed:
        if len(rows) == 0:
            hint = (
                "; target rows marked train or all are the unlabelled rows a method adapts on: to train on "
                "the source alone and score every target row, use --transfer erm"
                if label == "target training" and len(target_test)
                else ""
            )
            raise DataError(
                f"the {label} set of this task is empty: check the domains, split.npy and the labels "
                f"(source rows need one){hint}"
            )
    return TaskSplit(source_train, source_val, target_train, target_test, sample_domain)
