"""`briefing editors ...` and `briefing serve` on a temporary database (and a real port for serve)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from briefing.cli import app
from tests.fixtures.cli import cli_env, run, runner
from tests.fixtures.waiting import wait_until
from tests.fixtures.web import LINK_SECRET, free_port

pytestmark = pytest.mark.timeout(120)

PASSWORD = "a long enough password"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, secret_key=LINK_SECRET)


def active_flags(env: dict[str, str]) -> dict[str, bool]:
    code, out = run(env, "editors", "list", "--json")
    assert code == 0, out
    return {e["email"]: e["active"] for e in json.loads(out)}


def test_editors_add_list_disable_enable(env: dict[str, str]) -> None:
    code, out = run(env, "editors", "add", "Editor@Example.com", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0 and "Added Editor@example.com (editor)" in out
    code, out = run(env, "editors", "add", "boss@example.com", "--admin", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert code == 0 and "(admin)" in out, out
    assert PASSWORD not in out

    code, out = run(env, "editors", "list", "--json")
    listed = json.loads(out)
    assert [(e["email"], e["role"], e["active"]) for e in listed] == [
        ("boss@example.com", "admin", True),
        ("Editor@example.com", "editor", True),
    ]
    code, out = run(env, "editors", "disable", "editor@example.com")
    assert code == 0 and "can no longer sign in" in out
    code, out = run(env, "editors", "list")
    assert code == 0 and re.search(r"Editor@example\.com\s+.\s+editor\s+.\s+no\b", out), out
    assert active_flags(env) == {"boss@example.com": True, "Editor@example.com": False}
    code, out = run(env, "editors", "enable", "EDITOR@example.com")
    assert code == 0 and "can sign in again" in out
    assert active_flags(env) == {"boss@example.com": True, "Editor@example.com": True}
    code, out = run(
        env, "editors", "password", "editor@example.com", "--password-stdin", stdin="another long password\n"
    )
    assert code == 0 and "New password set" in out


def test_editors_bad_input(env: dict[str, str]) -> None:
    assert run(env, "editors", "add", "a@example.com", "--password-stdin", stdin="short\n") == (
        1,
        "error: password: must be at least 12 characters\n",
    )
    code, out = run(env, "editors", "add", "not-an-address", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 1 and "email" in out
    run(env, "editors", "add", "a@example.com", "--password-stdin", stdin=PASSWORD + "\n")
    code, out = run(env, "editors", "add", "A@example.com", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 1 and "already has an account" in out
    code, out = run(env, "editors", "disable", "nobody@example.com")
    assert code == 1 and "no editor" in out
    code, out = run(env, "editors", "add", "b@example.com", stdin=f"{PASSWORD}\nsomething else entirely\n\n")
    assert code == 1 and "do not match" in out and "Aborted" in out
    code, out = run(env, "editors", "add", "c@example.com", "--password-stdin", stdin="")
    assert code == 1 and "nothing on standard input" in out
    assert set(active_flags(env)) == {"a@example.com"}, "only the one good account was created"


def test_a_password_that_is_not_utf8_is_refused_and_no_account_is_made(env: dict[str, str]) -> None:
    for args in (("--password-stdin",), ()):
        result = runner.invoke(
            app, ["editors", "add", "a@example.com", *args], env=env, input=b"caf\xe9 au lait 12345\n" * 2
        )
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert result.exit_code == 1 and "not valid UTF-8" in result.output
    assert active_flags(env) == {}


def test_serve_runs_the_app_on_loopback(tmp_path: Path) -> None:
    port = free_port()
    root = Path(__file__).resolve().parents[1]
    script = textwrap.dedent(
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
    env = dict(
        os.environ,
        BRIEFING_DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}",
        BRIEFING_SECRET_KEY=LINK_SECRET,
        BRIEFING_SMTP_URL="memory://",
        PYTHONPATH=str(root),
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, "serve", "--port", str(port), "--no-access-log"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    answers: list[bytes] = []

    def answered() -> bool:
        if process.poll() is not None:
            return True  # it exited: nothing more to wait for
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                answers.append(response.read())
                return True
        except OSError:
            return False

    try:
        wait_until(answered, timeout=30, every=0.1)
        assert answers == [b"ok"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/subscribe", timeout=5) as response:
            assert response.status == 200
            assert "server" not in {k.lower() for k in response.headers}
    finally:
        process.send_signal(signal.SIGTERM)
        # Not communicate(timeout=...): its wait loop calls time.sleep, which fails under libfaketime.
        if not wait_until(lambda: process.poll() is not None, timeout=15):
            process.kill()
        output = process.communicate()[0].decode(errors="replace")
    # uvicorn shuts down cleanly, then re-raises SIGTERM so the exit status reports the signal.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert "Serving The Morning Briefing on http://127.0.0.1" in output
    assert LINK_SECRET not in output
