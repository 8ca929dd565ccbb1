"""Checks run before an edition goes out: the last chance to catch what readers would notice.

Pure: it looks only at the composed Briefing and the rendered edition, so the CLI, the web preview
and the scheduler all see the same verdict. Errors stop a send; warnings are shown to editors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

from briefing.domain import PERSONAL_TOKENS, Briefing, RenderedEdition, StoryItem

__all__ = [
    "GMAIL_CLIP_BYTES",
    "SUBJECT_WARN_LENGTH",
    "PreflightProblem",
    "PreflightReport",
    "preflight",
]

GMAIL_CLIP_BYTES = 102 * 1024  # Gmail hides everything after this behind "[Message clipped]"
SUBJECT_WARN_LENGTH = 78
# Per-recipient values are not known here; assume long signed links so the size check errs safe.
_ASSUMED_TOKEN_VALUE = "x" * 160

_PLACEHOLDER_RE = re.compile(r"(?<!\w)(?:(?:TK)+|XX+)(?!\w)|lorem ipsum", re.IGNORECASE)
_UPPER_ONLY = re.compile(r"(?:TK)+|X+")


@dataclass(frozen=True, slots=True)
class PreflightProblem:
    where: str  # "story 12 (headline)", "subject", "html"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True, slots=True)
class PreflightReport:
    errors: tuple[PreflightProblem, ...] = ()
    warnings: tuple[PreflightProblem, ...] = ()
    html_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def problems(self) -> list[str]:
        """Errors as strings, the shape PreflightFailed carries to the edges."""
        return [str(p) for p in self.errors]


class _Images(HTMLParser):
    """Collects <img> tags; the stdlib parser is enough and keeps this module dependency-free."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[dict[str, str | None]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def _placeholders(text: str) -> list[str]:
    """Whole-word TK/TKTK/XX in capitals (not "tk" in a URL slug or "Xx"), and any "lorem ipsum"."""
    found = []
    for match in _PLACEHOLDER_RE.finditer(text):
        word = match.group(0)
        if word.lower() == "lorem ipsum" or _UPPER_ONLY.fullmatch(word):
            found.append(word)
    return found


def _story_name(story: StoryItem) -> str:
    return f"story {story.id}"


def _texts(briefing: Briefing) -> Iterator[tuple[str, str]]:
    for story in briefing.stories:
        name = _story_name(story)
        yield f"{name} (headline)", story.headline
        yield f"{name} (blurb)", story.blurb
        yield f"{name} (image_alt)", story.image_alt
    for article in briefing.more_from:
        yield f"article {article.id} (title)", article.title
    blocks = briefing.blocks
    for field in (
        "editor_note",
        "tip_heading",
        "tip_text",
        "support_heading",
        "support_text",
        "support_label",
        "partner_name",
        "partner_text",
        "postal_address",
        "why_text",
    ):
        yield field, getattr(blocks, field)


def _scheme(url: str) -> str:
    try:
        return urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return ""


def _site(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def preflight(
    briefing: Briefing, rendered: RenderedEdition, *, personalised_html: str | None = None
) -> PreflightReport:
    """Check an edition before sending.

    Pass `personalised_html` (one reader's copy) to measure the exact size Gmail sees; without it the
    tokens are counted as long links.
    """
    errors: list[PreflightProblem] = []
    warnings: list[PreflightProblem] = []

    def error(where: str, message: str) -> None:
        errors.append(PreflightProblem(where, message))

    def warn(where: str, message: str) -> None:
        warnings.append(PreflightProblem(where, message))

    stories = briefing.stories
    if not stories:
        error("edition", "there are no stories; queue at least one ready story for this date")

    for story in stories:
        name = _story_name(story)
        if not story.headline.strip():
            error(f"{name} (headline)", "the headline is empty")
        url = story.url.strip()
        if not url:
            error(f"{name} (url)", "the story has no link")
        elif _scheme(url) not in ("http", "https"):
            error(f"{name} (url)", f"the link {url!r} is not an http(s) address")
        elif _scheme(url) == "http":
            warn(f"{name} (url)", f"the link {url} is not https")
        if story.automatic:
            warn(
                name,
                "added automatically to reach the minimum number of stories; queue another to replace it",
            )
        if story.image_url.strip() and not story.image_alt.strip():
            error(f"{name} (image_alt)", "the image has no alt text; describe it for screen readers")

    for article in briefing.more_from:
        if _scheme(article.url) == "http":
            warn(f"article {article.id} (url)", f"the link {article.url} is not https")

    seen: set[str] = set()
    for where, text in _texts(briefing):
        for word in _placeholders(text):
            seen.add(word)
            error(where, f"contains the placeholder {word!r}")
    for where, text in (("subject", briefing.subject), ("preheader", briefing.preheader)):
        for word in _placeholders(text):
            if word not in seen:  # a headline's placeholder is already reported at its source
                error(where, f"contains the placeholder {word!r}")

    html = personalised_html
    if html is None:
        html = rendered.html
        for token in PERSONAL_TOKENS:
            html = html.replace(token, _ASSUMED_TOKEN_VALUE)
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        error(
            "html",
            f"the email is {size / 1024:.0f} KB; Gmail clips messages over 102 KB. "
            "Shorten blurbs or move stories to another edition",
        )

    parser = _Images()
    parser.feed(html)
    parser.close()
    for image in parser.images:
        if not (image.get("alt") or "").strip():
            error("html", f"the image {image.get('src') or '(no src)'} has no alt text")
    reported = {s.url.strip() for s in stories} | {a.url.strip() for a in briefing.more_from}
    # Links the template adds (view in browser, unsubscribe, preferences) share one base address;
    # one warning per site says it without burying the rest of the report.
    by_site: dict[str, list[str]] = {}
    for href in dict.fromkeys(parser.links):
        if _scheme(href) == "http" and href not in reported:
            by_site.setdefault(_site(href), []).append(href)
    for site, links in by_site.items():
        if len(links) == 1:
            warn("html", f"the link {links[0]} is not https")
        else:
            warn("html", f"{len(links)} links to {site} are not https (for example {links[0]})")

    if len(briefing.subject) > SUBJECT_WARN_LENGTH:
        warn("subject", f"{len(briefing.subject)} characters; many inboxes cut it after about 78")
    elif briefing.subject_trimmed:
        warn("subject", "the lead headline was shortened to fit the subject line")

    present = {" ".join(s.name.split()).casefold() for s in briefing.sections if s.stories}
    if briefing.lead is not None:
        present.add(" ".join(briefing.lead.section.split()).casefold())
    for section in briefing.configured_sections:
        if " ".join(section.split()).casefold() not in present:
            warn(f"section {section}", "has no stories in this edition")

    return PreflightReport(errors=tuple(errors), warnings=tuple(warnings), html_bytes=size)
