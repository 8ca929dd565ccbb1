"""Feed text as plain text: markup dropped, entities decoded, paragraphs kept, cut at a word.

Feeds put HTML, escaped HTML and plain text in the same fields; everything stored from a feed is
plain text, so what reaches an email or a page is data that is escaped there, never markup. Text
that is not valid Unicode (a lone surrogate) cannot be stored, encoded or sent at all: it is found
here, so the entry holding it is skipped and the rest of the feed is kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html.parser import HTMLParser

__all__ = [
    "CONTROL",
    "NOT_UNICODE",
    "html_to_text",
    "not_unicode",
    "one_line_text",
    "prepare_document",
    "shorten",
]

_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "tr", "table"}
    | {"section", "article", "figure", "figcaption", "pre", "hr", "dd", "dt", "header", "footer"}
)
_SKIP_TAGS = frozenset({"script", "style", "template", "noscript", "iframe", "object", "svg", "math"})
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
# Character references to a lone surrogate or past U+10FFFF make feedparser's lenient parser raise
# (ending the whole document), so before parsing they become a reference to this noncharacter,
# which every parser accepts and no feed has a reason to hold; an entry holding it is skipped.
_MARK = "\ufdd0"
_MARK_REF = b"&#xFDD0;"
_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")
NOT_UNICODE = re.compile(f"[\ud800-\udfff{_MARK}]")
MAX_AUTHOR_BYTES = 300
_AUTHOR_LIKE = re.compile(
    rb"(<(?:[A-Za-z_][\w.-]*:)?(?:author|creator|publisher|managingEditor|webMaster|owner)\b[^>]*>)"
    rb"(.*?)(</)",
    re.DOTALL | re.IGNORECASE,
)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Readable plain text: tags dropped, entities decoded, paragraphs kept as blank-line breaks."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = CONTROL.sub("", "".join(parser.parts)).replace("\r", "\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:
        if line:
            current.append(line)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)


def one_line_text(value: str, *, html: bool, limit: int) -> str:
    text = html_to_text(value) if html else CONTROL.sub("", value)
    return shorten(" ".join(text.split()), limit)


def shorten(text: str, limit: int) -> str:
    """Cut at a word boundary with an ellipsis, so a long feed field still fits its column."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—") + "…"


# --------------------------------------------------------------------------- the document before feedparser


def prepare_document(data: bytes) -> bytes:
    """The document as feedparser can read it whatever it holds: references to a lone surrogate or
    past U+10FFFF marked (see NOT_UNICODE), and author-like elements cut to MAX_AUTHOR_BYTES.

    feedparser looks for an email address in the text of <author>, <dc:creator>, <managingEditor>
    and the like with a regex that takes time quadratic in a run of letters: 100,000 of them held
    a poll for two minutes. Nothing stored from those elements is longer than 200 characters.
    """
    return _AUTHOR_LIKE.sub(_cut_author, mark_bad_refs(data))


def _cut_author(match: re.Match[bytes]) -> bytes:
    start, text, end = match.group(1), match.group(2), match.group(3)
    if len(text) <= MAX_AUTHOR_BYTES:
        return match.group(0)
    cdata = text.startswith(b"<![CDATA[") and text.endswith(b"]]>")
    inner = text[9:-3] if cdata else text
    if not cdata and b"<" in inner:
        return match.group(0)  # markup inside (Atom's <name>): not the slow path, left as it is
    cut = inner[:MAX_AUTHOR_BYTES]
    while cut and 0x80 <= cut[-1] <= 0xBF:  # not in the middle of a UTF-8 character
        cut = cut[:-1]
    if cut and cut[-1] >= 0xC0:
        cut = cut[:-1]
    return start + (b"<![CDATA[" + cut + b"]]>" if cdata else cut) + end


def mark_bad_refs(data: bytes) -> bytes:
    """The document with every reference to a lone surrogate or past U+10FFFF made a marked one."""

    def swap(match: re.Match[bytes]) -> bytes:
        hex_digits, digits = match.group(1), match.group(2)
        if len((hex_digits or digits).lstrip(b"0")) > 8:
            return _MARK_REF
        code = int(hex_digits, 16) if hex_digits else int(digits)
        return _MARK_REF if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF else match.group(0)

    return _CHAR_REF.sub(swap, data)


def not_unicode(value: object, field: str = "") -> str | None:
    """The field (top-level key) of the first text in `value` that is not valid Unicode, if any."""
    if isinstance(value, str):
        return field if NOT_UNICODE.search(value) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = not_unicode(item, field or str(key).removesuffix("_detail"))
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for item in value:
            found = not_unicode(item, field)
            if found is not None:
                return found
    return None
