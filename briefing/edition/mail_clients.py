"""What the common mail clients reject or need, applied to the compiled HTML once per edition.

caniemail's data for Gmail, Outlook, Apple Mail and Yahoo rejects two things MJML writes that
readers never miss: `target` on links and buttons (webmail opens links in a new tab anyway) and
the `aria-label` MJML copies from the title onto its wrapper (the h1 names the email instead).
MJML's `word-break: break-word` stays although Yahoo and Outlook.com ignore it: elsewhere it is
what keeps a long link in a blurb from pushing a phone's screen sideways (`word-wrap` does not
shrink a table cell's minimum width, so it is no substitute).

MJML's reset rules (`table, td { mso-table-lspace ... }`, `img { ... }`) are meant to stay in
<head>, where Outlook reads them; inlined on every table cell they cost a seventh of the email.

Dark mode needs the brand's accent lightened until it stays readable on the dark surface; the
contrast here is WCAG's, the same the layout tests measure in a browser.
"""

from __future__ import annotations

import functools
import re

from briefing.errors import RenderError

__all__ = ["DARK_SURFACE", "contrast", "dark_accent", "for_mail_clients", "hex_colour", "keep_resets_in_head"]

# The background of story text in dark mode (templates/email/_partials.mjml.j2, dark_mode).
DARK_SURFACE = "#1c1e22"
AA_CONTRAST = 4.5

_HEX_RE = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
# Inside a tag only: story text holds no "<" or ">" before render's final swap, so an attribute
# is followed by ">" before any "<", and text never is.
_TARGET_RE = re.compile(r' target="[^"<>]*"(?=[^<>]*>)')
_WRAPPER_LABEL_RE = re.compile(r' aria-label="[^"<>]*"(?=[^<>]*aria-roledescription="email"[^<>]*>)')
_EMPTY_STYLE_RE = re.compile(r'<style(?: type="text/css")?>\s*</style>')
_RESETS_RE = re.compile(r'<style type="text/css">(?=\s*#outlook a)')
_IGNORE_MARK_RE = re.compile(r' data-css-inline="ignore"(?=[^<>]*>)')


def keep_resets_in_head(compiled: str) -> str:
    """Mark MJML's reset block so the CSS inliner leaves it in <head>; run before inlining."""
    return _RESETS_RE.sub('<style type="text/css" data-css-inline="ignore">', compiled, count=1)


def for_mail_clients(html: str) -> str:
    """Remove what the common clients reject from inlined HTML; run before render's final swap."""
    html = _TARGET_RE.sub("", html)
    html = _WRAPPER_LABEL_RE.sub("", html, count=1)
    html = _IGNORE_MARK_RE.sub("", html)
    return _EMPTY_STYLE_RE.sub("", html)


def hex_colour(value: object) -> str:
    """Colours reach CSS only as #rgb or #rrggbb, so a setting cannot smuggle in other CSS."""
    colour = str(value)
    if not _HEX_RE.fullmatch(colour):
        raise RenderError(f"colour {colour!r} is not a hex colour such as #14213d")
    return colour


def _rgb(colour: str) -> tuple[int, int, int]:
    digits = hex_colour(colour)[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _luminance(colour: str) -> float:
    channels = [v / 255 for v in _rgb(colour)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    """WCAG contrast ratio of two hex colours, from 1 (none) to 21 (black on white)."""
    high, low = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@functools.lru_cache(maxsize=64)
def dark_accent(colour: str) -> str:
    """The accent mixed with white in small steps, stopping at the first that passes AA in dark mode."""
    rgb = _rgb(colour)
    for step in range(21):
        mixed = "#" + "".join(f"{round(c + (255 - c) * step / 20):02x}" for c in rgb)
        if contrast(mixed, DARK_SURFACE) >= AA_CONTRAST:
            return mixed
    return "#ffffff"
