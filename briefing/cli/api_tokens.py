"""`briefing api-tokens ...`: the bearer tokens that let the site's CMS push articles.

Not to be confused with the signed links in readers' emails (briefing.links): these are
credentials for a machine, shown once and stored only as a hash.
"""

from typing import Annotated

import typer

from briefing.cli.common import (
    add_row,
    console,
    handle_errors,
    local,
    new_table,
    print_json,
    show,
    state,
    styled,
)

app = typer.Typer(
    help="API tokens that let the CMS push articles.\n\nExample: briefing api-tokens create cms",
    no_args_is_help=True,
)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="api-tokens")
    # The old name, kept for one release so scripts keep working; not shown in --help.
    root.add_typer(app, name="tokens", hidden=True)


@app.command("create")
@handle_errors
def create_token(name: Annotated[str, typer.Argument(help="Who will use it, such as cms.")]) -> None:
    """Create an API token and print it once; only its hash is kept.

    Example: briefing api-tokens create cms
    """
    from briefing.db import session_scope
    from briefing.service import api_tokens as api_token_service

    with session_scope(state().engine) as session:
        token, secret = api_token_service.create_token(session, name, now=state().now())
    # Printed from the values in hand: the token is stored, so its secret must reach the screen.
    show("Created token ", styled(token.name, "bold"), ". Copy it now; it cannot be shown again:", err=True)
    typer.echo(secret)


@app.command("list")
@handle_errors
def list_tokens(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List API tokens (names and dates; the tokens themselves are never stored).

    Example: briefing api-tokens list
    """
    from briefing.db import session_scope
    from briefing.store import api_tokens as token_store

    with session_scope(state().engine) as session:
        found = token_store.list_tokens(session)
    if as_json:
        print_json(found)
        return
    table = new_table("name", "created", "last used", "revoked", title=f"{len(found)} tokens")
    for t in found:
        add_row(table, t.name, local(t.created_at), local(t.last_used_at), local(t.revoked_at))
    console.print(table)


@app.command("revoke")
@handle_errors
def revoke_token(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke an API token at once; requests using it get 401 from now on.

    Example: briefing api-tokens revoke cms
    """
    from briefing.db import session_scope
    from briefing.service import api_tokens as api_token_service

    with session_scope(state().engine) as session:
        token, changed = api_token_service.revoke_token(session, name, now=state().now())
    show(f"Revoked token {token.name}." if changed else f"Token {token.name} was already revoked.")
