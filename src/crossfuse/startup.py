"""Start-up of a command: torch imported without the cyclic garbage collector's passes over it.

Importing torch creates several hundred thousand objects, and CPython's collector runs a full pass over
every tracked object each time enough new ones have piled up: about 400 passes while torch and
crossfuse's modules load, 0.15-0.2 s of torch's 1.1-1.5 s import and 0.12-0.14 s of the 0.2-0.3 s of
imports after it on this machine (``benchmarks/run_time.py`` measures the whole start-up). Paused while
torch loads and then frozen (:func:`gc.freeze`: moved to a generation no pass visits, as CPython's
documentation suggests for objects that live as long as the process), those objects cost no pass again,
at start-up or in training. Module objects live until exit anyway, so nothing that would have been freed
is kept.
"""

from __future__ import annotations

import gc
import sys


def import_torch() -> None:
    """``import torch`` with the collector paused, then freeze what the process holds; a no-op once torch
    is imported (a bench worker's later runs, a caller that imported it), so that objects created after
    start-up are never frozen."""
    if "torch" in sys.modules:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        import torch  # noqa: F401
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
