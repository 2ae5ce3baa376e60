from __future__ import annotations

from collections.abc import Mapping

from crossfuse.errors import ConfigError
from crossfuse.model import MultimodalModel
from crossfuse.registry import TRANSFERS
from crossfuse.transfer.erm import ERM


@TRANSFERS.register("modality-dropout")
class ModalityDropoutERM(ERM):
    """ERM with modality dropout: every modality of every training row is replaced by a learned
    placeholder with probability ``P = 0.5`` (``--modality-dropout``, which overrides it), and each step
    also trains each modality's path alone (see :class:`~crossfuse.model.MultimodalModel`).

    ``L = mean_i l(f(x~_i), y_i) + mean_m mean_i l(f(x_i^m alone), y_i)``. A fused model cannot then lean
    on one modality, whose shift in an unseen domain it has not seen (Neverova et al., "ModDrop", TPAMI
    2016, introduced the idea for gesture recognition). Needs two or more modalities.
    """

    min_modalities = 2

    recipe = {"modality_dropout": 0.5}

    def setup(self, model: MultimodalModel, feature_dims: Mapping[str, int]) -> None:
        super().setup(model, feature_dims)
        if len(model.encoders) < 2:
            raise ConfigError("--transfer modality-dropout: needs two or more modalities; the data has one")
