"""Articles pushed by the site's CMS, and the bearer tokens that let it push.

A token is shown once when created and only its SHA-256 is kept, so a copy of the database does
not hand out working credentials. A batch is stored item by item: a bad article is reported by its
index and never blocks the good ones, and pushing the same batch twice changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from briefing import files, inputs
from briefing.db import session_scope
from briefing.domain import ArticleSource
from briefing.errors import InvalidInput
from briefing.feed_entries import canonical_url
from briefing.store import articles as article_store
from briefing.store import tokens as token_store
from briefing.store.tokens import ApiTokenData

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


@dataclass(frozen=True, slots=True)
class PushResult:
    index: int
    status: str  # added, updated, unchanged, rejected
    id: int | None = None
    url: str = ""
    error: str = ""

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"index": self.index, "status": self.status}
        if self.status == "rejected":
            out["error"] = self.error
        else:
            out["id"] = self.id
            out["url"] = self.url
        return out


def store_pushed_articles(engine: sa.Engine, records: Sequence[object], *, now: datetime) -> list[PushResult]:
    """Validate and upsert each record by (canonical) URL, in one transaction with a savepoint each."""
    results: list[PushResult] = []
    with session_scope(engine) as session:
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                results.append(PushResult(index, "rejected", error="each article must be a JSON object"))
                continue
            try:
                item = files.article_input(record, source=ArticleSource.API.value)
                item = dataclasses.replace(item, url=canonical_url(item.url))
            except InvalidInput as exc:
                results.append(PushResult(index, "rejected", error=str(exc)))
                continue
            results.append(_upsert(session, index, item, now))
    return results


def _upsert(session: Session, index: int, item: article_store.ArticleInput, now: datetime) -> PushResult:
    for attempt in range(2):
        try:
            with session.begin_nested():
                article, outcome = article_store.upsert_article(session, item, now=now)
            return PushResult(index, outcome, article.id, article.url)
        except sa.exc.IntegrityError:
            if attempt:  # a concurrent push stored the same URL first; the retry finds it
                return PushResult(
                    index, "rejected", error="url: could not be stored (conflict); send it again"
                )
    raise AssertionError("unreachable")
