"""In-memory sliding-window rate limits for subscribe, confirm resends and logins.

The counters live in the process: one uvicorn process (what `briefing serve` runs) enforces the
limits exactly; several processes would each allow the full limit. That is enough to stop
subscription bombing and password guessing from one address without a shared store.

Windows are measured on the clock they are given (the app's `Clock.monotonic`), never the real one
directly, so a test can let a window pass without waiting for it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable

from briefing.config import Rate

MAX_KEYS = 50_000  # memory bound: the least recently used keys are forgotten first


class SlidingWindow:
    """At most `rate.limit` hits per key within any `rate.window` seconds."""

    def __init__(self, rate: Rate, *, clock: Callable[[], float], max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self._clock = clock
        self._max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Count a hit and say whether it is within the limit (a refused hit is not counted)."""
        now = self._clock()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                hits = deque()
                self._hits[key] = hits
                if len(self._hits) > self._max_keys:
                    self._hits.popitem(last=False)
            else:
                self._hits.move_to_end(key)
            cutoff = now - self.rate.window
            while hits and hits[0] <= cutoff:
                hits.popleft()
            if len(hits) >= self.rate.limit:
                return False
            hits.append(now)
            return True

    def reset(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)
