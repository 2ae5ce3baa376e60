"""Run configuration: one validated object from a YAML file (``yaml.safe_load``) and command-line options."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crossfuse.errors import ConfigError

#: Input scalings (``--normalization``; :mod:`crossfuse.normalize` implements them).
NORMALIZATIONS = ("auto", "feature", "global", "domain", "quantile", "none")


class RunConfig(BaseModel):
    """Everything that determines a run; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    data: str = "av-digits"
    task: str | None = None
    source: list[str] | None = None
    target: list[str] | None = None
    modalities: list[str] | None = None
    fusion: str = "late"
    transfer: str = "source-only"
    seed: int = 0
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(8, ge=1)
    weight_averaging: str = "none"
    ema_decay: float = Field(0.99, gt=0, lt=1)
    hidden_dim: int = Field(64, ge=2)
    dropout: float = Field(0.1, ge=0, lt=1)
    modality_dropout: float = Field(0.0, ge=0, lt=1)
    device: str = "auto"
    normalization: str = "auto"
    missing_indicators: bool = False
    objective: str = "auto"
    regression_loss: str = "mse"
    regression_margin: float = Field(0.1, ge=0)
    class_weight: Literal["none", "balanced"] | dict[str, float] = "none"
    selection: str = "source-val"
    record_selection: bool = False
    fusion_options: dict[str, Any] = Field(default_factory=dict)
    transfer_options: dict[str, Any] = Field(default_factory=dict)
    target_shots: int | None = Field(None, ge=1)

    @field_validator("source", "target", "modalities", mode="before")
    @classmethod
    def names_as_a_list(cls, value: Any) -> Any:
        """``source: a`` or ``source: a,b`` in a YAML file (or a dict of settings), read as the command line
        reads ``--source a,b``."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("class_weight", mode="before")
    @classmethod
    def class_values_as_text(cls, value: Any) -> Any:
        """``{0: 1000, 1: 0.5}`` (a YAML file's or scikit-learn's integer class values) keyed by text, as
        the classes are matched."""
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    def train_settings(self):
        """The :class:`~crossfuse.train.loop.TrainSettings` part of this configuration."""
        from dataclasses import fields

        from crossfuse.train.loop import TrainSettings

        return TrainSettings(
            **{
                f.name: getattr(self, f.name)
                for f in fields(TrainSettings)
                if f.name in type(self).model_fields
            }
        )


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    # a union's member is named in the location ("class_weight.literal['none','balanced']"): not a field
    parts = [str(part) for part in first["loc"] if isinstance(part, int) or str(part).isidentifier()]
    where = ".".join(parts) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key {where!r} (known: {', '.join(RunConfig.model_fields)})"
    return f"{source}: field {where!r}: {first['msg']} (got {first.get('input')!r})"


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> RunConfig:
    """Merge a YAML config file (if any) with explicit overrides and validate the result."""
    values: dict[str, Any] = {}
    source = "options"
    if path is not None:
        file = Path(path)
        source = str(file)
        if not file.is_file():
            raise ConfigError(f"{file}: config file not found")
        try:
            loaded = yaml.safe_load(file.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"{file}: not valid YAML ({str(error).splitlines()[0]})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{file}: expected a mapping of settings, found {type(loaded).__name__}")
        values.update(loaded or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RunConfig(**values)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None
