"""The CMS push API: `POST /api/articles` with `Authorization: Bearer <token>`.

The body is one article object or a list of them (the fields of `briefing articles import`).
Answers:

- 200 with `{"added": n, "updated": n, "unchanged": n, "rejected": n, "results": [...]}` whenever
  the request itself was well-formed, even if some articles were rejected; each result carries its
  `index` in the batch and either `id` and `url` or `error` (naming the field). Good articles are
  stored even when others in the batch are rejected; sending the same batch again is harmless.
- 401 for a missing, unknown or revoked token; 400 for a body that is not UTF-8 JSON, nests deeper
  than 32 levels, holds a number of more than 20 digits, or is not an object or list; 413 for a
  body over the size limit or a batch over MAX_BATCH articles. Never a 500 for what a client sent.

`GET /api/openapi.json` (with the same bearer token) describes these routes only, for CMS
developers; the rest of the app publishes no schema. Every /api/ route answers 401 without a token.

The app that includes this router provides `app.state.engine`, `app.state.clock` (a `Clock`: the
time a token is used and an article is stored comes from it) and, optionally, `app.state.settings`
with `api_max_body_bytes`.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from briefing import __version__, inputs
from briefing.domain import Clock
from briefing.errors import InvalidInput
from briefing.service import api_tokens as api_token_service
from briefing.service import articles as article_service
from briefing.store import api_tokens as token_store
from briefing.store.api_tokens import ApiTokenData

router = APIRouter(prefix="/api", tags=["api"])

DEFAULT_MAX_BODY = 1_000_000
MAX_BATCH = 1000
# The web app leaves /api/ alone, so these answers set their own headers.
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
BEARER = "bearerAuth"
API_DESCRIPTION = f"""\
Push the site's articles into briefing, where editors queue them for the morning email.

Send one article object, or a list of at most {MAX_BATCH}, with `Authorization: Bearer <token>` (an
administrator creates tokens with `briefing api-tokens create`). Articles are stored by canonical
URL (no fragment, no tracking parameters), so sending the same batch again changes nothing.

A well-formed request answers 200 with one result per article, in order: `added`, `updated`,
`unchanged`, or `rejected` with the reason as `field: reason`. A rejected article never stops the
others. The request as a whole is refused with 400 (not UTF-8 JSON, nested deeper than
{inputs.MAX_JSON_DEPTH} levels, a number of more than {inputs.MAX_JSON_DIGITS} digits, not an
object or list), 401 (no valid token) or 413 (body over the size limit, more than {MAX_BATCH} articles).
"""


class ApiJSON(JSONResponse):
    """JSON with every non-ASCII character escaped: an error that quotes a client's text can
    never fail to encode (a lone surrogate would make Starlette's UTF-8 encoding raise)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- documented shapes
# These models document the API (the OpenAPI schema); the route reads the body itself, so one bad
# article is rejected alone instead of failing the whole request's validation.


class ArticleIn(BaseModel):
    """One article as the CMS sends it; the same fields as a line of `briefing articles import`."""

    model_config = ConfigDict(title="Article", extra="allow")

    url: str = Field(
        max_length=inputs.MAX_URL,
        description="The article's http(s) address; stored without fragment or tracking parameters.",
        examples=["https://news.example.com/2026/11/27/budget"],
    )
    title: str = Field(max_length=inputs.MAX_HEADLINE, description="The headline; one line, required.")
    summary: str | None = Field(None, max_length=inputs.MAX_SUMMARY, description="Standfirst.")
    author: str | None = Field(None, max_length=inputs.MAX_NAME)
    section: str | None = Field(None, max_length=inputs.MAX_SECTION, examples=["Politics"])
    image_url: str | None = Field(None, max_length=inputs.MAX_URL, description="An http(s) image.")
    image: str | None = Field(None, description="Another name for image_url.")
    image_alt: str | None = Field(None, max_length=inputs.MAX_IMAGE_ALT)
    published_at: str | None = Field(
        None,
        description=(
            f"ISO 8601 date and time; without an offset it is UTC. Years {inputs.FIRST_YEAR} to "
            f"{inputs.LAST_YEAR} only."
        ),
        examples=["2026-11-27T23:40:00Z"],
    )
    published: str | None = Field(None, description="Another name for published_at.")


class PushResult(BaseModel):
    """What happened to one article of the batch, by its index."""

    index: int = Field(ge=0, description="The article's position in the batch, from 0.")
    status: Literal["added", "updated", "unchanged", "rejected"]
    id: int | None = Field(None, description="The stored article's id (not for rejected ones).")
    url: str | None = Field(None, description="The URL it is stored under (not for rejected ones).")
    error: str | None = Field(None, description='Why it was rejected: "field: reason".')


class PushResponse(BaseModel):
    """The batch's outcome: counts per status, and one result per article in order."""

    added: int = Field(ge=0)
    updated: int = Field(ge=0)
    unchanged: int = Field(ge=0)
    rejected: int = Field(ge=0)
    results: list[PushResult]


class ErrorBody(BaseModel):
    """Why the request as a whole was refused; nothing was stored."""

    error: str


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description, **extra}


_ARTICLE_REF = {"$ref": "#/components/schemas/Article"}
_REQUEST_BODY = {
    "required": True,
    "description": f"One article, or a list of at most {MAX_BATCH}.",
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [_ARTICLE_REF, {"type": "array", "items": _ARTICLE_REF, "maxItems": MAX_BATCH}]
            }
        }
    },
}


# --------------------------------------------------------------------------- the request


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
        return ApiJSON({"error": self.message}, status_code=self.status, headers={**HEADERS, **self.headers})


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
        raise _unauthorised()
    return found


def _unauthorised() -> _Refused:
    return _Refused(
        401, "a valid API token is required (Authorization: Bearer <token>)", {"WWW-Authenticate": "Bearer"}
    )


def _token_is_active(engine: sa.Engine, token: str) -> bool:
    """The push's tokens, checked without recording a use: a GET changes nothing."""
    if not token or len(token) > api_token_service.MAX_TOKEN_LENGTH:
        return False
    with Session(engine) as session:
        found = token_store.active_token_by_hash(session, api_token_service.hash_token(token))
    return found is not None


def _too_large(limit: int) -> _Refused:
    return _Refused(413, f"the body is larger than {limit} bytes; send the articles in smaller batches")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _records(body: bytes) -> list[Any]:
    """The batch, parsed under inputs.json_value's limits (depth, digits) and checked for shape."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refused(400, f"the body is not valid JSON: not UTF-8 (byte {exc.start + 1})") from None
    try:
        data = inputs.json_value(text)
    except InvalidInput as exc:
        raise _Refused(400, f"the body is {exc.message}") from None
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        if len(data) > MAX_BATCH:
            raise _Refused(413, f"at most {MAX_BATCH} articles per request (got {len(data)})")
        return data
    raise _Refused(400, "the body must be one article object or a list of them")


@router.post(
    "/articles",
    summary="Add or update articles",
    response_model=PushResponse,
    response_class=ApiJSON,
    responses={
        400: _error("The body is not JSON, is nested too deeply, or is not an article or a list."),
        401: _error(
            "No valid API token.",
            headers={"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
        ),
        413: _error(f"The body is over the size limit or holds more than {MAX_BATCH} articles."),
    },
    openapi_extra={"requestBody": _REQUEST_BODY, "security": [{BEARER: []}]},
)
async def post_articles(
    request: Request,
    engine: Annotated[sa.Engine, Depends(get_engine)],
    limit: Annotated[int, Depends(max_body_bytes)],
) -> JSONResponse:
    """Store each article by its canonical URL: added, updated when a field changed, or unchanged.

    A rejected article is reported by its index with the reason and does not stop the others.
    """
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
    return ApiJSON({**counts, "results": [r.as_json() for r in results]}, headers=HEADERS)


@functools.cache
def openapi_schema() -> dict[str, Any]:
    """The OpenAPI document of this router's routes alone, built once."""
    schema = get_openapi(
        title="briefing CMS API",
        version=__version__,
        description=API_DESCRIPTION,
        routes=router.routes,
    )
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Article"] = ArticleIn.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    components["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from `briefing api-tokens create`.",
        }
    }
    return schema


@router.get("/openapi.json", include_in_schema=False)
async def get_openapi_json(
    request: Request, engine: Annotated[sa.Engine, Depends(get_engine)]
) -> JSONResponse:
    """The schema for CMS developers, behind the same token as the push like every /api/ route."""
    if not await run_in_threadpool(_token_is_active, engine, _bearer(request)):
        return _unauthorised().response()
    return ApiJSON(openapi_schema(), headers=HEADERS)
