"""SIGTERM and Ctrl-C for the commands that send: the copies in flight finish and are recorded first.

`briefing send` and `briefing worker` run their sending in a thread and wait in the main one, so a
signal is handled the moment it comes; the handler only sets flags, and the send loop stops
claiming. A second signal, or a server that has not answered within STOP_GRACE, ends the wait.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from briefing.domain import Clock

STOPPED_EXITS: dict[int, int] = {
    signal.SIGINT: 130,
    signal.SIGTERM: 143,
}  # 128 + the signal, as shells report it
STOP_GRACE = 8.0  # seconds the messages in flight get to be answered once a stop is asked for
POLL = 0.2  # seconds between two looks at the flags while the sending thread runs


class Stopper:
    """SIGTERM and SIGINT ask the send to stop: no new copy starts, the ones in flight are recorded.

    A second signal stops waiting for them (the next send treats them as ambiguous, per the policy).
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.signum = 0
        self.hurry = False
        self.abandoned = False  # stopped without waiting for the copies in flight
        self._previous: dict[int, object] = {}

    @property
    def exit_code(self) -> int:
        return STOPPED_EXITS.get(self.signum, 1)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        # Only flags here: printing from a signal handler can interleave with the interrupted write.
        if self.signum:
            self.hurry = True
        else:
            self.signum = signum
        self.stop.set()

    def __enter__(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():
            for signum in STOPPED_EXITS:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()


def wait_stoppable(
    done: threading.Event, stopper: Stopper, clock: Clock, *, on_stopping: Callable[[str], None]
) -> bool:
    """Wait for `done`, handling signals in between; False when the stop gave up waiting for it.

    `on_stopping` is told the signal's name once, when the first one comes.
    """
    stopping_since: float | None = None
    while not done.wait(POLL):  # an event, not the clock: signals are handled in between
        if stopper.signum and stopping_since is None:
            stopping_since = clock.monotonic()
            on_stopping(signal.Signals(stopper.signum).name)
        if stopping_since is not None and (stopper.hurry or clock.monotonic() - stopping_since >= STOP_GRACE):
            stopper.abandoned = True
            return False
    return True
