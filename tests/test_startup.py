"""``crossfuse.startup.import_torch``: torch imported with the collector paused, then frozen, once."""

import subprocess
import sys

PROBE = """
import gc, sys
from crossfuse.startup import import_torch
passes = []
gc.callbacks.append(lambda phase, info: phase == "start" and passes.append(info["generation"]))
assert "torch" not in sys.modules and gc.get_freeze_count() == 0
import_torch()
frozen = gc.get_freeze_count()
during = len(passes)
import_torch()  # torch is there: nothing more is frozen
print("torch" in sys.modules, gc.isenabled(), frozen, during, gc.get_freeze_count() == frozen)
"""


def test_torch_is_imported_without_collector_passes_and_frozen_once():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    imported, enabled, frozen, passes, unchanged = out.split()
    assert imported == "True" and enabled == "True" and unchanged == "True"
    assert int(frozen) > 100_000  # torch's objects, moved where no pass visits them
    assert int(passes) == 0


def test_a_paused_collector_stays_paused():
    probe = "import gc; gc.disable(); from crossfuse.startup import import_torch; import_torch(); "
    probe += "print(gc.isenabled())"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
