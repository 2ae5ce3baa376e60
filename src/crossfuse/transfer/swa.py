from __future__ import annotations

from crossfuse.registry import TRANSFERS
from crossfuse.transfer.erm import ERM


@TRANSFERS.register("swa")
class StochasticWeightAveraging(ERM):
    """ERM whose kept model is the uniform average of its weights over training.

    ``theta_SWA = (1 / n) sum_{t > t_0} theta_t`` over every step after the first quarter of the schedule
    (``--weight-averaging swa``; see :class:`~crossfuse.train.loop.TrainSettings`); every epoch is scored
    and selected on the averaged weights. Izmailov et al. ("Averaging Weights Leads to Wider Optima and
    Better Generalization", UAI 2018) average once per cycle; SWAD (Cha et al., NeurIPS 2021) averages
    densely over steps and finds flat minima generalise better to unseen domains. This is the dense form
    without SWAD's loss-based choice of the averaging window.
    """

    recipe = {"weight_averaging": "swa"}
