"""API tokens for the CMS push. Rows hold a SHA-256 of the token; the token itself is never stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from briefing.errors import Conflict, NotFound
from briefing.models import ApiToken


@dataclass(frozen=True, slots=True)
class ApiTokenData:
    id: int
    name: str
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def to_data(row: ApiToken) -> ApiTokenData:
    assert row.id is not None
    return ApiTokenData(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def add_token(session: Session, name: str, token_hash: str, *, now: datetime) -> ApiTokenData:
    if session.exec(select(ApiToken.id).where(ApiToken.name == name)).first() is not None:
        raise Conflict(
            f"a token named {name!r} exists already (revoked tokens keep their name)", field="name"
        )
    row = ApiToken(name=name, token_hash=token_hash, created_at=now)
    session.add(row)
    session.flush()
    return to_data(row)


def list_tokens(session: Session) -> list[ApiTokenData]:
    return [to_data(r) for r in session.exec(select(ApiToken).order_by(col(ApiToken.name))).all()]


def active_token_by_hash(session: Session, token_hash: str) -> ApiTokenData | None:
    row = session.exec(
        select(ApiToken).where(ApiToken.token_hash == token_hash, col(ApiToken.revoked_at).is_(None))
    ).first()
    return to_data(row) if row else None


def touch_token(session: Session, token_id: int, now: datetime) -> None:
    row = session.get(ApiToken, token_id)
    if row is not None:
        row.last_used_at = now
        session.add(row)
        session.flush()


def revoke_token(session: Session, name: str, now: datetime) -> tuple[ApiTokenData, bool]:
    """Returns (token, True) when revoked now, (token, False) when it already was."""
    row = session.exec(select(ApiToken).where(ApiToken.name == name)).first()
    if row is None:
        raise NotFound(f"no token named {name!r} (see `briefing tokens list`)", field="name")
    if row.revoked_at is not None:
        return to_data(row), False
    row.revoked_at = now
    session.add(row)
    session.flush()
    return to_data(row), True
