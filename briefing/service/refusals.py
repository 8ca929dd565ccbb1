"""Whether a refused recipient is the reader's trouble or the relay's, and when a send is going badly.

A relay that is down, misconfigured or over quota refuses everyone, often with a reply that names
each recipient ("451 4.3.0 <jane@example.org>: temporary lookup failure"). Read one recipient at a
time, that looks like thousands of soft or hard bounces, and a few such mornings would leave the
whole list `bounced`. So a refusal is only held against its reader once it stands out: other
recipients were delivered after it, and its reply is not what most recent recipients got.

`RelayJudge` keeps a sliding window of recent outcomes and the refusals not yet judged. It calls
the relay in trouble when
- the first `first` recipients of the run were all refused and none was delivered, or
- the last `streak` recipients were all refused with the same reply, or
- one reply refused at least `share` of the last `window` recipients (once there are `first`).
Until then a refusal is held; it is judged the reader's once `settle_after` later outcomes include
a delivery. At the end of a pass `settle` judges what is left: the reader's when something was
delivered in this run, the relay's otherwise.

`BounceBreaker` is the other guard: a list where many addresses are refused as unknown was probably
imported from somewhere stale, and the send halts until an editor says to go on.

Both are pure and not thread-safe: the send loop calls them under its own lock.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

_ADDRESS = re.compile(r"<[^<>\s]*>|[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


def reply_key(code: int | None, reply: str) -> str:
    """The reply with what differs per recipient or per transaction taken out.

    Addresses and every word with a digit in it (queue ids, timestamps, counters) go; the reply
    code and the enhanced status code stay, so "the same reply" means the same answer.
    """
    words = []
    for word in _ADDRESS.sub(" ", reply.lower()).split():
        if _ENHANCED.match(word) or not any(c.isdigit() for c in word):
            words.append(word)
    return f"{code or ''} {' '.join(words)}".strip()


def reply_shown(code: int | None, reply: str) -> str:
    """The reply for a message, a log line or an alert: the readers' addresses replaced."""
    text = _ADDRESS.sub("<address>", " ".join(reply.split()))[:300]
    return f"{code} {text}" if code else text


@dataclass(frozen=True, slots=True)
class RelayRules:
    first: int = 10  # recipients at the start of a run, and the least evidence for the share rule
    streak: int = 10  # consecutive recipients refused with one reply
    window: int = 100  # recent outcomes considered for the share rule
    share: float = 0.5  # "most recent recipients"
    settle_after: int = 20  # later outcomes to wait for before a refusal counts against its reader


@dataclass(slots=True)
class _Held(Generic[T]):
    item: T
    key: str
    shown: str
    seq: int


class RelayJudge(Generic[T]):
    """The sliding window of recent outcomes and the refusals it has not judged yet."""

    def __init__(self, rules: RelayRules | None = None) -> None:
        self.rules = rules or RelayRules()
        self.trouble = ""  # why the relay, not the readers, is at fault; "" while it looks fine
        self._recent: deque[str | None] = deque(maxlen=self.rules.window)  # None: delivered
        self._held: list[_Held[T]] = []
        self._seen = 0
        self._delivered = 0
        self._last_delivery = 0  # sequence number of the latest delivery (0: none yet)

    @property
    def held(self) -> int:
        return len(self._held)

    def delivered(self) -> list[T]:
        """Record a delivery; returns the held refusals it lets us judge as their readers'."""
        self._seen += 1
        self._delivered += 1
        self._last_delivery = self._seen
        self._recent.append(None)
        return self._due()

    def refused(self, item: T, code: int | None, reply: str) -> list[T]:
        """Record a refusal (held until judged); returns the held refusals now judged as their readers'.

        When this refusal shows the relay in trouble, `trouble` says why and nothing is returned:
        the caller takes every held refusal back with `release`.
        """
        self._seen += 1
        key = reply_key(code, reply)
        self._recent.append(key)
        self._held.append(_Held(item, key, reply_shown(code, reply), self._seen))
        if not self.trouble:
            self.trouble = self._trouble(key)
        return [] if self.trouble else self._due()

    def release(self) -> list[T]:
        """Every held refusal, no longer held: the relay refused them, not their readers' servers."""
        items = [h.item for h in self._held]
        self._held.clear()
        return items

    def settle(self) -> list[T]:
        """At the end of a pass: the held refusals judged their readers', or none and `trouble` set."""
        if not self._held or self.trouble:
            return []
        if self._delivered == 0:
            self.trouble = (
                f"the SMTP server refused all {self._seen} recipient(s) tried and delivered none "
                f"(last reply: {self._held[-1].shown})"
            )
        else:
            self.trouble = self._share_trouble()
        return [] if self.trouble else self.release()

    def _due(self) -> list[T]:
        rules = self.rules
        ready = [
            h for h in self._held if self._seen - h.seq >= rules.settle_after and self._last_delivery > h.seq
        ]
        if ready:
            done = {h.seq for h in ready}
            self._held = [h for h in self._held if h.seq not in done]
        return [h.item for h in ready]

    def _trouble(self, key: str) -> str:
        rules = self.rules
        shown = self._held[-1].shown
        if self._delivered == 0 and self._seen >= rules.first:
            return f"the first {self._seen} recipients were all refused, none delivered (last reply: {shown})"
        tail = list(self._recent)[-rules.streak :]
        if len(tail) >= rules.streak and all(k == key for k in tail):
            return f"the last {len(tail)} recipients were all refused with the same reply ({shown})"
        return self._share_trouble()

    def _share_trouble(self) -> str:
        recent = self._recent
        refusals = Counter(k for k in recent if k is not None)
        if len(recent) < self.rules.first or not refusals:
            return ""
        common, count = refusals.most_common(1)[0]
        if count < self.rules.share * len(recent):
            return ""
        example = next((h.shown for h in reversed(self._held) if h.key == common), common)
        return f"{count} of the last {len(recent)} recipients were refused with the same reply ({example})"


@dataclass(slots=True)
class BounceBreaker:
    """Halts a send when more than `rate` of its first `after` recipients (or more) bounced hard.

    `rate` 0 turns it off. Counted per run, from the recipients this run tried.
    """

    rate: float = 0.05
    after: int = 500
    tried: int = 0
    hard: int = 0

    def attempt(self) -> None:
        self.tried += 1

    def bounce(self) -> None:
        self.hard += 1

    @property
    def tripped(self) -> bool:
        return self.rate > 0 and self.tried >= self.after and self.hard > self.rate * self.tried

    @property
    def reason(self) -> str:
        share = 100 * self.hard / self.tried if self.tried else 0.0
        return (
            f"{self.hard} of the {self.tried} recipients tried so far were refused as unknown "
            f"({share:.1f}%, above the {100 * self.rate:g}% limit): a bad list was probably imported. "
            "Nothing more is sent until an editor resumes the send"
        )
