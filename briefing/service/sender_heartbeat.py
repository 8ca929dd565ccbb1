"""A sending run's row in the sender table: written at start, refreshed while it sends, closed at the end.

The row is how every other sender, on any host, tells this run is alive (see claim_owners), and
its tally is what the whole edition's progress is summed from. The beat runs on its own thread
because a run can sit for minutes on one SMTP reply while it is perfectly alive.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

import sqlalchemy as sa

from briefing.db import session_scope
from briefing.domain import Clock
from briefing.service.alerts import one_line
from briefing.service.claim_owners import HEARTBEAT_EVERY
from briefing.store import senders as sender_store
from briefing.store.senders import SenderTally

log = logging.getLogger(__name__)
RATE_OVER = 10.0  # seconds: the rate a heartbeat writes is that of the last few beats, not the run's mean
_SAMPLES = int(RATE_OVER // HEARTBEAT_EVERY) + 1
ROLES = ("send", "worker", "scheduler")


class Tally(Protocol):
    """What a run counts as it goes (service.send_report.RunTally)."""

    sent: int
    failed: int
    skipped: int
    deferred: int
    ambiguous: int


class Heartbeat:
    """Keeps one run's sender row fresh; `tick` runs after every `tick_every` beats (claim recovery).

    The thread waits on its own event rather than on the run's clock: a test clock's wait returns
    at once (it moves the clock instead), and a beat loop on it would race the clock ahead. The
    times written, and the rate, still come from the run's clock.
    """

    def __init__(
        self,
        engine: sa.Engine,
        owner: str,
        edition_id: int,
        *,
        role: str,
        connections: int,
        clock: Clock,
        tally: Callable[[], Tally],
        db_lock: threading.Lock | contextlib.nullcontext[None],
        tick: Callable[[], object] | None = None,
        tick_every: int = 2,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        self.engine = engine
        self.owner = owner
        self.edition_id = edition_id
        self.role = role
        self.connections = connections
        self.clock = clock
        self.tally = tally
        self.db_lock = db_lock
        self.tick = tick
        self.tick_every = max(1, tick_every)
        self.every = HEARTBEAT_EVERY
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._samples: deque[tuple[float, int]] = deque(maxlen=_SAMPLES)
        self.beats = 0

    def start(self) -> None:
        """Write the run's row (it is sending from now on) and start beating."""
        now = self.clock.now()
        with self.db_lock, session_scope(self.engine) as session:
            sender_store.start(
                session,
                owner=self.owner,
                edition_id=self.edition_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                role=self.role,
                connections=self.connections,
                now=now,
            )
        self._samples.append((self.clock.monotonic(), 0))
        self._thread = threading.Thread(target=self._loop, name="send-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and write the final tally with the run marked finished."""
        self._done.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.join(self.every * 2)
        self.beat(finished=True)

    def beat(self, *, finished: bool = False) -> bool:
        """Write the tally now; a database error is logged and the run goes on (False)."""
        tally = self.tally()
        settled = tally.sent + tally.failed + tally.skipped + tally.ambiguous
        moment = self.clock.monotonic()
        self._samples.append((moment, settled))
        first_at, first = self._samples[0]
        rate = (settled - first) / (moment - first_at) if moment > first_at else 0.0
        try:
            with self.db_lock, session_scope(self.engine) as session:
                sender_store.beat(
                    session,
                    self.owner,
                    SenderTally(
                        sent=tally.sent,
                        failed=tally.failed,
                        skipped=tally.skipped,
                        deferred=tally.deferred,
                        ambiguous=tally.ambiguous,
                        rate=max(0.0, rate),
                    ),
                    now=self.clock.now(),
                    finished=finished,
                )
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not write the sender heartbeat (%s); sending goes on", one_line(exc))
            return False
        return True

    def _loop(self) -> None:
        while not self._done.wait(self.every):
            self.beat()
            self.beats += 1
            if self.tick is None or self.beats % self.tick_every:
                continue
            try:
                self.tick()
            except sa.exc.SQLAlchemyError as exc:
                log.warning(
                    "could not look for stopped senders' claims (%s); trying at the next beat", one_line(exc)
                )
            except Exception:  # a bug here must not stop the heartbeat that keeps this run's claims
                log.exception("looking for stopped senders' claims failed")
