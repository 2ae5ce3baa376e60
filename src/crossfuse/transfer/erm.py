from __future__ import annotations

from crossfuse.registry import TRANSFERS
from crossfuse.transfer._domains import SourceDomainsMethod


@TRANSFERS.register("erm")
class ERM(SourceDomainsMethod):
    """Empirical risk minimisation on the pooled source domains: ``L = mean_i l(f(x_i), y_i)`` over the
    rows of every source domain (Vapnik, 1998).

    The baseline of domain generalisation, which Gulrajani & Lopez-Paz ("In Search of Lost Domain
    Generalization", ICLR 2021, DomainBed) found hard to beat under fair model selection. Unlike
    ``source-only``, it is scored on every row of the target domains, which it never sees, and it runs
    with a single source domain too.
    """

    min_source_domains = 1
    stops_early = True

    def __init__(self) -> None:
        super().__init__()
