"""`briefing feeds ...`: the site's feeds, where stored articles come from automatically."""

import shlex
from typing import TYPE_CHECKING, Annotated

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
from briefing.errors import InvalidInput

if TYPE_CHECKING:
    from briefing.feeds.poll import FeedPollResult

feeds_app = typer.Typer(
    help="The site's RSS and Atom feeds, polled into stored articles.\n\nExample: briefing feeds list",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(feeds_app, name="feeds")


# --------------------------------------------------------------------------- feeds


@feeds_app.command("add")
@handle_errors
def add(
    source: Annotated[str, typer.Argument(help="The feed's http(s) address, or the path of a feed file.")],
    name: Annotated[str, typer.Option(help="A short name for the feed (default: from the address).")] = "",
    section: Annotated[
        str, typer.Option(help="Put every article of this feed in this section, whatever its categories.")
    ] = "",
    allow_private: Annotated[
        bool,
        typer.Option(
            "--allow-private", help="Allow an address on a private network or this machine (your own CMS)."
        ),
    ] = False,
) -> None:
    """Add a feed; it is read at the next poll (or now with `briefing feeds poll NAME`).

    Example: briefing feeds add https://news.example.com/feed.xml --name site
    """
    from briefing.service import feeds as feed_service

    feed = feed_service.add_feed(
        state().engine, source, name=name, section=section, allow_private=allow_private, now=state().now()
    )
    show(f"Added feed {feed.id} ", styled(feed.name, "bold"), f": {feed.url}")
    show(f"Read it now with: briefing feeds poll {shlex.quote(feed.name)}")


@feeds_app.command("list")
@handle_errors
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False) -> None:
    """List feeds with how their last poll went and when the next one is due.

    Example: briefing feeds list
    """
    from briefing.db import session_scope
    from briefing.store import feeds as feed_store

    with session_scope(state().engine) as session:
        found = feed_store.list_feeds(session)
    if as_json:
        print_json(found)
        return
    columns = ("id", "name", "source", "section", "status", "last polled", "next due", "articles")
    table = new_table(*columns, title=f"{len(found)} feeds")
    for f in found:
        status = f.last_status or "never polled"
        if f.consecutive_errors > 1:
            status += f" ({f.consecutive_errors} in a row)"
        add_row(
            table,
            f.id,
            f.name,
            f.url,
            f.section,
            status,
            local(f.last_polled_at),
            local(f.next_poll_at) if f.next_poll_at else "now",
            f.article_count,
        )
    console.print(table)
    for f in found:
        if f.last_error:
            show(styled(f.name, "red"), ": ", f.last_error)


@feeds_app.command("remove")
@handle_errors
def remove(name_or_id: Annotated[str, typer.Argument(help="The feed's name or id.")]) -> None:
    """Stop polling a feed. Its articles stay stored.

    Example: briefing feeds remove site
    """
    from briefing.service import feeds as feed_service

    feed = feed_service.remove_feed(state().engine, name_or_id)
    show(f"Removed feed {feed.id} {feed.name}; its {feed.article_count} articles stay stored.")


@feeds_app.command("poll")
@handle_errors
def poll(
    name: Annotated[str, typer.Argument(help="Poll only this feed (name or id).")] = "",
    all_: Annotated[bool, typer.Option("--all", help="Poll every feed now, even those backing off.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Poll even if the feed was polled a few minutes ago.")
    ] = False,
) -> None:
    """Read feeds now: with no argument the feeds that are due, as the scheduler does.

    Example: briefing feeds poll --all
    """
    from briefing.db import session_scope
    from briefing.service import feeds as feed_service
    from briefing.store import feeds as feed_store
    from briefing.wiring import feed_policy

    if name and all_:
        raise InvalidInput("give a feed name or --all, not both", field="--all")
    engine = state().engine
    policy = feed_policy(state().settings)
    clock = state().clock
    if name:
        with session_scope(engine) as session:
            ids = [feed_store.find_feed(session, name).id]
        results = feed_service.poll_feeds(engine, ids, clock=clock, force=force, policy=policy)
    elif all_:
        with session_scope(engine) as session:
            ids = feed_store.all_feed_ids(session)
        results = feed_service.poll_feeds(engine, ids, clock=clock, force=force, policy=policy)
    else:
        results = feed_service.poll_due_feeds(engine, clock=clock, policy=policy)
    _print_results(results)
    if any(r.status == "error" for r in results):
        raise typer.Exit(1)


def _print_results(results: "list[FeedPollResult]") -> None:
    if not results:
        show("No feed was due. (Poll one now with: briefing feeds poll NAME)")
        return
    table = new_table("feed", "status", "added", "updated", "unchanged", "skipped", title="Feeds polled")
    for r in results:
        colour = {"error": "red", "warning": "yellow", "skipped": "yellow"}.get(r.status, "green")
        add_row(table, r.name, styled(r.status, colour), r.added, r.updated, r.unchanged, len(r.skipped))
    console.print(table)
    for r in results:
        if r.status in ("error", "skipped") and r.error:
            show(styled(r.name, "red"), ": ", r.error)
        for s in r.skipped[:20]:
            show(styled(f"{r.name}, entry {s.index}", "yellow"), ": skipped, ", s.reason)
        for note in r.notes[:20]:
            show(styled(r.name, "yellow"), ": ", note)
