"""Registries of names: the one place that maps a name on the command line to a class.

Built-in methods register themselves in their own file (``@TRANSFERS.register("dann")``); the package
imports every module of its folder, so a new method is one new file. Plug-ins from other packages are
found through the entry-point groups ``crossfuse.fusions``, ``crossfuse.transfers`` and
``crossfuse.selection`` (``name = "module:Class"`` in the plug-in's metadata), on first use, in every
process (so bench workers see them too).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from crossfuse.errors import ConfigError

#: A built-in's registration line, ``@TRANSFERS.register("dann")``.
REGISTRATION = re.compile(r"""@[A-Z_]+\.register\(\s*["']([^"']+)["']\s*\)""")


class Registry(Mapping[str, Any]):
    """``name -> class`` for one kind of component (read-only mapping; built-ins first, then plug-ins).

    Parameters
    ----------
    kind
        What the names are of, for messages (``'transfer'``).
    package
        The package whose modules hold the built-ins (each registers itself when imported).
    group
        The entry-point group of plug-ins.
    order
        Built-in names in the order they are listed (help texts, suites); others follow, sorted.
    """

    def __init__(self, kind: str, package: str, group: str, order: tuple[str, ...] = ()) -> None:
        self.kind, self.package, self.group, self.order = kind, package, group, order
        self._entries: dict[str, Any] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[type], type]:
        """Class decorator: ``@REGISTRY.register("name")``."""

        def add(cls: type) -> type:
            known = self._entries.get(name)
            if known is not None and known is not cls:
                raise ConfigError(
                    f"{self.kind} {name!r}: registered twice ({known.__module__}, {cls.__module__})"
                )
            self._entries[name] = cls
            cls.registered_name = name
            return cls

        return add

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")
        for entry in entry_points(group=self.group):
            if entry.name in self._entries:
                continue  # a built-in name is never shadowed by a plug-in
            try:
                self._entries[entry.name] = entry.load()
            except Exception as error:
                raise ConfigError(
                    f"plug-in {self.kind} {entry.name!r} ({entry.value}) could not be loaded: "
                    f"{type(error).__name__}: {error}"
                ) from None

    def names(self) -> list[str]:
        self._load()
        return self._ordered(self._entries)

    def _ordered(self, names) -> list[str]:
        first = [n for n in self.order if n in names]
        return first + sorted(n for n in names if n not in self.order)

    def listed_names(self) -> list[str]:
        """The names, without importing any method (for help texts: importing the built-ins would
        import torch): read from the ``register("name")`` lines of the package's modules and from the
        plug-ins' entry-point metadata. The same names as :meth:`names` once loaded."""
        if self._loaded:
            return self.names()
        spec = importlib.util.find_spec(self.package)
        found = set()
        for folder in spec.submodule_search_locations or []:
            for path in Path(folder).glob("[!_]*.py"):
                found.update(REGISTRATION.findall(path.read_text()))
        found.update(entry.name for entry in entry_points(group=self.group))
        return self._ordered(found)

    def __getitem__(self, name: str) -> Any:
        self._load()
        if name not in self._entries:
            raise KeyError(name)
        return self._entries[name]

    def get_or_refuse(self, name: str, field: str | None = None) -> Any:
        """The class of ``name``, or a :class:`ConfigError` listing the known names."""
        self._load()
        if name not in self._entries:
            raise ConfigError(
                f"{field or self.kind} {name!r}: unknown (choose from {', '.join(self.names())})"
            )
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self.names())})"


#: Fusion modules (``crossfuse run --fusion``), each ``Cls(input_dims, output_dim, **options)``.
FUSIONS = Registry(
    "fusion",
    "crossfuse.fusion",
    "crossfuse.fusions",
    order=("early", "late", "hierarchical", "tfn", "lmf", "nuclear"),
)
#: Transfer methods (``crossfuse run --transfer``), each a :class:`~crossfuse.transfer.base.TransferMethod`.
TRANSFERS = Registry(
    "transfer",
    "crossfuse.transfer",
    "crossfuse.transfers",
    order=(
        "source-only",
        "finetune",
        "iw",
        "dann",
        "coral",
        "mmd",
        "mixup",
        "mcc",
        "cdan",
        "shot",
        "mimicry",
        "correspondence",
        "m3sda",
        "jan",
        "bnm",
        "vada",
        "iwdan",
        "erm",
        "coral-dg",
        "dann-dg",
        "mixup-dg",
        "vrex",
        "group-dro",
        "swa",
        "modality-dropout",
    ),  # fmt: skip
)
#: Label-free selection criteria (``crossfuse run --selection``), each a
#: :class:`~crossfuse.selection.base.SelectionCriterion`.
SELECTION_CRITERIA = Registry(
    "selection",
    "crossfuse.selection",
    "crossfuse.selection",
    order=("source-val", "iwv", "dev", "entropy", "snd", "source-val-guarded"),
)


def check_option_types(cls: Any, options: Mapping[str, Any], where: str) -> None:
    """Refuse an option whose value is not of the kind its default is (a number for a number, true or
    false for a flag), in one line naming ``where`` (``"transfer_options for 'dann'"``), before ``cls``
    is built: a text given for a weight would otherwise reach the maths and fail there with a
    traceback. Options without a default, or with a default of another kind, are left to ``cls``."""
    import inspect

    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # a class without a signature Python can read
        return
    for key, value in options.items():
        default = parameters[key].default if key in parameters else inspect.Parameter.empty
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {key} must be true or false (got {value!r})")
        elif isinstance(default, int | float) and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            raise ConfigError(f"{where}: {key} must be a number (got {value!r})")
