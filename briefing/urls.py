"""The one way links are checked, compared and stored: `checked_url`, `canonical_url`, `url_key`.

Feeds and the CMS push store an article under its canonical URL; compose and the top-up compare
links by `url_key`, so "is this the same page?" has one answer everywhere. `checked_url` is the one
answer to "is this a link we can store and put in an email?": urllib splits some hosts wrongly and
raises on others, so every caller (forms, the CLI, imports, the API, feeds) gets the same refusal,
with a reason the caller shows next to the field. Pure, stdlib only.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

__all__ = [
    "MAX_URL",
    "TRACKING_PARAMS",
    "InvalidURL",
    "canonical_url",
    "checked_url",
    "url_key",
]

MAX_URL = 2000
MAX_HOST = 253  # DNS names are at most 253 characters, each label at most 63

# Query parameters that only say where a click came from; anything else may select content.
TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "mc_cid", "mc_eid", "igshid"}
)

_SURROGATE = re.compile("[\ud800-\udfff]")
# C0, DEL and C1 controls: urllib silently drops some of them (tab, CR, LF), so the link
# stored would not be the link checked.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_ASCII_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")


class InvalidURL(ValueError):
    """A link we cannot store or send; the message says why, for the caller to show with its field."""


def checked_url(url: str) -> SplitResult:
    """Split an absolute http(s) link after checking every part urllib would take on trust.

    Refused: lone surrogates, control characters and spaces, more than MAX_URL characters, other
    schemes, a missing or malformed host (an unclosed or invalid IPv6 literal, empty or over-long
    labels, characters no host name has, a dotted number that is no IPv4 address), and a port
    outside 1..65535.
    """
    if not isinstance(url, str):
        raise InvalidURL("must be text")
    if _SURROGATE.search(url):
        raise InvalidURL("is not valid Unicode (it holds a lone surrogate)")
    if len(url) > MAX_URL:
        raise InvalidURL(f"is {len(url)} characters; the limit is {MAX_URL}")
    if _CONTROL.search(url):
        raise InvalidURL("contains control characters")
    if any(ch.isspace() for ch in url):
        raise InvalidURL("must not contain spaces")
    scheme = url.partition(":")[0].lower()
    if scheme not in ("http", "https") or not url[len(scheme) + 1 :].startswith("//"):
        raise InvalidURL(f"must start with http:// or https:// (got {url[:40]!r})")
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed or invalid [IPv6] literal, or a host that NFKC changes
        hint = " (check the [ ] of the IPv6 address)" if "[" in url or "]" in url else ""
        raise InvalidURL(f"has a malformed host{hint}") from None
    _check_authority(parts.netloc)
    return parts


def _check_authority(netloc: str) -> None:
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        literal, _, rest = hostport[1:].partition("]")
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise InvalidURL(f"has a malformed IPv6 host [{literal[:50]}]") from None
        if rest and not rest.startswith(":"):
            raise InvalidURL("has characters after the IPv6 host's closing ]")
        port = rest[1:]
        host = ""
    else:
        host, colon, port = hostport.rpartition(":")
        if not colon:
            host, port = hostport, ""
        _check_host_name(host.lower())
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise InvalidURL("has a port that is not a number from 1 to 65535")


def _check_host_name(host: str) -> None:
    if not host:
        raise InvalidURL("has no host name")
    name = host[:-1] if host.endswith(".") else host
    if len(name) > MAX_HOST:
        raise InvalidURL(f"has a host name longer than {MAX_HOST} characters")
    labels = name.split(".")
    for label in labels:
        if not _valid_label(label):
            raise InvalidURL(f"has a malformed host name {host[:60]!r}")
    if labels[-1].isdigit():  # no top-level domain is a number: this is meant as an IPv4 address
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise InvalidURL(f"has a malformed IPv4 host {host[:60]!r}") from None


def _valid_label(label: str) -> bool:
    if label.isascii():
        return bool(_ASCII_LABEL.match(label))
    if not all(ch.isalnum() or ch in "-_" or unicodedata.category(ch).startswith("M") for ch in label):
        return False
    try:
        encoded = label.encode("idna")
    except UnicodeError:
        return False
    return 0 < len(encoded) <= 63


def canonical_url(url: str) -> str:
    """The URL an article is known by: no fragment, no click-tracking parameters, host lower-cased.

    Conservative on purpose: path case, parameter order and http vs https stay as the site wrote
    them, because changing those can name a different page. Raises InvalidURL for a link that
    `checked_url` refuses, so a malformed host is never stored under a "canonical" name.
    """
    parts = checked_url(url.strip())
    scheme = parts.scheme.lower()
    userinfo, at, hostport = parts.netloc.rpartition("@")
    hostport = hostport.lower()
    default = ":80" if scheme == "http" else ":443"
    if hostport.endswith(default):
        hostport = hostport[: -len(default)]
    hostport = hostport.removesuffix(":")  # an empty port is the default port
    netloc = f"{userinfo}{at}{hostport}"
    kept = [p for p in parts.query.split("&") if p and not _is_tracking(p)]
    return urlunsplit((scheme, netloc, parts.path or "/", "&".join(kept), ""))


def _is_tracking(pair: str) -> bool:
    key = unquote(pair.split("=", 1)[0]).strip().lower()
    return key.startswith("utm_") or key in TRACKING_PARAMS


def url_key(url: str) -> str:
    """What two links to the same page have in common: the canonical URL without a trailing slash.

    For comparing only (a queued story against stored articles, recent editions, each other); what
    is stored and shown stays the canonical URL. It never raises, because compose must not fail on
    a link stored before today's rules: a link `checked_url` refuses keeps its text as written as
    its key, so it matches only itself and never a well-formed link's key.
    """
    try:
        return canonical_url(url).rstrip("/")
    except InvalidURL:
        return url.strip() if isinstance(url, str) else ""
