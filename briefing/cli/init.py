"""`briefing init`: a new install, ready to preview at once.

It creates (or upgrades) the database and makes sure a secret key is configured, since reader links
cannot be signed without one and so neither a preview nor a send can be made. The key goes into
`.env` in the working directory, the file the settings are read from. An existing key is never
replaced (every link already sent would stop working) and an existing `.env` is never rewritten:
without a key, one line is appended to it.
"""

import os
from collections.abc import Mapping
from pathlib import Path

import typer

from briefing.cli.common import handle_errors, show, state
from briefing.errors import ConfigError

ENV_FILE = Path(".env")  # where Settings reads it: the working directory
KEY = "BRIEFING_SECRET_KEY"
KEY_COMMENT = "# Signs readers' unsubscribe and confirm links: keep it secret, and never change it casually."


def register(app: typer.Typer) -> None:
    app.command("init")(init)


@handle_errors
def init() -> None:
    """Create or upgrade the database, and write a fresh BRIEFING_SECRET_KEY to .env when none is set.

    A key already set (in the environment or in .env) is left as it is, and an existing .env is never
    overwritten: the key line is appended to it. The key itself is never printed.

    Example: briefing init
    Example: BRIEFING_DATABASE_URL=sqlite:///briefing.db briefing init
    """
    from briefing.db import current_revision, make_engine, upgrade

    settings = state().settings  # every setting checked before anything is written
    did = ensure_secret_key(ENV_FILE, os.environ)
    engine = make_engine(settings.database_url)
    upgrade(engine, newsletter_name=settings.newsletter_name, now=state().now())
    show(did)
    show(f"Database ready at schema {current_revision(engine)} ({engine.url.render_as_string()}).")


def ensure_secret_key(path: Path, environ: Mapping[str, str]) -> str:
    """Write a key to `path` unless one is configured; says what it did, never what the key is."""
    in_environment = [name for name in environ if name.upper() == KEY]
    if in_environment:
        if environ[in_environment[-1]]:
            return f"{KEY} is set in the environment; {path} is left as it is."
        raise ConfigError(
            "is set but empty in the environment, which wins over .env: give it a value or unset it",
            field=KEY,
        )
    import secrets

    line = f"{KEY}={secrets.token_urlsafe(32)}\n"
    if not (path.exists() or path.is_symlink()):
        _create(path, f"{KEY_COMMENT}\n{line}")
        return f"Wrote {path} with a new {KEY} (readable by you alone)."
    if _configured_key(path):
        return f"{KEY} is already set in {path}; it is left as it is."
    _append(path, f"{KEY_COMMENT}\n{line}")
    return f"Added a new {KEY} to the end of {path}; the rest of it is unchanged."


def _configured_key(path: Path) -> bool:
    """Whether the file sets a non-empty key, read by the parser the settings use (the last one wins)."""
    from dotenv import dotenv_values

    try:
        values = dotenv_values(path, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read it: {_reason(exc)}", field=str(path)) from None
    found = [value for name, value in values.items() if name.upper() == KEY]
    return bool(found and found[-1])


def _create(path: Path, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot create it: {_reason(exc)}", field=str(path)) from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _append(path: Path, text: str) -> None:
    try:
        ends_open = False
        if path.stat().st_size:
            with path.open("rb") as handle:
                handle.seek(-1, os.SEEK_END)
                ends_open = handle.read(1) != b"\n"
        with path.open("a", encoding="utf-8") as handle:
            handle.write(("\n" if ends_open else "") + text)
    except OSError as exc:
        raise ConfigError(f"cannot add the key to it: {_reason(exc)}", field=str(path)) from None


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
