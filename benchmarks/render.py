"""Time compose + render of a 15-story edition and personalise per recipient.

Prints one JSON line: medians, the machine's core count, and baselines measured in the same run
(a bare mjml2html compile of the same MJML source, and a bare str.replace fill of the tokens).
Targets: edition under 20 ms, personalise under 50 µs.

    .venv/bin/python benchmarks/render.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from mjml import mjml2html

from briefing.domain import (
    PERSONAL_TOKENS,
    ArticleData,
    ComposeOptions,
    Recipient,
    StoryItem,
    StoryStatus,
)
from briefing.edition.compose import compose_briefing
from briefing.edition.render import BRIEFING_HTML, Renderer, _parse_markdown
from briefing.reader_copy import personalise

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"
EDITION = date(2026, 11, 30)
NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
SECTIONS = ("Politics", "Economy", "Climate", "World", "Culture")
BLURB = (
    "Councillors voted shortly before dawn after a long debate. The package raises spending on "
    "**schools** and housing. [The full vote](https://www.example.com/vote-{n})."
)


def edition_inputs() -> tuple[list[StoryItem], list[ArticleData], ComposeOptions]:
    stories = [
        StoryItem(
            id=n,
            headline=f"Story {n}: council approves the new budget after an all-night session",
            url=f"https://www.example.com/news/story-{n}",
            blurb=BLURB.format(n=n),
            section=SECTIONS[n % len(SECTIONS)],
            position=n,
            status=StoryStatus.READY,
            edition_date=EDITION,
            image_url="https://images.example.com/lead.jpg" if n == 1 else "",
            image_alt="Councillors vote" if n == 1 else "",
            lead=n == 1,
        )
        for n in range(1, 16)
    ]
    articles = [
        ArticleData(
            id=100 + n,
            url=f"https://www.example.com/archive/{n}",
            title=f"Archive piece number {n}",
            section="Politics",
            published_at=NOW - timedelta(hours=n),
        )
        for n in range(40)
    ]
    options = ComposeOptions(
        section_order=SECTIONS,
        web_url_template="https://www.example.com/briefing/{date}",
        editor_note="A note from the editor.",
        tip_contact="tips@example.com",
        support_url="https://www.example.com/support",
        partner_name="Example Books",
        partner_url="https://books.example.org/",
        postal_address="1 Example Street, Exampletown",
    )
    return stories, articles, options


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def median_us_batched(fn: Callable[[], object], total: int, batch: int = 100) -> float:
    """Median of per-call time over batches, so timer overhead does not dominate microseconds."""
    for _ in range(batch):
        fn()
    samples = []
    for _ in range(total // batch):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - start) / batch)
    return statistics.median(samples) * 1e6


def main() -> None:
    stories, articles, options = edition_inputs()
    renderer = Renderer(TEMPLATES)

    def edition() -> object:
        _parse_markdown.cache_clear()  # measure a cold edition, as on a real morning
        briefing = compose_briefing(stories, articles, EDITION, NOW, options)
        return renderer.render_edition(briefing)

    briefing = compose_briefing(stories, articles, EDITION, NOW, options)
    rendered = renderer.render_edition(briefing)
    mjml_source = renderer._html_env.get_template(BRIEFING_HTML).render({"b": briefing})

    def raw_compile() -> object:
        return mjml2html(mjml_source, disable_comments=True, fonts={}, include_loader=renderer._include)

    recipients = [
        Recipient(
            i,
            f"r{i}@example.com",
            f"Reader {i}",
            f"https://www.example.com/u/{i}x{'s' * 80}",
            f"https://www.example.com/p/{i}",
        )
        for i in range(100)
    ]
    counter = iter(range(10**9))

    def one() -> object:
        return personalise(rendered, recipients[next(counter) % 100])

    values = {t: "https://www.example.com/u/1" for t in PERSONAL_TOKENS}

    def bare_replace() -> object:
        html, text = rendered.html, rendered.text
        for token, value in values.items():
            html = html.replace(token, value)
            text = text.replace(token, value)
        return html, text

    result = {
        "benchmark": "render",
        "stories": len(briefing.stories),
        "html_bytes": len(rendered.html.encode()),
        "edition_ms_median": round(median_ms(edition, 30), 3),
        "baseline_mjml2html_ms_median": round(median_ms(raw_compile, 30), 3),
        "personalise_us_median": round(median_us_batched(one, 10_000), 2),
        "baseline_str_replace_us_median": round(median_us_batched(bare_replace, 10_000), 2),
        "targets": {"edition_ms": 20, "personalise_us": 50},
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
