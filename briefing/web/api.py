"""The CMS push API: `POST /api/articles` with `Authorization: Bearer <token>`.

The body is one article object or a list of them (the fields of `briefing articles import`).
Answers:

- 200 with `{"added": n, "updated": n, "unchanged": n, "rejected": n, "results": [...]}` whenever
  the request itself was well-formed, even if some articles were rejected; each result carries its
  `index` in the batch and either `id` and `url` or `error` (naming the field). Good articles are
  stored even when others in the batch are rejected; sending the same batch again is harmless.
- 401 for a missing, unknown or revoked token; 400 for a body that is not JSON or not an object or
  list; 413 for a body over the size limit or a batch over MAX_BATCH articles.

The app that includes this router provides `app.state.engine`, `app.state.clock` (a `Clock`: the
time a token is used and an article is stored comes from it) and, optionally, `app.state.settings`
with `api_max_body_bytes`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from briefing.domain import Clock
from briefing.service import api_tokens as api_token_service
from briefing.service import articles as article_service
from briefing.store.api_tokens import ApiTokenData

router = APIRouter(prefix="/api", tags=["api"])

DEFAULT_MAX_BODY = 1_000_000
MAX_BATCH = 1000
# The web app leaves /api/ alone, so these answers set their own headers.
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def get_engine(request: Request) -> sa.Engine:
    engine: sa.Engine = request.app.state.engine
    return engine


def max_body_bytes(request: Request) -> int:
    settings = getattr(request.app.state, "settings", None)
    value = getattr(settings, "api_max_body_bytes", None)
    return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_BODY


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.message}, status_code=self.status, headers={**HEADERS, **self.headers}
        )


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _now(request: Request) -> datetime:
    """The time on the app's clock (the edge hands it in; tests set it)."""
    clock: Clock = request.app.state.clock
    return clock.now()


async def _authenticated(request: Request, engine: sa.Engine) -> ApiTokenData:
    token = _bearer(request)
    found = (
        await run_in_threadpool(api_token_service.authenticate, engine, token, now=_now(request))
        if token
        else None
    )
    if found is None:
        raise _Refused(
            401,
            "a valid API token is required (Authorization: Bearer <token>)",
            {"WWW-Authenticate": "Bearer"},
        )
    return found


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _Refused(413, f"the body is larger than {limit} bytes; send the articles in smaller batches")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(
                413, f"the body is larger than {limit} bytes; send the articles in smaller batches"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _records(body: bytes) -> list[Any]:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Refused(400, f"the body is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        if len(data) > MAX_BATCH:
            raise _Refused(413, f"at most {MAX_BATCH} articles per request (got {len(data)})")
        return data
    raise _Refused(400, "the body must be one article object or a list of them")


@router.post("/articles")
async def post_articles(
    request: Request,
    engine: Annotated[sa.Engine, Depends(get_engine)],
    limit: Annotated[int, Depends(max_body_bytes)],
) -> JSONResponse:
    """Add or update articles from the CMS; see the module docstring for the answers."""
    try:
        await _authenticated(request, engine)  # before reading the body: strangers cost nothing
        records = _records(await _read_body(request, limit))
    except _Refused as refused:
        return refused.response()
    results = await run_in_threadpool(
        article_service.store_pushed_articles, engine, records, now=_now(request)
    )
    counts = {status: 0 for status in ("added", "updated", "unchanged", "rejected")}
    for r in results:
        counts[r.status] += 1
    return JSONResponse({**counts, "results": [r.as_json() for r in results]}, headers=HEADERS)
