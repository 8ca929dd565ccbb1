"""Checks run before an edition goes out: the last chance to catch what readers would notice.

Pure: it looks only at the composed Briefing and the rendered edition, so the CLI, the web preview
and the scheduler all see the same verdict. Errors stop a send; warnings are shown to editors.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

from briefing.domain import PERSONAL_TOKENS, Briefing, RenderedEdition, StoryItem

__all__ = [
    "GMAIL_CLIP_BYTES",
    "PUBLIC_BASE_URL_SETTING",
    "SUBJECT_WARN_LENGTH",
    "PreflightProblem",
    "PreflightReport",
    "check_copy",
    "preflight",
    "public_base_url_problem",
    "unreachable_reason",
]

GMAIL_CLIP_BYTES = 102 * 1024  # Gmail hides everything after this behind "[Message clipped]"
SUBJECT_WARN_LENGTH = 78
# Per-recipient values are not known here; assume long signed links so the size check errs safe.
_ASSUMED_TOKEN_VALUE = "x" * 160

# The setting behind every reader link (unsubscribe, preferences, archive, sign-up), named in the error.
PUBLIC_BASE_URL_SETTING = "BRIEFING_PUBLIC_BASE_URL"
# Names that only resolve inside one machine or one network (RFC 6761, RFC 6762, RFC 8375).
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".localdomain")

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


def unreachable_reason(url: str) -> str:
    """Why a reader could not follow links under `url` ("" when they could): not https, or a host
    that only this machine or its network knows. Only literal addresses and local names are judged:
    this module does no I/O, so a name that resolves to a private address is not caught here."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".").lower()
    except ValueError:
        return "is not a valid address"
    if parts.scheme.lower() != "https":
        return "is not https"
    if not host:
        return "has no host name"
    address = _address(host)
    if address is None:
        if host == "localhost" or host.endswith(_LOCAL_SUFFIXES) or "." not in host:
            return f"points at {host}, a name only this machine or its network knows"
        return ""
    if address.is_loopback:
        return f"points at {host}, a loopback address"
    if not address.is_global:
        return f"points at {host}, a private address"
    return ""


def public_base_url_problem(public_base_url: str) -> PreflightProblem | None:
    """The error for a real send whose reader links (unsubscribe, preferences, archive) lead nowhere."""
    reason = unreachable_reason(public_base_url)
    if not reason:
        return None
    return PreflightProblem(
        PUBLIC_BASE_URL_SETTING,
        f"{public_base_url!r} {reason}; readers could not open the unsubscribe, preferences and "
        "archive links. Set it to the site's public https address before a real send",
    )


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host stands for if it is written as one, in any form a browser accepts."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        # Browsers read 127.1, 0x7f.1 and 2130706433 as IPv4 addresses too.
        if not re.fullmatch(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", host):
            return None
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def check_copy(
    rendered: RenderedEdition,
    *,
    personalised_html: str | None = None,
    story_urls: Collection[str] = (),
    public_base_url: str | None = None,
) -> PreflightReport:
    """The checks of the rendered copy alone: its size, its images' alt text, its links.

    A frozen edition is judged by these: its stories were checked when it was frozen, and the copy is
    what readers get. `story_urls` are links reported with their story, not again here.
    """
    errors: list[PreflightProblem] = []
    warnings: list[PreflightProblem] = []
    _copy_problems(errors, warnings, rendered, personalised_html, set(story_urls), public_base_url)
    return PreflightReport(
        errors=tuple(errors), warnings=tuple(warnings), html_bytes=_size(rendered, personalised_html)
    )


def preflight(
    briefing: Briefing,
    rendered: RenderedEdition,
    *,
    personalised_html: str | None = None,
    public_base_url: str | None = None,
) -> PreflightReport:
    """Check an edition before sending.

    Pass `personalised_html` (one reader's copy) to measure the exact size Gmail sees; without it the
    tokens are counted as long links. Pass `public_base_url` for a send that reaches readers' inboxes:
    the links built on it must then be https and public, or no reader could unsubscribe.
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
        shown = story is briefing.lead or briefing.story_thumbnails  # only shown images need alt text
        if shown and story.image_url.strip() and not story.image_alt.strip():
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

    reported = {s.url.strip() for s in stories} | {a.url.strip() for a in briefing.more_from}
    _copy_problems(errors, warnings, rendered, personalised_html, reported, public_base_url)

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

    return PreflightReport(
        errors=tuple(errors), warnings=tuple(warnings), html_bytes=_size(rendered, personalised_html)
    )


def _html(rendered: RenderedEdition, personalised_html: str | None) -> str:
    if personalised_html is not None:
        return personalised_html
    html = rendered.html
    for token in PERSONAL_TOKENS:
        html = html.replace(token, _ASSUMED_TOKEN_VALUE)
    return html


def _size(rendered: RenderedEdition, personalised_html: str | None) -> int:
    return len(_html(rendered, personalised_html).encode("utf-8"))


def _copy_problems(
    errors: list[PreflightProblem],
    warnings: list[PreflightProblem],
    rendered: RenderedEdition,
    personalised_html: str | None,
    reported: set[str],
    public_base_url: str | None,
) -> None:
    if public_base_url is not None:
        problem = public_base_url_problem(public_base_url)
        if problem is not None:
            errors.append(problem)
    html = _html(rendered, personalised_html)
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        errors.append(
            PreflightProblem(
                "html",
                f"the email is {size / 1024:.0f} KB; Gmail clips messages over 102 KB. "
                "Shorten blurbs or move stories to another edition",
            )
        )

    parser = _Images()
    parser.feed(html)
    parser.close()
    for image in parser.images:
        if not (image.get("alt") or "").strip():
            errors.append(
                PreflightProblem("html", f"the image {image.get('src') or '(no src)'} has no alt text")
            )
    # Links the template adds (view in browser, unsubscribe, preferences) share one base address;
    # one warning per site says it without burying the rest of the report.
    by_site: dict[str, list[str]] = {}
    for href in dict.fromkeys(parser.links):
        if _scheme(href) == "http" and href not in reported:
            by_site.setdefault(_site(href), []).append(href)
    for site, links in by_site.items():
        if len(links) == 1:
            warnings.append(PreflightProblem("html", f"the link {links[0]} is not https"))
        else:
            warnings.append(
                PreflightProblem(
                    "html", f"{len(links)} links to {site} are not https (for example {links[0]})"
                )
            )
