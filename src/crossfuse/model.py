"""A multimodal classifier composed of modules, and the builder that holds the defaults."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from crossfuse.encoders import encoder_for
from crossfuse.errors import ConfigError
from crossfuse.fusion._common import FusionModule
from crossfuse.normalize import Standardize
from crossfuse.objective import REGRESSION_MARGIN, Classification, Regression
from crossfuse.parallel import draw_for_shard
from crossfuse.parallel.dropout import ShardDropout


class MultimodalModel(nn.Module):
    """``logits = head(fusion({m: encoder_m(normalizer_m(x_m))}))``: composition of modules.

    Transfer methods see the per-modality features (:meth:`encode`) and the fused representation
    (:meth:`fuse`) and never the modules' internals. Any module may be the user's own: an encoder maps
    ``(batch, *shape_m)`` to ``(batch, d_m)``, the fusion maps ``{m: (batch, d_m)}`` to ``(batch, d)`` and
    the head maps that to logits. :func:`build_model` builds the defaults.

    Parameters
    ----------
    encoders
        One module per modality (``nn.Flatten()`` for early fusion, which takes the raw inputs).
    fusion
        The fusion module, called on the dict of encodings.
    head
        From the fused representation to logits (``nn.Identity()`` when the fusion outputs logits).
    normalizers
        Per-modality input standardisation (:class:`~crossfuse.normalize.Standardize`), fitted by
        :meth:`fit_normalizers`; the identity when not given.
    objective
        What the head's outputs mean (:mod:`crossfuse.objective`): class logits by default.
    modality_dropout
        Probability ``P`` that a training sample loses a modality (never all of them); a lost modality's
        encoding is replaced by a learned placeholder vector (initialised at zero), which is also what the
        trained model uses for a modality that is missing at prediction time. With ``P = 0`` (the
        default) there are no placeholders and every modality is required.
    missing_modalities
        Modalities that get a placeholder without modality dropout, because some samples lack them: a
        sample whose every value of modality ``m`` is NaN (:mod:`crossfuse.data.missing`) gets ``m``'s
        placeholder as its encoding, in training and in prediction (its NaNs never reach the encoder).

    A zero encoding is how a modality drops out of each fusion: Tensor Fusion and LMF keep the constant 1
    of ``[1; z_m]``, so with ``z_m = 0`` the product keeps every term without ``m``; late and nuclear-norm
    fusion lose ``m``'s linear term; early fusion (raw inputs) sees the modality at its source mean. The
    placeholders learn better stand-ins from there.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        fusion: nn.Module,
        head: nn.Module,
        normalizers: Mapping[str, nn.Module] | None = None,
        objective: nn.Module | None = None,
        modality_dropout: float = 0.0,
        missing_modalities: Sequence[str] = (),
    ) -> None:
        super().__init__()
        names = sorted(encoders)
        given = dict(normalizers or {})
        self.normalizers = nn.ModuleDict({m: given.get(m, nn.Identity()) for m in names})
        self.encoders = nn.ModuleDict({m: encoders[m] for m in names})
        self.fusion = fusion
        self.head = head
        self.objective = objective if objective is not None else Classification()
        if not 0 <= modality_dropout < 1:
            raise ConfigError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
        self.modality_dropout = float(modality_dropout)
        self.placeholders = nn.ParameterDict()
        unknown = sorted(set(missing_modalities) - set(names))
        if unknown:
            raise ConfigError(f"missing_modalities: no modality {unknown[0]!r} ({', '.join(names)})")
        if modality_dropout > 0 and len(names) < 2:
            raise ConfigError("modality dropout needs at least two modalities")
        for m in names if modality_dropout > 0 else sorted(missing_modalities):
            self.placeholders[m] = nn.Parameter(torch.zeros(self._encoding_size(m)))

    def _encoding_size(self, name: str) -> int:
        dims = getattr(self.fusion, "input_dims", None)
        if isinstance(dims, Mapping) and name in dims:
            return int(dims[name])
        raise ConfigError(
            f"modality dropout: the fusion does not give the size of {name!r}'s encoding (input_dims)"
        )

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    @property
    def n_outputs(self) -> int:
        """The head's output size (the number of classes; 1 for a regression), measured on one zero
        fused vector in evaluation mode (no random draw)."""
        size = getattr(self.fusion, "output_dim", None)
        if not isinstance(size, int):
            raise ConfigError("the fusion module does not say its output size (an output_dim attribute)")
        was_training = self.head.training
        self.head.eval()
        with torch.no_grad():
            reference = next(self.parameters())
            out = self.head(torch.zeros(1, size, device=reference.device, dtype=reference.dtype))
        self.head.train(was_training)
        return int(out.shape[1])

    def encode(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-modality features ``{m: (batch, d_m)}``; a modality missing from ``inputs``, or a sample
        whose values of it are all NaN, gets its placeholder (models with one for it: trained with modality
        dropout or ``missing_modalities``), and in training each sample loses each modality with
        probability ``modality_dropout``."""
        present = [m for m in self.encoders if m in inputs]
        missing = [m for m in self.encoders if m not in inputs]
        if missing and (not present or any(m not in self.placeholders for m in missing)):
            raise ConfigError(
                f"modality {missing[0]!r} is missing and the model was trained without modality dropout "
                "(--modality-dropout), so it needs every modality"
            )
        features = {
            m: self._encode_present(m, inputs[m]) if m in self.placeholders else self._encode(m, inputs[m])
            for m in present
        }
        batch = next(iter(features.values())).shape[0]
        for m in missing:
            features[m] = self.placeholders[m].expand(batch, -1)
        if self.training and self.modality_dropout > 0:
            dropped = draw_for_shard(self._draw_dropped, batch).to(features[present[0]].device)
            for i, m in enumerate(self.encoders):
                if m in present:
                    keep = ~dropped[:, i : i + 1]
                    features[m] = torch.where(keep, features[m], self.placeholders[m].expand(batch, -1))
        return {m: features[m] for m in self.encoders}

    def _encode(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.encoders[name](self.normalizers[name](x))

    def _encode_present(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The encoding of the samples that have modality ``name`` and the placeholder for those that lack
        it (every value NaN). The missing samples enter the encoder as zeros, so that no NaN reaches a
        weight or a gradient; their encodings are then replaced. Selected without reading the mask on the
        host, so a GPU is not made to wait."""
        absent = torch.isnan(x.flatten(1)).all(1)
        encoded = self._encode(name, x.masked_fill(absent.view(-1, *[1] * (x.dim() - 1)), 0.0))
        return torch.where(absent[:, None], self.placeholders[name].expand_as(encoded), encoded)

    def _draw_dropped(self, rows: int) -> torch.Tensor:
        """``(rows, M)`` booleans: each modality of each row dropped with probability ``P``; a row that
        would lose every modality keeps one, chosen at random."""
        generator_device = self.placeholders[next(iter(self.placeholders))].device
        dropped = torch.rand(rows, len(self.encoders), device=generator_device) < self.modality_dropout
        kept = torch.randint(len(self.encoders), (rows,), device=generator_device)
        every = dropped.all(1)
        dropped[every, kept[every]] = False
        return dropped

    def fit_normalizers(self, inputs: Mapping[str, Any], target: Mapping[str, Any] | None = None) -> None:
        """Fit each modality's input standardisation on training rows (numpy arrays), leaving out the
        samples that lack the modality; a per-domain one (``'domain'``) on the unlabelled ``target``
        rows when there are any, whose statistics the model keeps (the other domains' rows are mapped
        onto them beforehand: :func:`crossfuse.data.domain_moments.match_domain_moments`), of the kind
        already in its :attr:`~crossfuse.normalize.Standardize.kind` when that is ``'feature'`` or
        ``'global'``."""
        from crossfuse.data.missing import present_rows

        has_target = target is not None and any(len(x) for x in target.values())
        for m, normalizer in self.normalizers.items():
            if not isinstance(normalizer, Standardize):
                continue
            if normalizer.mode != "domain":
                normalizer.fit(present_rows(inputs[m]))
                continue
            rows = present_rows(target[m] if has_target else inputs[m])
            if len(rows) == 0:
                raise ConfigError(
                    f"normalization 'domain': no training row has modality {m!r} to standardise it by"
                )
            normalizer.refit(rows)  # of the kind the domains were mapped with, when set

    def fuse(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.fusion(features)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.fuse(self.encode(inputs)))

    @property
    def fusion_has_penalty(self) -> bool:
        """Whether the fusion adds a regulariser of its own to the loss (the nuclear norm's)."""
        return isinstance(self.fusion, FusionModule) and type(self.fusion).penalty is not FusionModule.penalty

    def penalty(self) -> torch.Tensor:
        """The fusion's regulariser for the loss (the nuclear norm), or 0 for a fusion without one."""
        if isinstance(self.fusion, FusionModule):
            return self.fusion.penalty()
        return torch.zeros((), device=next(self.parameters()).device)


def output_size(encoder: nn.Module, sample_shape: Sequence[int], name: str) -> int:
    """The feature size of an encoder: its ``output_dim`` attribute, or measured on two zero samples."""
    size = getattr(encoder, "output_dim", None)
    if isinstance(size, int):
        return size
    was_training = encoder.training
    encoder.eval()
    try:
        reference = next(encoder.parameters(), None)
        probe = torch.zeros((2, *sample_shape), device=reference.device if reference is not None else None)
        with torch.no_grad():
            out = encoder(probe)
    except Exception as error:
        raise ConfigError(
            f"encoder of modality {name!r} fails on samples of shape {tuple(sample_shape)}: {error}"
        ) from None
    finally:
        encoder.train(was_training)
    if out.dim() != 2:
        raise ConfigError(
            f"encoder of modality {name!r} must return (batch, features), returned {tuple(out.shape)}"
        )
    return int(out.shape[1])


def build_model(
    sample_shapes: Mapping[str, Sequence[int]],
    n_classes: int,
    fusion: str = "late",
    encoders: Mapping[str, nn.Module] | None = None,
    *,
    hidden_dim: int = 64,
    dropout: float = 0.1,
    fusion_options: Mapping[str, Any] | None = None,
    normalization: str = "auto",
    objective: str = "classification",
    regression_loss: str = "mse",
    modality_dropout: float = 0.0,
    missing_modalities: Sequence[str] = (),
    n_targets: int = 1,
    missing_indicators: Mapping[str, Sequence[int]] | None = None,
    regression_margin: float | None = REGRESSION_MARGIN,
) -> MultimodalModel:
    """The default model for these modalities, with the user's own ``encoders`` where given.

    Each modality without a given encoder gets one chosen from its sample shape (an MLP for vectors, a
    temporal CNN for sequences, a small CNN for images; :func:`~crossfuse.encoders.encoder_for`) with the
    size the fusion prefers (:meth:`~crossfuse.fusion.FusionModule.preferred_input_dim`). Early fusion
    takes the flattened raw inputs instead, so it accepts no encoders. The head is
    ``Linear(ReLU(Dropout(fused)))`` to ``n_classes``, or nothing when decision-level late fusion
    outputs logits itself.

    Parameters
    ----------
    sample_shapes
        Shape of one sample of each modality (without the batch axis).
    n_classes
        Number of classes.
    fusion
        A name of :data:`crossfuse.registry.FUSIONS`.
    encoders
        ``modality -> nn.Module`` to use instead of the default encoder (e.g. a pretrained network).
    hidden_dim
        Size of each default encoder's output and of the fused representation.
    dropout
        Dropout rate of the default modules.
    fusion_options
        Extra keyword arguments for the fusion module (e.g. ``rank`` for ``lmf``).
    normalization
        How each modality's inputs are standardised (:mod:`crossfuse.normalize`).
    objective
        ``'classification'`` (``n_classes`` logits) or ``'regression'`` (``n_targets`` values;
        ``n_classes`` is ignored), with ``regression_loss`` ``'mse'`` or ``'l1'``.
    modality_dropout
        Probability that a training sample loses a modality (see :class:`MultimodalModel`).
    missing_modalities
        Modalities that some samples lack (every value NaN): each gets a learned placeholder.
    n_targets
        How many values a regression predicts for each sample.
    missing_indicators
        ``modality -> features`` of a vector modality that get an indicator column of their missing values
        (:class:`~crossfuse.normalize.Standardize`): its encoder (or early fusion) takes ``d + k`` inputs.
        A modality with the user's own encoder gets none (the encoder takes the modality's own shape).
    regression_margin
        A regression's predictions stay within the training targets' range widened by this share of it
        on either side (:class:`~crossfuse.objective.Regression`); ``None`` or ``inf``: not clipped.
    """
    from crossfuse.registry import FUSIONS, check_option_types

    if objective not in ("classification", "regression"):
        raise ConfigError(f"objective {objective!r}: choose classification or regression")
    target = (
        Regression(regression_loss, n_targets, regression_margin)
        if objective == "regression"
        else Classification()
    )
    n_outputs = target.output_dim(n_classes)

    fusion_cls = FUSIONS.get_or_refuse(fusion, "fusion")
    options = dict(fusion_options or {})
    given = dict(encoders or {})
    unknown = sorted(set(given) - set(sample_shapes))
    if unknown:
        raise ConfigError(
            f"encoder for modality {unknown[0]!r}: no such modality ({', '.join(sorted(sample_shapes))})"
        )
    names = sorted(sample_shapes)
    indicators = {m: v for m, v in (missing_indicators or {}).items() if m not in given}
    normalizers = {
        m: Standardize(tuple(sample_shapes[m]), normalization, indicators.get(m, ())) for m in names
    }
    sample_shapes = {m: normalizers[m].output_shape for m in names}  # what the encoders see
    ours = isinstance(fusion_cls, type) and issubclass(fusion_cls, FusionModule)
    if ours and not fusion_cls.uses_encoders:
        if given:
            raise ConfigError(f"fusion {fusion!r} takes the raw inputs: it has no encoders to replace")
        options.setdefault("dropout", dropout)
        modules: dict[str, nn.Module] = {m: nn.Flatten() for m in names}
        input_dims = {m: math.prod(sample_shapes[m]) for m in names}
    else:
        encoder_dim = fusion_cls.preferred_input_dim(hidden_dim, len(names)) if ours else hidden_dim
        modules = {
            m: given[m] if m in given else encoder_for(m, sample_shapes[m], encoder_dim, dropout)
            for m in names
        }
        input_dims = {
            m: output_size(modules[m], sample_shapes[m], m) if m in given else encoder_dim for m in names
        }
    decision_level = fusion == "late" and options.get("mode") == "decision"
    fused_dim = n_outputs if decision_level else hidden_dim
    check_option_types(fusion_cls, fusion_options or {}, f"fusion_options for {fusion!r}")
    try:
        fusion_module = fusion_cls(input_dims, fused_dim, **options)
    except TypeError as error:
        raise ConfigError(f"fusion_options for {fusion!r}: {error}") from None
    head = (
        nn.Identity()
        if decision_level
        else nn.Sequential(nn.ReLU(), ShardDropout(dropout), nn.Linear(hidden_dim, n_outputs))
    )
    return MultimodalModel(
        modules, fusion_module, head, normalizers, target, modality_dropout, missing_modalities
    )
