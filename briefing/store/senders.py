"""The sender table: who is sending an edition, from which host, how far each has got.

A sender writes its own row only (start, a heartbeat every few seconds, finish), so several
senders never contend for one row; readers sum the rows of an edition, which stays cheap however
long the ledger is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from briefing.models import Sender

T = Sender.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class SenderTally:
    """What one run has done so far (the counts it keeps in memory, written with each heartbeat)."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0
    ambiguous: int = 0
    rate: float = 0.0


@dataclass(frozen=True, slots=True)
class SenderRow:
    owner: str
    edition_id: int
    host: str
    pid: int
    role: str
    connections: int
    started_at: datetime
    heartbeat_at: datetime
    finished_at: datetime | None
    tally: SenderTally

    def alive(self, *, stale_before: datetime) -> bool:
        """Not finished, and heard from since `stale_before`."""
        return self.finished_at is None and self.heartbeat_at >= stale_before


def start(
    session: Session,
    *,
    owner: str,
    edition_id: int,
    host: str,
    pid: int,
    role: str,
    connections: int,
    now: datetime,
) -> None:
    session.execute(
        sa.insert(T).values(
            owner=owner,
            edition_id=edition_id,
            host=host[:255],
            pid=pid,
            role=role,
            connections=connections,
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
            sent=0,
            failed=0,
            skipped=0,
            deferred=0,
            ambiguous=0,
            rate=0.0,
        )
    )


def beat(session: Session, owner: str, tally: SenderTally, *, now: datetime, finished: bool = False) -> None:
    """Write the run's tally and say it is alive (or, with `finished`, that it has stopped)."""
    values: dict[str, object] = {
        "heartbeat_at": now,
        "sent": tally.sent,
        "failed": tally.failed,
        "skipped": tally.skipped,
        "deferred": tally.deferred,
        "ambiguous": tally.ambiguous,
        "rate": 0.0 if finished else tally.rate,
    }
    if finished:
        values["finished_at"] = now
    session.execute(sa.update(T).where(T.c.owner == owner).values(**values))


def for_edition(session: Session, edition_id: int) -> list[SenderRow]:
    """Every run on the edition, oldest first."""
    found = session.execute(sa.select(T).where(T.c.edition_id == edition_id).order_by(T.c.id)).all()
    return [_row(r) for r in found]


def find(session: Session, owner: str) -> SenderRow | None:
    found = session.execute(sa.select(T).where(T.c.owner == owner)).first()
    return _row(found) if found is not None else None


def owners_gone(session: Session, edition_id: int, owners: list[str], *, stale_before: datetime) -> list[str]:
    """Of the claims' owners (`host:pid:nonce:wN`), those whose run has finished or fell silent."""
    runs = {r.owner: r for r in for_edition(session, edition_id)}
    gone = []
    for owner in owners:
        run = runs.get(run_of(owner))
        if run is not None and not run.alive(stale_before=stale_before):
            gone.append(owner)
    return gone


def run_of(lease_owner: str) -> str:
    """The run a lease belongs to: a connection's lease owner is the run's owner plus `:wN`."""
    head, sep, tail = lease_owner.rpartition(":")
    return head if sep and tail.startswith("w") and tail[1:].isdigit() else lease_owner


def _row(r: sa.Row[tuple[object, ...]]) -> SenderRow:
    m = r._mapping
    return SenderRow(
        owner=str(m["owner"]),
        edition_id=int(m["edition_id"]),
        host=str(m["host"]),
        pid=int(m["pid"]),
        role=str(m["role"]),
        connections=int(m["connections"]),
        started_at=m["started_at"],
        heartbeat_at=m["heartbeat_at"],
        finished_at=m["finished_at"],
        tally=SenderTally(
            sent=int(m["sent"]),
            failed=int(m["failed"]),
            skipped=int(m["skipped"]),
            deferred=int(m["deferred"]),
            ambiguous=int(m["ambiguous"]),
            rate=float(m["rate"]),
        ),
    )
