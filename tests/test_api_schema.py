"""The CMS API's published OpenAPI schema, and schemathesis run against the real app with it.

The app is the one `briefing serve` runs (create_app), on a fresh SQLite file, called in-process
with a valid bearer token. Every generated request, fitting the schema or not, must get a
documented status (never a 5xx) and a body and headers that match the schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import schemathesis
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from briefing.db import session_scope
from briefing.service import api_tokens as api_token_service
from briefing.store import api_tokens as token_store
from tests.fixtures.web import BASE_URL, FIXED_NOW

pytestmark = pytest.mark.timeout(120)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def api_token(sqlite_engine: sa.Engine) -> str:
    with session_scope(sqlite_engine) as session:
        _, secret = api_token_service.create_token(session, "cms", now=FIXED_NOW - timedelta(days=1))
    return secret


@pytest.fixture
def api_client(web_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(web_app, base_url=BASE_URL) as c:
        yield c


def test_the_schema_describes_the_api_routes_only(api_client: TestClient, api_token: str) -> None:
    response = api_client.get("/api/openapi.json", headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("application/json")
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert list(schema["paths"]) == ["/api/articles"]
    operation = schema["paths"]["/api/articles"]["post"]
    assert set(operation["responses"]) == {"200", "400", "401", "413"}
    assert operation["security"] == [{"bearerAuth": []}]
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    article = schema["components"]["schemas"]["Article"]
    assert set(article["required"]) == {"url", "title"}
    assert {"summary", "section", "published_at", "image_url"} <= set(article["properties"])
    result = schema["components"]["schemas"]["PushResult"]
    assert result["properties"]["status"]["enum"] == ["added", "updated", "unchanged", "rejected"]


def test_the_schema_needs_a_token_and_reading_it_records_no_use(
    api_client: TestClient, sqlite_engine: sa.Engine, api_token: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer brf_not-a-real-token"}):
        response = api_client.get("/api/openapi.json", headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert "paths" not in response.json()
    assert api_client.get("/api/openapi.json", headers={"Authorization": f"Bearer {api_token}"}).is_success
    with session_scope(sqlite_engine) as session:
        (token,) = token_store.list_tokens(session)
    assert token.last_used_at is None  # a GET changes nothing, not even the token's last use


def test_the_rest_of_the_app_publishes_no_schema_or_docs(api_client: TestClient, api_token: str) -> None:
    headers = {"Authorization": f"Bearer {api_token}"}
    for path in ("/openapi.json", "/docs", "/redoc", "/api/docs", "/api/redoc"):
        assert api_client.get(path, headers=headers).status_code == 404, path


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_schema(
    web_app: FastAPI, api_token: str, mode: GenerationMode
) -> None:
    headers = {"Authorization": f"Bearer {api_token}"}
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", web_app, headers=headers)
    operation = schema["/api/articles"]["POST"]
    statuses: set[int] = set()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=40,
        deadline=None,  # a busy machine is slow, not wrong
        suppress_health_check=list(HealthCheck),
    )
    def call(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        statuses.add(response.status_code)

    call()
    # The run reached the route with a token that works, not only the 401 wall.
    assert statuses & {200, 400, 413}, statuses
    if mode is GenerationMode.POSITIVE:
        assert 200 in statuses
