"""Stopping a run cleanly on SIGTERM or SIGINT: the training loop checks for a stop between steps, writes
its checkpoint and raises :class:`Interrupted`, and the same command resumes it. Kept apart from the loop
(no torch here), so that a benchmark's process can catch a worker's interruption without importing torch.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Interrupted(Exception):
    """Training stopped on SIGTERM or SIGINT after writing a checkpoint; the same command resumes it."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number

    def __reduce__(self):
        # a benchmark's worker process sends it back pickled: rebuild it from the number, not the name
        return (Interrupted, (self.signal_number,))


class Terminated(BaseException):
    """SIGTERM outside training (which stops at a step instead, :class:`StopRequests`): raised by the
    handler that :func:`sigterm_raises` installs, so that the command can say what was left undone
    instead of dying without a word. A ``BaseException``, like ``KeyboardInterrupt``, so that no
    ``except Exception`` swallows it."""

    signal_number = signal.SIGTERM


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; the handler before it is
    restored after, so that calling the command from Python leaves the caller's handler alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(number, frame) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class StopRequests:
    """Turns SIGTERM and SIGINT into a flag that the loop checks between steps (main thread only).
    ``pending`` is a stop that arrived before training began (a benchmark's worker records it there),
    which the first step then honours."""

    pending: int | None = None

    def __init__(self) -> None:
        self.received: int | None = StopRequests.pending
        self.previous: dict = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame) -> None:
        self.received = number

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
