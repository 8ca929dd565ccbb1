"""The delivery ledger: one row per (edition, subscriber), the only record of who was sent what.

The hot path (LedgerWriter) uses driver-level SQL on a held connection: it runs once per message.
Rules (see the architecture notes): snapshot in one transaction; claim before SMTP; commit `sent`
right after each 250; a row found `claimed` by a dead owner was in flight and is ambiguous.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from briefing.domain import DeliveryStatus, LedgerCounts, SubscriberStatus
from briefing.models import Delivery, Edition, Subscriber, Subscription
from briefing.store.ledger_sql import WRITER_SQL

D = Delivery.__table__  # type: ignore[attr-defined]
S = Subscriber.__table__  # type: ignore[attr-defined]
U = Subscription.__table__  # type: ignore[attr-defined]
E = Edition.__table__  # type: ignore[attr-defined]

CLAIMABLE = (DeliveryStatus.PENDING.value, DeliveryStatus.DEFERRED.value)
SUPPRESSED_REPLY = "not sent: the subscriber is no longer active"


@dataclass(frozen=True, slots=True)
class Claim:
    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    attempts: int
    token_version: int
    was_ambiguous: bool = False
    variant: str = ""  # the reader's section set: which rendering of the edition they get
    newsletter_id: int = 1


@dataclass(frozen=True, slots=True)
class LedgerRow:
    subscriber_id: int
    email: str
    status: str
    attempts: int
    smtp_code: int | None
    smtp_reply: str
    was_ambiguous: bool
    sent_at: datetime | None


def variants_in_ledger(session: Session, edition_id: int) -> list[str]:
    """The section sets the edition's readers chose ("" = the whole edition), each once."""
    rows = session.execute(sa.select(D.c.variant).where(D.c.edition_id == edition_id).distinct()).scalars()
    return sorted(str(v or "") for v in rows)


def snapshot(session: Session, edition_id: int, *, now: datetime) -> int:
    """One pending row per reader of the edition's newsletter, in one statement; returns the ledger size.

    A reader is one whose address is active and whose subscription to that newsletter is; a
    special edition leaves out those who said no to specials. Each row carries the reader's
    section set (`variant`), so the send picks that rendering without looking the reader up again.

    Running it again adds nobody who is already there (UNIQUE(edition, subscriber)), so a crash
    between snapshot and send never doubles or drops anyone.

    "Not already in the ledger" is NOT EXISTS, an anti-join on both databases. `id NOT IN
    (subquery)` is not: once PostgreSQL's statistics put a million rows behind the subquery, the
    hashed form no longer fits in memory and it plans a per-row rescan instead, and a second
    snapshot of a 1M-row ledger ran past three minutes (cancelled) where NOT EXISTS takes a second.
    """
    already = (
        sa.select(sa.literal(1)).where(D.c.edition_id == edition_id, D.c.subscriber_id == S.c.id).exists()
    )
    edition = session.execute(sa.select(E.c.newsletter_id, E.c.kind).where(E.c.id == edition_id)).one()
    wanted = [S.c.status == SubscriberStatus.ACTIVE.value, U.c.status == "active", ~already]
    if edition.kind != "regular":
        wanted.append(U.c.specials == sa.true())
    source = (
        sa.select(
            sa.literal(edition_id),
            S.c.id,
            S.c.email,
            sa.literal(DeliveryStatus.PENDING.value),
            sa.literal(0),
            sa.literal(""),
            sa.literal(""),
            sa.literal(""),
            sa.literal(False),
            sa.literal(now, type_=D.c.updated_at.type),
            U.c.variant,
        )
        .select_from(
            S.join(U, sa.and_(U.c.subscriber_id == S.c.id, U.c.newsletter_id == edition.newsletter_id))
        )
        .where(*wanted)
    )
    session.execute(
        sa.insert(D).from_select(
            [
                "edition_id",
                "subscriber_id",
                "email",
                "status",
                "attempts",
                "lease_owner",
                "smtp_reply",
                "message_id",
                "was_ambiguous",
                "updated_at",
                "variant",
            ],
            source,
        )
    )
    return ledger_size(session, edition_id)


def ledger_size(session: Session, edition_id: int) -> int:
    return int(session.execute(sa.select(sa.func.count()).where(D.c.edition_id == edition_id)).scalar_one())


class LedgerWriter:
    """The send loop's hot path: one held connection per worker, plain SQL, one commit per result.

    Going through the ORM cost about 1 ms per message. Here the transaction is SQLAlchemy's (BEGIN
    IMMEDIATE on SQLite, see db.py; COMMIT), and its statements go straight to the driver's cursor
    on that same connection: per statement SQLAlchemy's execution layer cost several times what
    SQLite itself takes, it ran under the GIL while the other connection waited, and this runs
    once per message.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.conn = engine.connect()
        self.sqlite = engine.dialect.name == "sqlite"
        mark = "?" if self.sqlite else "%s"
        self._sql = {name: sql.replace("?", mark) for name, sql in WRITER_SQL.items()}
        if not self.sqlite:
            self._sql["due_pending"] += " FOR UPDATE OF d SKIP LOCKED"
            self._sql["due_pending_behind"] += " FOR UPDATE OF d SKIP LOCKED"
            self._sql["due_deferred"] += " FOR UPDATE OF d SKIP LOCKED"
        self._dialect = engine.dialect
        self._driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._driver: Any = None
        self._cursor: Any = None
        self._after = 0  # the highest row id of this writer's last batch of pending rows

    def close(self) -> None:
        self._cursor = self._driver = None
        self.conn.close()

    def transaction(self) -> sa.RootTransaction:
        """Begin; the statements below run on this transaction's driver connection until it ends."""
        tx = self.conn.begin()
        driver: Any = self.conn.connection.driver_connection
        if driver is not self._driver:  # the first transaction, or a reconnect after an invalidation
            self._driver, self._cursor = driver, driver.cursor()
        return tx

    def _ts(self, moment: datetime | None) -> object:
        """SQLite keeps naive UTC text in the UTCDateTime format; PostgreSQL takes the aware value."""
        if moment is None or not self.sqlite:
            return moment
        return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

    def _run(self, name: str, params: tuple[object, ...] | list[tuple[object, ...]]) -> Any:
        """One statement on the driver's cursor; a driver error comes out as SQLAlchemy's, as from
        `exec_driver_sql`, so callers catch `sqlalchemy.exc` errors whichever path ran.

        While anything listens to the engine's statements (a query log, a test counting queries),
        they go through `exec_driver_sql` instead, so every listener still sees them.
        """
        if self._cursor is None or not self.conn.in_transaction():
            raise RuntimeError("LedgerWriter statements run inside transaction()")
        sql = self._sql[name]
        events = self.conn.dispatch
        if events.before_cursor_execute or events.after_cursor_execute:
            return self.conn.exec_driver_sql(sql, params)
        try:
            if isinstance(params, list):
                self._cursor.executemany(sql, params)
            else:
                self._cursor.execute(sql, params)
        except self._driver_error as exc:
            gone = self._dialect.is_disconnect(exc, self._driver, self._cursor)  # type: ignore[arg-type]
            if gone:
                self._cursor = self._driver = None
                self.conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(
                sql, params, exc, self._driver_error, connection_invalidated=gone, dialect=self._dialect
            ) from exc
        return self._cursor

    def claim_batch(
        self, edition_id: int, owner: str, lease_until: datetime, now: datetime, limit: int
    ) -> tuple[list[Claim], int]:
        """Lease up to `limit` due rows, marking (and counting) those whose reader is no longer active.

        Call inside `transaction()`. The subscriber's status is read here, at claim time, and again
        before each later copy of the batch (`still_wanted`).
        """
        found: list[Any] = self._run("due_pending", (edition_id, self._after, limit)).fetchall()
        after = int(found[-1][0]) if found else 0
        if len(found) < limit and self._after:
            found += self._run("due_pending_behind", (edition_id, self._after, limit - len(found))).fetchall()
        self._after = after
        if len(found) < limit:
            found += self._run("due_deferred", (edition_id, self._ts(now), limit - len(found))).fetchall()
        skipped = [(row[0],) for row in found if row[6] != SubscriberStatus.ACTIVE.value]
        if skipped:
            self._run("skip", [(SUPPRESSED_REPLY, self._ts(now), row_id) for (row_id,) in skipped])
        claims = sorted(
            (
                Claim(
                    delivery_id=int(row[0]),
                    subscriber_id=int(row[1]),
                    attempts=int(row[2]),
                    was_ambiguous=bool(row[3]),
                    email=str(row[4]),
                    name=str(row[5] or ""),
                    token_version=int(row[7]),
                    variant=str(row[8] or ""),
                    newsletter_id=int(row[9]),
                )
                for row in found
                if row[6] == SubscriberStatus.ACTIVE.value
            ),
            key=lambda c: c.delivery_id,
        )
        if claims:
            self._run("claim", [(owner, self._ts(lease_until), self._ts(now), c.delivery_id) for c in claims])
        return claims, len(skipped)

    def still_wanted(self, claim: Claim, *, now: datetime) -> bool:
        """Whether the reader of a claimed row is still active; if not (or erased), the row is skipped.

        Call inside `transaction()`, after the previous copy's reply and right before this copy: a
        lease outlives the status it was taken with. One primary-key lookup costs far less than the
        SMTP round trips of the copy it may keep from a reader who has just left.
        """
        found = self._run("reader_status", (claim.newsletter_id, claim.subscriber_id)).fetchone()
        if found is not None and found[0] == SubscriberStatus.ACTIVE.value:
            return True
        self._run("skip", (SUPPRESSED_REPLY, self._ts(now), claim.delivery_id))
        return False

    def sent(self, delivery_id: int, *, code: int, reply: str, message_id: str, now: datetime) -> None:
        ts = self._ts(now)
        self._run("sent", (code, reply[:1000], message_id, ts, ts, delivery_id))

    def deferred(
        self, delivery_id: int, *, code: int | None, reply: str, next_attempt_at: datetime, now: datetime
    ) -> None:
        self._run("deferred", (code, reply[:1000], self._ts(next_attempt_at), self._ts(now), delivery_id))

    def failed(self, delivery_id: int, *, code: int | None, reply: str, now: datetime) -> None:
        self._run("failed", (code, reply[:1000], self._ts(now), delivery_id))

    def ambiguous(self, delivery_id: int, *, reply: str, resend: bool, now: datetime) -> None:
        status = (DeliveryStatus.PENDING if resend else DeliveryStatus.AMBIGUOUS).value
        self._run("ambiguous", (status, reply[:1000], self._ts(now), delivery_id))

    def release(self, delivery_ids: Sequence[int], *, now: datetime) -> None:
        """Give claimed rows back untouched: nothing of them reached the server."""
        if delivery_ids:
            self._run("release", [(self._ts(now), i) for i in delivery_ids])

    def hold(self, delivery_id: int, *, code: int | None, reply: str, now: datetime) -> None:
        """A refusal not yet judged: `deferred` with no next attempt, no attempt counted (see RelayJudge)."""
        self._run("hold", (code, reply[:1000], self._ts(now), delivery_id))

    def settle(
        self, delivery_id: int, *, failed: bool, reply: str, next_at: datetime | None, now: datetime
    ) -> bool:
        """A held refusal judged its reader's; False if no longer held (nothing then follows for them)."""
        if failed:
            result = self._run("settle_failed", (reply[:1000], self._ts(now), delivery_id))
        else:
            result = self._run("settle_deferred", (self._ts(next_at), self._ts(now), delivery_id))
        return bool(result.rowcount)

    def release_held(self, delivery_ids: Sequence[int], *, reply: str, now: datetime) -> None:
        """Held refusals back to the queue untouched: the relay refused them, not their readers' servers."""
        if delivery_ids:
            self._run("release_held", [(reply[:1000], self._ts(now), i) for i in delivery_ids])

    def bounce(self, subscriber_id: int, *, now: datetime) -> None:
        self._run("bounce", (self._ts(now), subscriber_id))

    def soft_bounce(self, subscriber_id: int, *, limit: int, now: datetime) -> None:
        self._run("soft_bounce", (limit, self._ts(now), subscriber_id))


def claim_owners(session: Session, edition_id: int) -> list[str]:
    stmt = (
        sa.select(D.c.lease_owner)
        .where(D.c.edition_id == edition_id, D.c.status == DeliveryStatus.CLAIMED.value)
        .distinct()
    )
    return [str(o) for o in session.execute(stmt).scalars()]


def live_claims(session: Session, edition_id: int, *, now: datetime) -> dict[str, int]:
    """Rows claimed under a lease not yet expired, per owner: the senders still at work."""
    stmt = (
        sa.select(D.c.lease_owner, sa.func.count())
        .where(
            D.c.edition_id == edition_id,
            D.c.status == DeliveryStatus.CLAIMED.value,
            D.c.lease_until >= now,
        )
        .group_by(D.c.lease_owner)
    )
    return {str(owner): int(n) for owner, n in session.execute(stmt).all()}


def give_up_deferred(session: Session, edition_id: int, *, now: datetime) -> list[int]:
    """At the end of the edition's window, deferred rows become failed (a soft bounce each).

    A held refusal (no next attempt) is not one of them: nobody has judged it the reader's. The
    readers come from the UPDATE itself (RETURNING), so of several senders giving up at once each
    reader is returned to exactly one of them, and gets one soft bounce.
    """
    waiting = (
        D.c.edition_id == edition_id,
        D.c.status == DeliveryStatus.DEFERRED.value,
        D.c.next_attempt_at.is_not(None),
    )
    stmt = (
        sa.update(D)
        .where(*waiting)
        .values(
            status=DeliveryStatus.FAILED.value,
            smtp_reply=sa.func.substr(
                "gave up (temporary failure until the window closed): " + D.c.smtp_reply, 1, 1000
            ),
            next_attempt_at=None,
            updated_at=now,
        )
        .returning(D.c.subscriber_id)
    )
    return [int(i) for i in session.execute(stmt).scalars()]


def retry_failed(session: Session, edition_id: int, *, now: datetime) -> int:
    """Put failed and deferred rows back in the queue (editors' "retry the failed")."""
    result = session.execute(
        sa.update(D)
        .where(
            D.c.edition_id == edition_id,
            D.c.status.in_([DeliveryStatus.FAILED.value, DeliveryStatus.DEFERRED.value]),
        )
        .values(status=DeliveryStatus.PENDING.value, next_attempt_at=None, updated_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def next_due(session: Session, edition_id: int) -> datetime | None:
    """When the earliest deferred row may be tried again (None if nothing is waiting)."""
    return session.execute(
        sa.select(sa.func.min(D.c.next_attempt_at)).where(
            D.c.edition_id == edition_id, D.c.status == DeliveryStatus.DEFERRED.value
        )
    ).scalar()


def counts(session: Session, edition_id: int) -> LedgerCounts:
    stmt = sa.select(D.c.status, sa.func.count()).where(D.c.edition_id == edition_id).group_by(D.c.status)
    found = {str(status): int(n) for status, n in session.execute(stmt).all()}
    return LedgerCounts(**{s.value: found.get(s.value, 0) for s in DeliveryStatus})


def ambiguous_count(session: Session, edition_id: int) -> int:
    stmt = sa.select(sa.func.count()).where(D.c.edition_id == edition_id, D.c.was_ambiguous.is_(True))
    return int(session.execute(stmt).scalar_one())


def rows(
    session: Session,
    edition_id: int,
    *,
    statuses: Sequence[str] = (),
    ambiguous_only: bool = False,
    limit: int = 1000,
) -> list[LedgerRow]:
    stmt = select(Delivery).where(Delivery.edition_id == edition_id)
    if statuses:
        stmt = stmt.where(col(Delivery.status).in_(list(statuses)))
    if ambiguous_only:
        stmt = stmt.where(col(Delivery.was_ambiguous).is_(True))
    found = session.exec(stmt.order_by(col(Delivery.id)).limit(limit)).all()
    return [
        LedgerRow(
            subscriber_id=r.subscriber_id,
            email=r.email,
            status=r.status,
            attempts=r.attempts,
            smtp_code=r.smtp_code,
            smtp_reply=r.smtp_reply,
            was_ambiguous=r.was_ambiguous,
            sent_at=r.sent_at,
        )
        for r in found
    ]
