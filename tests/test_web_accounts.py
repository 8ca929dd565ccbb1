"""Account safety on the editors' side: who sees readers' addresses, how guessing a password stops,
whose word the app takes for a client's address, what signing out means after a restart, that a
password check holds no other request up, and where redirects lead.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from briefing.config import load_settings
from briefing.db import session_scope
from briefing.errors import ConfigError, NotFound
from briefing.mail.pool import open_transport
from briefing.service import editors as editor_service
from briefing.web.auth import SESSION_COOKIE
from briefing.web.proxies import TrustedProxies
from tests.fixtures.clock import ManualClock
from tests.fixtures.smtp import SmtpTestServer
from tests.fixtures.waiting import wait_until
from tests.fixtures.web import (
    ADMIN_EMAIL,
    BASE_URL,
    EDITION_DAY,
    EDITOR_EMAIL,
    FIXED_NOW,
    LINK_SECRET,
    PASSWORD,
    add_editor,
    add_subscriber,
    csrf_token,
    free_port,
    login,
    queue_stories,
    send_edition,
    web_settings_for,
)

pytestmark = pytest.mark.timeout(60)

SESSION_SECRET = "test-session-secret-fedcba9876543210"
WRONG = "not the password at all"


def client_at(app: FastAPI, address: str) -> TestClient:
    """A browser on its own address (TestClient lets a test say where a request comes from)."""
    return TestClient(app, base_url=BASE_URL, follow_redirects=False, client=(address, 50000))


# --------------------------------------------------------------------------- readers' addresses


def test_only_administrators_see_the_addresses_of_failed_copies(
    make_app: Callable[..., FastAPI],
    web_settings: Any,
    sqlite_engine: sa.Engine,
    smtp_server_factory: Callable[..., SmtpTestServer],
) -> None:
    queue_stories(sqlite_engine)
    add_subscriber(sqlite_engine, "perm.jane@example.org", "Jane")  # the test server answers 550
    add_subscriber(sqlite_engine, "reader@example.com", "Reader")
    add_editor(sqlite_engine)
    add_editor(sqlite_engine, ADMIN_EMAIL, admin=True)
    server = smtp_server_factory()
    pool = open_transport(server.url(), pool_size=1, timeout=10)
    try:
        outcome = send_edition(sqlite_engine, web_settings, pool)
        assert outcome.report is not None and outcome.report.counts.failed == 1
        app = make_app(transport=pool)
        page = f"/editor/editions/{EDITION_DAY.isoformat()}"
        with TestClient(app, base_url=BASE_URL, follow_redirects=False) as editor:
            assert login(editor).status_code == 303
            seen = editor.get(page)
            assert seen.status_code == 200 and "User unknown" in seen.text
            assert "perm.jane" not in seen.text, "the mail server's reply gave the address away"
            assert "p•••@example.org" in seen.text
        with TestClient(app, base_url=BASE_URL, follow_redirects=False) as admin:
            assert login(admin, ADMIN_EMAIL).status_code == 303
            assert "perm.jane@example.org" in admin.get(page).text
    finally:
        pool.close()


# --------------------------------------------------------------------------- guessing passwords


def test_failed_sign_ins_lock_the_account_whatever_the_address(
    web_app: FastAPI, sqlite_engine: sa.Engine, web_clock: ManualClock
) -> None:
    add_editor(sqlite_engine)
    for i in range(10):
        attempt = login(client_at(web_app, f"198.51.100.{i + 1}"), password=WRONG)
        assert attempt.status_code == 401, i
    refused = login(client_at(web_app, "198.51.100.200"), password=WRONG)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "900"
    assert "Traceback" not in refused.text

    owner = client_at(web_app, "203.0.113.7")
    assert login(owner).status_code == 429, "the right password waits until the lock lifts"
    assert SESSION_COOKIE not in owner.cookies
    add_editor(sqlite_engine, "other@example.com")
    assert login(client_at(web_app, "198.51.100.201"), "other@example.com").status_code == 303

    web_clock.advance(timedelta(seconds=899))
    late = login(owner)
    assert late.status_code == 429 and late.headers["retry-after"] == "1"
    web_clock.advance(timedelta(seconds=2))
    assert login(owner).status_code == 303


def test_successful_sign_ins_do_not_count_towards_the_lock(
    make_app: Callable[..., FastAPI], sqlite_url: str, sqlite_engine: sa.Engine
) -> None:
    app = make_app(settings=web_settings_for(sqlite_url, login_rate_account="3/15m"))
    add_editor(sqlite_engine)
    for i in range(4):
        assert login(client_at(app, f"198.51.100.{i + 1}")).status_code == 303, i
    for i in range(2):
        assert login(client_at(app, f"192.0.2.{i + 1}"), password=WRONG).status_code == 401
    assert login(client_at(app, "192.0.2.100")).status_code == 303
    assert login(client_at(app, "192.0.2.3"), password=WRONG).status_code == 401
    assert login(client_at(app, "192.0.2.101")).status_code == 429, "three failures lock the account"


# --------------------------------------------------------------------------- forwarded addresses


def subscribe_from(browser: TestClient, number: int, forwarded_for: str) -> int:
    response = browser.post(
        "/subscribe",
        data={"email": f"reader{number}@example.com"},
        headers={"X-Forwarded-For": forwarded_for},
    )
    return response.status_code


def test_forwarded_addresses_are_ignored_by_default(web_app: FastAPI) -> None:
    local = client_at(web_app, "127.0.0.1")
    answers = [subscribe_from(local, i, f"198.51.100.{i + 1}") for i in range(6)]
    assert answers == [200] * 5 + [429], "a local process posed as six clients"


def test_forwarded_addresses_count_only_from_listed_proxies(
    make_app: Callable[..., FastAPI], sqlite_url: str
) -> None:
    settings = web_settings_for(sqlite_url, trusted_proxies="127.0.0.1, 10.0.0.0/8")
    app = make_app(settings=settings)
    proxy = client_at(app, "127.0.0.1")
    assert [subscribe_from(proxy, i, f"198.51.100.{i + 1}") for i in range(6)] == [200] * 6
    # A client's own X-Forwarded-For is kept by the proxy in front of what it appends: the first
    # untrusted address from the right is the one counted, whatever the client wrote.
    spoofed = [subscribe_from(proxy, 10 + i, f"192.0.2.{i + 1}, 203.0.113.5, 10.1.2.3") for i in range(6)]
    assert spoofed == [200] * 5 + [429]
    stranger = client_at(app, "192.0.2.50")
    assert [subscribe_from(stranger, 20 + i, f"198.51.100.{i + 1}") for i in range(6)] == [200] * 5 + [429]


SERVE = textwrap.dedent(
    """
    import typer
    from briefing.cli.common import reset_state
    from briefing.cli.web import register
    app = typer.Typer()
    @app.callback()
    def _root() -> None:
        reset_state()
    register(app)
    app()
    """
)


def post_status(url: str, data: dict[str, str], headers: dict[str, str]) -> int:
    body = urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


def test_serve_takes_no_forwarded_address_from_a_local_process(tmp_path: Path) -> None:
    """`briefing serve` as operators run it: uvicorn must not believe 127.0.0.1's X-Forwarded-For."""
    port = free_port()
    env = dict(
        os.environ,
        BRIEFING_DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}",
        BRIEFING_SECRET_KEY=LINK_SECRET,
        BRIEFING_SMTP_URL="memory://",
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
    )
    env.pop("BRIEFING_TRUSTED_PROXIES", None)
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, "serve", "--port", str(port), "--no-access-log"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            return True
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                return True
        except OSError:
            return False

    try:
        assert wait_until(up, timeout=30, every=0.1) and process.poll() is None
        answers = [
            post_status(
                f"{base}/subscribe",
                {"email": f"reader{i}@example.com"},
                {"X-Forwarded-For": f"198.51.100.{i + 1}"},
            )
            for i in range(6)
        ]
    finally:
        process.send_signal(signal.SIGTERM)
        if not wait_until(lambda: process.poll() is not None, timeout=15):
            process.kill()
        output = process.communicate()[0].decode(errors="replace")
    assert answers == [200] * 5 + [429], output


def test_the_forwarded_chain_is_read_from_the_right() -> None:
    from ipaddress import ip_network

    proxies = TrustedProxies(lambda *_: None, [ip_network("10.0.0.0/8"), ip_network("::1/128")])  # type: ignore[arg-type,return-value]
    assert proxies.forwarded_client("10.0.0.1", "203.0.113.5") == "203.0.113.5"
    assert proxies.forwarded_client("10.0.0.1", "192.0.2.1, 203.0.113.5, 10.9.9.9") == "203.0.113.5"
    assert proxies.forwarded_client("10.0.0.1", "10.2.2.2, 10.3.3.3") == "10.2.2.2"
    assert proxies.forwarded_client("10.0.0.1", "not-an-address") == "10.0.0.1"
    assert proxies.forwarded_client("10.0.0.1", "192.0.2.1, junk, 10.5.5.5") == "10.5.5.5"
    assert proxies.forwarded_client("::1", "2001:db8::1") == "2001:db8::1"


def test_a_bad_proxy_setting_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(trusted_proxies="10.0.0.0/8, proxy.example.net")
    assert caught.value.field == "BRIEFING_TRUSTED_PROXIES"
    assert "proxy.example.net" in str(caught.value)


# --------------------------------------------------------------------------- signing out


def test_a_signed_out_cookie_stays_refused_after_a_restart(
    make_app: Callable[..., FastAPI], sqlite_url: str, sqlite_engine: sa.Engine
) -> None:
    settings = web_settings_for(sqlite_url, session_secret=SESSION_SECRET)
    add_editor(sqlite_engine)
    with TestClient(make_app(settings=settings), base_url=BASE_URL, follow_redirects=False) as before:
        assert login(before).status_code == 303
        kept = before.cookies.get(SESSION_COOKIE) or ""
        before.cookies.clear()
        assert login(before).status_code == 303
        copied = before.cookies.get(SESSION_COOKIE) or ""
        out = before.post("/editor/logout", data={"csrf_token": csrf_token(before)})
        assert out.status_code == 303
    assert kept and copied

    restarted = make_app(settings=settings)
    with TestClient(restarted, base_url=BASE_URL, follow_redirects=False) as after:
        after.cookies.set(SESSION_COOKIE, copied)
        refused = after.get("/editor/queue")
        assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
        after.cookies.set(SESSION_COOKIE, kept)
        assert after.get("/editor/queue").status_code == 303, "signing out ends every session"
        assert login(after).status_code == 303, "signing in again works"
        assert after.get("/editor/queue").status_code == 200


def test_a_session_from_before_a_restart_still_works(
    make_app: Callable[..., FastAPI], sqlite_url: str, sqlite_engine: sa.Engine
) -> None:
    settings = web_settings_for(sqlite_url, session_secret=SESSION_SECRET)
    add_editor(sqlite_engine)
    with TestClient(make_app(settings=settings), base_url=BASE_URL, follow_redirects=False) as before:
        assert login(before).status_code == 303
        cookie = before.cookies.get(SESSION_COOKIE) or ""
    with TestClient(make_app(settings=settings), base_url=BASE_URL, follow_redirects=False) as after:
        after.cookies.set(SESSION_COOKIE, cookie)
        assert after.get("/editor/queue").status_code == 200


# --------------------------------------------------------------------------- the database gate


class HeldHasher(PasswordHasher):
    """argon2, but each check waits until the test lets it go (so the test sees what it holds)."""

    def __init__(self) -> None:
        super().__init__()
        self.checking = threading.Event()
        self.release = threading.Event()

    def verify(self, hash: str | bytes, password: str | bytes) -> Any:
        self.checking.set()
        if not self.release.wait(30):
            raise AssertionError("the test never released the password check")
        return super().verify(hash, password)


def test_a_password_check_in_progress_does_not_hold_the_database(
    make_app: Callable[..., FastAPI], sqlite_engine: sa.Engine
) -> None:
    add_editor(sqlite_engine)
    hasher = HeldHasher()
    app = make_app(hasher=hasher)
    assert app.state.ctx.engine.dialect.name == "sqlite"  # the gate is a real lock here
    signing_in = TestClient(app, base_url=BASE_URL, follow_redirects=False)
    page = signing_in.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token
    results: dict[str, Any] = {}

    def sign_in() -> None:
        results["login"] = signing_in.post(
            "/login", data={"email": EDITOR_EMAIL, "password": PASSWORD, "login_token": token.group(1)}
        )

    def read() -> None:
        results["health"] = TestClient(app, base_url=BASE_URL).get("/healthz")

    first = threading.Thread(target=sign_in)
    first.start()
    try:
        assert hasher.checking.wait(10), "the sign-in never reached the password check"
        second = threading.Thread(target=read)
        second.start()
        assert wait_until(lambda: "health" in results, timeout=10), "a read waited for the password check"
        assert results["health"].status_code == 200 and results["health"].text == "ok"
    finally:
        hasher.release.set()
        first.join(30)
    assert results["login"].status_code == 303
    second.join(10)


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize(
    "host", ["evil.example.net", "evil.example.net:443", "news.example.com.evil.example.net"]
)
def test_trailing_slash_redirects_go_to_the_public_address(client: TestClient, host: str) -> None:
    response = client.get("/subscribe/", headers={"host": host})
    assert response.status_code == 307
    assert response.headers["location"] == f"{BASE_URL}/subscribe"
    with_query = client.get("/archive/?page=2&x=%3Cb%3E", headers={"host": host})
    assert with_query.status_code == 307
    assert with_query.headers["location"] == f"{BASE_URL}/archive?page=2&x=%3Cb%3E"


def test_a_path_no_route_takes_either_way_is_a_plain_404(client: TestClient) -> None:
    for path in ("/no-such-page/", "/no-such-page", "/static/no-such-file.css", "/static/no-such-file.css/"):
        response = client.get(path, headers={"host": "evil.example.net"})
        assert response.status_code == 404, path
        assert "evil.example.net" not in response.headers.get("location", "")


# ----------------------------------------------------------------- the account rules, on both databases


class ChangedMeanwhile(PasswordHasher):
    """argon2, and while it checks, someone else changes the account (the check holds no lock)."""

    def __init__(self, change: Callable[[], None]) -> None:
        super().__init__()
        self.change = change

    def verify(self, hash: str | bytes, password: str | bytes) -> Any:
        result = super().verify(hash, password)
        self.change()
        return result


def test_sign_out_raises_the_epoch_and_ends_sessions(engine: sa.Engine) -> None:
    add_editor(engine)
    first = editor_service.authenticate(engine, EDITOR_EMAIL, PASSWORD, now=FIXED_NOW)
    assert first is not None and first.session_epoch == 0 and first.last_login_at == FIXED_NOW
    with session_scope(engine) as session:
        assert editor_service.sign_out(session, first.id) == 1
    with session_scope(engine) as session:
        assert editor_service.sign_out(session, first.id) == 2
    with session_scope(engine) as session:
        found = editor_service.get_editor(session, first.id)
    assert found is not None and found.session_epoch == 2
    with session_scope(engine) as session, pytest.raises(NotFound):
        editor_service.sign_out(session, first.id + 1000)


def test_a_password_changed_during_the_check_does_not_sign_in(engine: sa.Engine) -> None:
    add_editor(engine)

    def change_password() -> None:
        with session_scope(engine) as session:
            editor_service.set_password(session, EDITOR_EMAIL, "a brand new long password")

    def disable() -> None:
        with session_scope(engine) as session:
            editor_service.set_active(session, EDITOR_EMAIL, False)

    later = FIXED_NOW + timedelta(minutes=1)
    changed = ChangedMeanwhile(change_password)
    assert editor_service.authenticate(engine, EDITOR_EMAIL, PASSWORD, now=later, hasher=changed) is None
    fresh = editor_service.authenticate(engine, EDITOR_EMAIL, "a brand new long password", now=later)
    assert fresh is not None
    disabled = ChangedMeanwhile(disable)
    assert (
        editor_service.authenticate(
            engine, EDITOR_EMAIL, "a brand new long password", now=later, hasher=disabled
        )
        is None
    )
