"""The one way links are compared and stored: `canonical_url`, and the `url_key` built on it.

Feeds and the CMS push store an article under its canonical URL; compose and the top-up compare
links by `url_key`, so "is this the same page?" has one answer everywhere. Pure, stdlib only.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["TRACKING_PARAMS", "canonical_url", "url_key"]

# Query parameters that only say where a click came from; anything else may select content.
TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "mc_cid", "mc_eid", "igshid"}
)


def canonical_url(url: str) -> str:
    """The URL an article is known by: no fragment, no click-tracking parameters, host lower-cased.

    Conservative on purpose: path case, parameter order and http vs https stay as the site wrote
    them, because changing those can name a different page.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    hostport = hostport.lower()
    for default in (":80",) if scheme == "http" else (":443",) if scheme == "https" else ():
        if hostport.endswith(default):
            hostport = hostport[: -len(default)]
    netloc = f"{userinfo}{at}{hostport}"
    kept = [p for p in parts.query.split("&") if p and not _is_tracking(p)]
    path = parts.path or ("/" if netloc else "")
    return urlunsplit((scheme, netloc, path, "&".join(kept), ""))


def _is_tracking(pair: str) -> bool:
    key = unquote(pair.split("=", 1)[0]).strip().lower()
    return key.startswith("utm_") or key in TRACKING_PARAMS


def url_key(url: str) -> str:
    """What two links to the same page have in common: the canonical URL without a trailing slash.

    For comparing only (a queued story against stored articles, recent editions, each other); what
    is stored and shown stays the canonical URL. A link that does not parse is compared as written.
    """
    try:
        return canonical_url(url).rstrip("/")
    except ValueError:
        return url.strip()
