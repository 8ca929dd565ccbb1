"""`briefing articles ...`: the site's stored articles."""

from pathlib import Path
from typing import Annotated

import typer

from briefing.cli.common import (
    add_row,
    console,
    handle_errors,
    local,
    moment_ago,
    new_table,
    parse_moment,
    print_json,
    show,
    state,
    styled,
)

app = typer.Typer(
    help="Stored articles from the site.\n\nExample: briefing articles list", no_args_is_help=True
)


@app.command("add")
@handle_errors
def add(
    url: Annotated[str, typer.Option(help="The article's address on the site (http or https).")],
    title: Annotated[str, typer.Option(help="Headline as published.")],
    summary: Annotated[str, typer.Option(help="Standfirst or summary.")] = "",
    author: Annotated[str, typer.Option()] = "",
    section: Annotated[str, typer.Option(help="Section, such as Politics.")] = "",
    image: Annotated[str, typer.Option(help="Image URL.")] = "",
    image_alt: Annotated[str, typer.Option("--image-alt", help="Text describing the image.")] = "",
    published: Annotated[str, typer.Option(help="Publication time, YYYY-MM-DD HH:MM in local time.")] = "",
) -> None:
    """Store one article.

    Example: briefing articles add --url https://news.example.com/2026/budget --title "Budget passes"
    """
    from briefing.db import session_scope
    from briefing.service import articles as article_service

    published_at = parse_moment(published, "--published")
    with session_scope(state().engine) as session:
        article = article_service.add_article(
            session,
            url=url,
            title=title,
            summary=summary,
            author=author,
            section=section,
            image_url=image,
            image_alt=image_alt,
            published_at=published_at,
            now=state().now(),
        )
    show(f"Stored article {article.id}: {article.title}")


@app.command("list")
@handle_errors
def list_(
    since: Annotated[str, typer.Option(help="Only articles newer than this, such as 1d or 12h.")] = "",
    not_queued: Annotated[
        bool, typer.Option("--not-queued", help="Only articles no story uses yet.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List stored articles, newest first.

    Example: briefing articles list --since 1d --not-queued
    """
    from briefing.db import session_scope
    from briefing.store import articles as article_store

    after = moment_ago(since, "--since") if since else None
    with session_scope(state().engine) as session:
        found = article_store.list_articles(session, since=after, not_queued=not_queued, limit=limit)
    if as_json:
        print_json(found)
        return
    table = new_table("id", "published", "section", "title", "url", title=f"{len(found)} articles")
    for a in found:
        add_row(table, a.id, local(a.published_at), a.section, a.title, a.url)
    console.print(table)


@app.command("import")
@handle_errors
def import_(
    file: Annotated[Path, typer.Argument(help="A .jsonl file (one JSON object per line) or a .csv file.")],
) -> None:
    """Import articles from JSON lines or CSV; an article with a stored URL is updated.

    Example: briefing articles import articles.jsonl
    """
    from briefing.service import articles as article_service

    report = article_service.import_articles(state().engine, file, now=state().now())
    table = new_table("added", "updated", "unchanged", "rejected", title=f"Imported {file.name}")
    add_row(table, report.added, report.updated, report.unchanged, len(report.rejected))
    console.print(table)
    for r in report.rejected[:20]:
        show(styled(f"line {r.line}", "red"), ": ", r.reason)
    if report.rejected:
        raise typer.Exit(1)
