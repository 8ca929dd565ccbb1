"""In-memory sliding-window rate limits for subscribe, confirm resends and logins.

The counters live in the process: one uvicorn process (what `briefing serve` runs) enforces the
limits exactly; several processes would each allow the full limit. That is enough to stop
subscription bombing and password guessing without a shared store.

Windows are measured on the clock they are given (the app's `Clock.monotonic`), never the real one
directly, so a test can let a window pass without waiting for it.
"""

from __future__ import annotations

import math
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

    def _current(self, key: str, now: float) -> deque[float]:
        """The key's hits still inside the window (call with the lock held)."""
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
        return hits

    def take(self, key: str) -> int:
        """Count a hit and answer 0, or, when the key is at its limit, count nothing and answer
        the whole seconds until the oldest hit leaves the window (what Retry-After says).

        Checking and counting in one step means concurrent requests cannot all slip in under the
        limit before any of them is counted.
        """
        now = self._clock()
        with self._lock:
            hits = self._current(key, now)
            if len(hits) >= self.rate.limit:
                return max(1, math.ceil(hits[0] + self.rate.window - now))
            hits.append(now)
            return 0

    def allow(self, key: str) -> bool:
        """Count a hit and say whether it is within the limit (a refused hit is not counted)."""
        return self.take(key) == 0

    def give_back(self, key: str) -> None:
        """Uncount the latest hit: for limits on failures, taken before the outcome is known."""
        with self._lock:
            hits = self._hits.get(key)
            if hits:
                hits.pop()

    def reset(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)
