"""One reader's copy of an edition: the values for the per-reader tokens, and filling them in.

There is one path. `reader_values` decides what a reader's tokens become (the unsubscribe link,
the preferences link or else the unsubscribe link, the first name or the fallback), and
`personalise` fills them into the rendered HTML and text. Preview, web preview and the archive's
neutral copy (a recipient whose links lead to the subscribe page) show `personalise`; the send and
the test send build MIME bytes from the same `reader_values` (mail.message), and the tests check
that the decoded message equals `personalise`.

Each token is replaced in one pass over a split made once per edition, so a name like
"%%UNSUBSCRIBE_URL%%" is printed, not expanded, and no template engine runs per reader.
"""

from __future__ import annotations

import functools
import html
import re
from typing import NamedTuple

from briefing.domain import PERSONAL_TOKENS, Recipient, RenderedEdition, first_name
from briefing.errors import InvalidInput

__all__ = ["ReaderValues", "personalise", "reader_values", "split_on_tokens"]

_CONTROL_RE = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
_TOKEN_SPLIT_RE = re.compile("(" + "|".join(re.escape(t) for t in PERSONAL_TOKENS) + ")")
_TOKEN_INDEX = {token: i for i, token in enumerate(PERSONAL_TOKENS)}


class ReaderValues(NamedTuple):
    """One reader's values, in the order of domain.PERSONAL_TOKENS."""

    unsubscribe_url: str
    preferences_url: str
    first_name: str

    def escaped(self) -> ReaderValues:
        """The same values for an HTML part."""
        return ReaderValues(*(html.escape(v, quote=True) for v in self))


def _link(url: str, field: str) -> str:
    if _CONTROL_RE.search(url):
        raise InvalidInput("a link must not contain control characters", field=field)
    return url.strip()


def reader_values(recipient: Recipient) -> ReaderValues:
    """What this reader's tokens become; every copy needs an unsubscribe link."""
    unsubscribe = _link(recipient.unsubscribe_url, "unsubscribe_url")
    if not unsubscribe:
        raise InvalidInput("every email needs an unsubscribe link", field="unsubscribe_url")
    preferences = _link(recipient.preferences_url, "preferences_url") or unsubscribe
    return ReaderValues(unsubscribe, preferences, first_name(recipient.name))


@functools.lru_cache(maxsize=32)
def split_on_tokens(template: str) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
    """(pieces, slots): tokens at odd pieces, each slot (piece index, index into ReaderValues).

    Split once per edition; str caches its hash, so the lookup per recipient is cheap.
    """
    parts = tuple(_TOKEN_SPLIT_RE.split(template))
    slots = tuple((i, _TOKEN_INDEX[parts[i]]) for i in range(1, len(parts), 2))
    return parts, slots


def _fill(template: str, values: ReaderValues) -> str:
    parts, slots = split_on_tokens(template)
    if not slots:
        return template
    pieces = list(parts)
    for index, value in slots:
        pieces[index] = values[value]
    return "".join(pieces)


def personalise(rendered: RenderedEdition, recipient: Recipient) -> tuple[str, str]:
    """Fill one reader's values into the edition: (html, text), escaped for HTML in the HTML part."""
    values = reader_values(recipient)
    return _fill(rendered.html, values.escaped()), _fill(rendered.text, values)
