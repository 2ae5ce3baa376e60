"""Stopping a run cleanly on SIGTERM or SIGINT: the training loop checks for a stop between steps, writes
its checkpoint and raises :class:`Interrupted`, and the same command resumes it. Kept apart from the loop
(no torch here), so that a benchmark's process can catch a worker's interruption without importing torch.
"""

from __future__ import annotations

import signal


class Interrupted(Exception):
    """Training stopped on SIGTERM or SIGINT after writing a checkpoint; the same command resumes it."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number

    def __reduce__(self):
        # a benchmark's worker process sends it back pickled: rebuild it from the number, not the name
        return (Interrupted, (self.signal_number,))


class StopRequests:
    """Turns SIGTERM and SIGINT into a flag that the loop checks between steps (main thread only).
    ``pending`` is a stop that arrived before training began (a benchmark's worker records it there),
    which the first step then honours."""

    pending: int | None = None

    def __init__(self) -> None:
        self.received: int | None = StopRequests.pending
        self.previous: dict = {}

    def __enter__(self) -> StopRequests:
        import threading

        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame) -> None:
        self.received = number

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
