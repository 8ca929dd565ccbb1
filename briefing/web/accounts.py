"""Editors' accounts (argon2 password hashes) and the subscriber facts that signed links are checked against.

These are the only queries the web app runs outside briefing.store: the Editor table has no store
module yet, and the link checks need two columns (`token_version`, `updated_at`) that
`SubscriberData` does not carry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session, col, select

from briefing import inputs
from briefing.domain import SUPPRESSED_STATUSES, SubscriberData, SubscriberStatus
from briefing.errors import Conflict, InvalidInput, NotFound
from briefing.models import Editor, Subscriber, utcnow
from briefing.store import subscribers as subscriber_store

ROLES = ("editor", "admin")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 hashes any length; a cap keeps a login POST from costing megabytes

S = Subscriber.__table__  # type: ignore[attr-defined]

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the address is unknown, so a login takes as long whether or not it exists.
_DUMMY_HASH = _hasher.hash("briefing: no such editor")


@dataclass(frozen=True, slots=True)
class EditorAccount:
    id: int
    email: str
    role: str
    active: bool
    # Changes when the password changes, so sessions opened with the old password stop working.
    password_stamp: str
    last_login_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class LinkState:
    """A subscriber as a signed link sees them."""

    subscriber: SubscriberData
    token_version: int
    updated_at: datetime
    # Holds the loaded row for as long as the caller's session needs it: the session's identity
    # map is weak, so without this the store's next `session.get` would query the row again.
    row: object = field(default=None, repr=False, compare=False)


def _stamp(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def _account(row: Editor) -> EditorAccount:
    assert row.id is not None
    return EditorAccount(
        id=row.id,
        email=row.email,
        role=row.role,
        active=row.active,
        password_stamp=_stamp(row.password_hash),
        last_login_at=row.last_login_at,
    )


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"must be at least {MIN_PASSWORD} characters", field="password")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"must be at most {MAX_PASSWORD} characters", field="password")
    if "\x00" in password:
        raise InvalidInput("contains a NUL character", field="password")
    return password


def _find(session: Session, email: str) -> Editor | None:
    key = email.strip().lower()
    return session.exec(select(Editor).where(sa.func.lower(col(Editor.email)) == key)).first()


def add_editor(session: Session, email: str, password: str, *, admin: bool = False) -> EditorAccount:
    address = inputs.email_address(email)
    check_password(password)
    if _find(session, address) is not None:
        raise Conflict(f"{address} already has an account (use `briefing editors password`)", field="email")
    row = Editor(email=address, password_hash=_hasher.hash(password), role="admin" if admin else "editor")
    session.add(row)
    session.flush()
    return _account(row)


def list_editors(session: Session) -> list[EditorAccount]:
    return [
        _account(r) for r in session.exec(select(Editor).order_by(sa.func.lower(col(Editor.email)))).all()
    ]


def _require(session: Session, email: str) -> Editor:
    row = _find(session, email)
    if row is None:
        raise NotFound(f"no editor with the address {email.strip()}", field="email")
    return row


def set_active(session: Session, email: str, active: bool) -> EditorAccount:
    row = _require(session, email)
    row.active = active
    session.add(row)
    session.flush()
    return _account(row)


def set_password(session: Session, email: str, password: str) -> EditorAccount:
    row = _require(session, email)
    row.password_hash = _hasher.hash(check_password(password))
    session.add(row)
    session.flush()
    return _account(row)


def get_editor(session: Session, editor_id: int) -> EditorAccount | None:
    row = session.get(Editor, editor_id)
    return _account(row) if row is not None else None


def authenticate(session: Session, email: str, password: str) -> EditorAccount | None:
    """The account when the password matches and the account is active; None otherwise."""
    row = _find(session, email) if len(email) <= inputs.MAX_EMAIL else None
    if len(password) > MAX_PASSWORD:
        return None
    try:
        _hasher.verify(row.password_hash if row is not None else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None or not row.active:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        row.password_hash = _hasher.hash(password)
    row.last_login_at = utcnow()
    session.add(row)
    session.flush()
    return _account(row)


def unsubscribe_by_link(conn: sa.Connection, subscriber_id: int, max_version: int) -> LinkState | None:
    """The one-click unsubscribe in two Core statements on a plain connection.

    It is the hot path when mail providers POST for a whole list: an ORM session costs about as
    much again as the two statements themselves.

    The same rule as `briefing.store.subscribers.unsubscribe`: idempotent, the first timestamp is
    kept, and a bounced or complained address keeps its status. None when the id is unknown or
    the link's version is newer than the row's (a forgery that happens to verify cannot exist, but
    a deleted subscriber can).
    """
    found = conn.execute(
        sa.select(S.c.email, S.c.name, S.c.status, S.c.token_version, S.c.updated_at).where(
            S.c.id == subscriber_id
        )
    ).first()
    if found is None or max_version > found.token_version:
        return None
    status = found.status
    if status not in SUPPRESSED_STATUSES:
        now = utcnow()
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
    return LinkState(subscriber_store.to_data(row), row.token_version, row.updated_at, row)
