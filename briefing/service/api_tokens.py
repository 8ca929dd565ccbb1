"""The bearer tokens that let the site's CMS push articles (`briefing api-tokens ...`).

A token is shown once when created and only its SHA-256 is kept, so a copy of the database does
not hand out working credentials. Revoking takes effect at once.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from briefing import inputs
from briefing.db import session_scope
from briefing.store import api_tokens as token_store
from briefing.store.api_tokens import ApiTokenData

TOKEN_PREFIX = "brf_"  # lets secret scanners and people recognise a leaked token

MAX_TOKEN_LENGTH = 200


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, name: str, *, now: datetime) -> tuple[ApiTokenData, str]:
    """Store a new token under `name`; returns it with the secret, which is never retrievable again."""
    clean = inputs.one_line(name, field="name", max_len=100, required=True)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token_store.add_token(session, clean, hash_token(secret), now=now), secret


def revoke_token(session: Session, name: str, *, now: datetime) -> tuple[ApiTokenData, bool]:
    """Revoke at once; (token, False) when it already was revoked."""
    return token_store.revoke_token(session, name.strip(), now)


def authenticate(engine: sa.Engine, presented: str, *, now: datetime) -> ApiTokenData | None:
    """The active token matching `presented`, or None. Records when it was last used."""
    token = presented.strip()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    with session_scope(engine) as session:
        found = token_store.active_token_by_hash(session, hash_token(token))
        if found is not None:
            token_store.touch_token(session, found.id, now)
        return found
