"""Subscribers: one row per address, keyed case-insensitively; suppression is never undone by an import."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from briefing.domain import SUPPRESSED_STATUSES, SubscriberData, SubscriberInput, SubscriberStatus
from briefing.errors import Conflict, NotFound
from briefing.models import Delivery, Subscriber, Subscription
from briefing.newsletter import PRIMARY_ID
from briefing.store import subscriptions as subscription_store

S = Subscriber.__table__  # type: ignore[attr-defined]
U = Subscription.__table__  # type: ignore[attr-defined]


@dataclass(slots=True)
class ImportCounts:
    added: int = 0  # new rows, active or pending
    added_suppressed: int = 0  # new rows stored suppressed: the file says they left or bounced
    updated: int = 0
    unchanged: int = 0
    suppressed: int = 0  # rows on the list that the file suppressed (or suppressed more firmly)
    kept_suppressed: int = 0  # rows already suppressed, left as they were
    duplicates: int = 0  # the same address earlier in the same file
    rejected: int = 0


# How firmly a status suppresses: a row moves only up this order, so "unsubscribed" in a file
# never hides that the address bounced or complained, and nothing lifts a blocklisting.
_FIRMNESS = ("unsubscribed", "bounced", "complained", "blocklisted")
SUPPRESSION_RANK = {SubscriberStatus(s): rank for rank, s in enumerate(_FIRMNESS, start=1)}


def to_data(row: Subscriber) -> SubscriberData:
    assert row.id is not None
    return SubscriberData(
        id=row.id,
        email=row.email,
        name=row.name,
        status=row.status,
        source=row.source,
        created_at=row.created_at,
        consent_at=row.consent_at,
        confirmed_at=row.confirmed_at,
        unsubscribed_at=row.unsubscribed_at,
        soft_bounce_count=row.soft_bounce_count,
        attributes=dict(row.attributes or {}),
    )


def add_subscriber(
    session: Session,
    item: SubscriberInput,
    *,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    source: str = "manual",
    newsletter_ids: Sequence[int] = (PRIMARY_ID,),
    now: datetime,
) -> SubscriberData:
    """A new reader on the given newsletters (the first one unless others are named)."""
    key = item.email.casefold()
    if session.exec(select(Subscriber.id).where(Subscriber.email_key == key)).first() is not None:
        raise Conflict(f"{item.email} is already on the list", field="email")
    row = Subscriber(
        email=item.email,
        email_key=key,
        name=item.name,
        status=status.value,
        source=source,
        consent_at=now,
        confirmed_at=now if status == SubscriberStatus.ACTIVE else None,
        attributes=dict(item.attributes or {}),
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    subscription_store.subscribe(session, [row.id], newsletter_ids, now=now)
    return to_data(row)


def get_subscriber(session: Session, subscriber_id: int) -> SubscriberData:
    row = session.get(Subscriber, subscriber_id)
    if row is None:
        raise NotFound(f"no subscriber with id {subscriber_id}", field="subscriber")
    return to_data(row)


def find_by_email(session: Session, email: str) -> SubscriberData | None:
    row = session.exec(select(Subscriber).where(Subscriber.email_key == email.casefold())).first()
    return to_data(row) if row else None


def get_by_email(session: Session, email: str) -> SubscriberData:
    found = find_by_email(session, email)
    if found is None:
        raise NotFound(f"{email} is not on the list", field="email")
    return found


def iter_subscribers(
    session: Session,
    *,
    status: str | None = None,
    search: str = "",
    batch: int = 1000,
    limit: int | None = None,
    newsletter_id: int | None = None,
) -> Iterator[SubscriberData]:
    """Stream subscribers by id in batches, so an export of a million rows stays small in memory.

    `newsletter_id`: only readers whose subscription to that newsletter is active.
    """
    last_id = 0
    yielded = 0
    while True:
        stmt = select(Subscriber).where(col(Subscriber.id) > last_id)
        if newsletter_id is not None:
            stmt = stmt.where(
                sa.select(sa.literal(1))
                .where(
                    U.c.subscriber_id == Subscriber.id,
                    U.c.newsletter_id == newsletter_id,
                    U.c.status == subscription_store.ACTIVE,
                )
                .exists()
            )
        if status:
            stmt = stmt.where(Subscriber.status == status)
        if search:
            like = f"%{search.casefold()}%"
            stmt = stmt.where(
                sa.or_(col(Subscriber.email_key).like(like), sa.func.lower(Subscriber.name).like(like))
            )
        rows = session.exec(stmt.order_by(col(Subscriber.id)).limit(batch)).all()
        if not rows:
            return
        for row in rows:
            yield to_data(row)
            yielded += 1
            if limit is not None and yielded >= limit:
                return
        last_id = rows[-1].id or last_id


def count_by_status(session: Session) -> dict[str, int]:
    counts = {s.value: 0 for s in SubscriberStatus}
    stmt = select(Subscriber.status, sa.func.count()).group_by(Subscriber.status)
    for status, n in session.exec(stmt).all():
        counts[status] = n
    return counts


def unsubscribe(session: Session, subscriber_id: int, *, now: datetime) -> tuple[SubscriberData, bool]:
    """Idempotent: returns (subscriber, changed). A bounced, complained or blocklisted address keeps
    its status."""
    row = session.get(Subscriber, subscriber_id)
    if row is None:
        raise NotFound(f"no subscriber with id {subscriber_id}", field="subscriber")
    if row.status in SUPPRESSED_STATUSES:
        return to_data(row), False
    row.status = SubscriberStatus.UNSUBSCRIBED.value
    row.unsubscribed_at = now
    row.updated_at = now
    session.add(row)
    session.flush()
    return to_data(row), True


def confirm(session: Session, subscriber_id: int, *, now: datetime) -> tuple[SubscriberData, bool]:
    """Pending -> active. Anything else is left as it is (a confirm replayed after unsubscribing)."""
    row = session.get(Subscriber, subscriber_id)
    if row is None:
        raise NotFound(f"no subscriber with id {subscriber_id}", field="subscriber")
    if row.status != SubscriberStatus.PENDING:
        return to_data(row), False
    row.status = SubscriberStatus.ACTIVE.value
    row.confirmed_at = now
    row.updated_at = now
    session.add(row)
    session.flush()
    return to_data(row), True


def set_status(
    session: Session, subscriber_id: int, status: SubscriberStatus, *, now: datetime
) -> SubscriberData:
    row = session.get(Subscriber, subscriber_id)
    if row is None:
        raise NotFound(f"no subscriber with id {subscriber_id}", field="subscriber")
    row.status = status.value
    row.updated_at = now
    if status == SubscriberStatus.UNSUBSCRIBED and row.unsubscribed_at is None:
        row.unsubscribed_at = row.updated_at
    session.add(row)
    session.flush()
    return to_data(row)


def record_soft_bounce(session: Session, subscriber_id: int, *, limit: int, now: datetime) -> bool:
    """Count one edition with a soft bounce; returns True when the subscriber is now bounced."""
    row = session.get(Subscriber, subscriber_id)
    if row is None:
        return False
    row.soft_bounce_count += 1
    if row.soft_bounce_count >= limit and row.status == SubscriberStatus.ACTIVE:
        row.status = SubscriberStatus.BOUNCED.value
    row.updated_at = now
    session.add(row)
    return row.status == SubscriberStatus.BOUNCED


def delete_subscriber(session: Session, subscriber_id: int) -> None:
    """Erase the person (privacy request): the row and their delivery records."""
    session.execute(sa.delete(Delivery).where(col(Delivery.subscriber_id) == subscriber_id))
    session.execute(sa.delete(Subscriber).where(col(Subscriber.id) == subscriber_id))


def import_batch(
    session: Session,
    items: Sequence[SubscriberInput],
    *,
    status: SubscriberStatus,
    source: str,
    first_new_id: int,
    counts: ImportCounts,
    newsletter_ids: Sequence[int] = (PRIMARY_ID,),
    named: Mapping[str, Sequence[int]] | None = None,
    now: datetime,
) -> None:
    """Upsert one batch of validated rows.

    `status` is what a subscribed row becomes (active or pending); a row's own status (from the
    file) is honoured when it is pending or a suppression. A suppressing row suppresses a reader
    who is on the list, because the list the newsroom leaves says they left; a suppressed reader
    is never re-activated, only suppressed more firmly (SUPPRESSION_RANK).
    `first_new_id` is the first id this import could have created: a stored row at or above it
    came from earlier in the same file, which makes the row a duplicate, not an update.
    A new row goes on `newsletter_ids`, or on those `named` gives for its address key (the file
    or the command named them); a reader already on the list is added to the named ones only,
    and never put back on one they left.
    """
    if not items:
        return
    unique: dict[str, SubscriberInput] = {}
    for item in items:
        key = item.email.casefold()
        if key in unique:
            counts.duplicates += 1
            continue
        unique[key] = item
    existing = {
        row.email_key: row
        for row in session.exec(select(Subscriber).where(col(Subscriber.email_key).in_(list(unique)))).all()
    }
    new_rows: list[dict[str, Any]] = []
    known: dict[tuple[int, ...], list[int]] = {}  # readers on the list, by the newsletters named for them
    for key, item in unique.items():
        wanted = _wanted_status(item, status)
        row = existing.get(key)
        if row is None:
            new_rows.append(_new_row(item, key, wanted, source, now))
            counts.added_suppressed += wanted in SUPPRESSED_STATUSES
            counts.added += wanted not in SUPPRESSED_STATUSES
        elif row.id is not None and row.id >= first_new_id:
            counts.duplicates += 1
            continue
        elif row.status in SUPPRESSED_STATUSES or wanted in SUPPRESSED_STATUSES:
            if _suppress(session, row, item, wanted, now):
                counts.suppressed += 1
            else:
                counts.kept_suppressed += 1
        elif _update(session, row, item, wanted, now):
            counts.updated += 1
        else:
            counts.unchanged += 1
        if row is not None and row.id is not None and named and key in named:
            known.setdefault(tuple(sorted(set(named[key]))), []).append(row.id)
    if new_rows:
        session.execute(sa.insert(Subscriber), new_rows)
        keys = [row["email_key"] for row in new_rows]
        new_ids = session.exec(
            select(Subscriber.id, Subscriber.email_key).where(col(Subscriber.email_key).in_(keys))
        ).all()
        groups: dict[tuple[int, ...], list[int]] = {}
        for new_id, new_key in new_ids:
            if new_id is None:
                continue
            wanted_ids = named.get(new_key, newsletter_ids) if named else newsletter_ids
            groups.setdefault(tuple(sorted(set(wanted_ids))), []).append(new_id)
        for ids, members in groups.items():
            subscription_store.subscribe(session, members, ids, now=now)
    for ids, members in known.items():
        subscription_store.subscribe(session, members, ids, reactivate=False, now=now)
    session.flush()


def _wanted_status(item: SubscriberInput, status: SubscriberStatus) -> SubscriberStatus:
    if item.status is None or item.status == SubscriberStatus.ACTIVE:
        return status
    return item.status  # pending, or a suppression


def _new_row(
    item: SubscriberInput, key: str, status: SubscriberStatus, source: str, now: datetime
) -> dict[str, Any]:
    """A new row as the file describes it; the import's moment fills what the file leaves out.

    Importing active or pending rows is the newsroom's statement of consent, dated now unless
    the file says when; a suppressed row records no consent it never gave.
    """
    mailable = status not in SUPPRESSED_STATUSES
    return {
        "email": item.email,
        "email_key": key,
        "name": item.name,
        "status": status.value,
        "source": item.source or source,
        "consent_at": item.consent_at or (now if mailable else None),
        "confirmed_at": item.confirmed_at or (now if status == SubscriberStatus.ACTIVE else None),
        "unsubscribed_at": item.unsubscribed_at or (now if status == SubscriberStatus.UNSUBSCRIBED else None),
        "soft_bounce_count": 0,
        "token_version": 1,
        "attributes": dict(item.attributes or {}),
        "created_at": item.created_at or now,
        "updated_at": now,
    }


def _suppress(
    session: Session, row: Subscriber, item: SubscriberInput, wanted: SubscriberStatus, now: datetime
) -> bool:
    """Move a row to the file's suppression if that is firmer than where it stands; True if moved."""
    current = SUPPRESSION_RANK.get(SubscriberStatus(row.status), 0)
    if SUPPRESSION_RANK.get(wanted, 0) <= current:
        return False
    row.status = wanted.value
    if wanted == SubscriberStatus.UNSUBSCRIBED:
        row.unsubscribed_at = item.unsubscribed_at or now
    row.updated_at = now
    session.add(row)
    return True


def _update(
    session: Session, row: Subscriber, item: SubscriberInput, wanted: SubscriberStatus, now: datetime
) -> bool:
    """A reader on the list, named again: a new name and attributes; pending confirmed if wanted."""
    changed = False
    if item.name and item.name != row.name:
        row.name = item.name
        changed = True
    if row.status == SubscriberStatus.PENDING and wanted == SubscriberStatus.ACTIVE:
        row.status = SubscriberStatus.ACTIVE.value
        row.confirmed_at = item.confirmed_at or now
        changed = True
    if item.attributes:
        merged = {**(row.attributes or {}), **item.attributes}
        if merged != row.attributes:
            row.attributes = merged
            changed = True
    if changed:
        row.updated_at = now
        session.add(row)
    return changed


def next_id(session: Session) -> int:
    current = session.exec(select(sa.func.max(Subscriber.id))).one()
    return int(current or 0) + 1


def reset_soft_bounces(session: Session, edition_id: int) -> None:
    """Any delivered copy clears the soft-bounce count (three editions in a row make a bounce)."""
    delivered = sa.select(col(Delivery.subscriber_id)).where(
        col(Delivery.edition_id) == edition_id, col(Delivery.status) == "sent"
    )
    session.execute(
        sa.update(Subscriber)
        .where(col(Subscriber.soft_bounce_count) > 0, col(Subscriber.id).in_(delivered))
        .values(soft_bounce_count=0)
    )


@dataclass(frozen=True, slots=True)
class LinkState:
    """A subscriber as a signed link sees them."""

    subscriber: SubscriberData
    token_version: int
    updated_at: datetime
    email_key: str = ""  # the address a confirm link must have been sent to (links.address_tag)
    # Holds the loaded row for as long as the caller's session needs it: the session's identity
    # map is weak, so without this the store's next `session.get` would query the row again.
    row: object = field(default=None, repr=False, compare=False)


def unsubscribe_by_link(
    conn: sa.Connection,
    subscriber_id: int,
    max_version: int,
    *,
    newsletter_id: int = PRIMARY_ID,
    now: datetime,
) -> LinkState | None:
    """The one-click unsubscribe from one newsletter, in Core statements on a plain connection.

    It is the hot path when mail providers POST for a whole list: an ORM session costs about as
    much again as the statements themselves.

    The reader leaves that newsletter only. When it was the last one they were on, the address
    is unsubscribed as `briefing.store.subscribers.unsubscribe` does it: idempotent, the first
    timestamp is kept, and a bounced or complained address keeps its status. None when the id is
    unknown or the link's version is newer than the row's (a forgery that happens to verify
    cannot exist, but a deleted subscriber can).
    """
    found = conn.execute(
        sa.select(S.c.email, S.c.name, S.c.status, S.c.token_version, S.c.updated_at).where(
            S.c.id == subscriber_id
        )
    ).first()
    if found is None or max_version > found.token_version:
        return None
    conn.execute(
        sa.update(U)
        .where(
            U.c.subscriber_id == subscriber_id,
            U.c.newsletter_id == newsletter_id,
            U.c.status == subscription_store.ACTIVE,
        )
        .values(status=subscription_store.UNSUBSCRIBED, unsubscribed_at=now, updated_at=now)
    )
    still_on = conn.execute(
        sa.select(U.c.id)
        .where(U.c.subscriber_id == subscriber_id, U.c.status == subscription_store.ACTIVE)
        .limit(1)
    ).first()
    status = found.status
    if still_on is None and status not in SUPPRESSED_STATUSES:
        conn.execute(
            sa.update(S)
            .where(S.c.id == subscriber_id, S.c.status.not_in([s.value for s in SUPPRESSED_STATUSES]))
            .values(status=SubscriberStatus.UNSUBSCRIBED.value, unsubscribed_at=now, updated_at=now)
        )
        status = SubscriberStatus.UNSUBSCRIBED.value
    data = SubscriberData(id=subscriber_id, email=found.email, name=found.name, status=status)
    return LinkState(data, found.token_version, found.updated_at)


def link_state(session: Session, subscriber_id: int) -> LinkState | None:
    row = session.get(Subscriber, subscriber_id)
    if row is None:
        return None
    return LinkState(to_data(row), row.token_version, row.updated_at, row.email_key, row)
