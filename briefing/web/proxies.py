"""Believe X-Forwarded-For and X-Forwarded-Proto only from the proxies the operator listed.

The client address is what the per-address rate limits count. If any peer could name its own
(every local process can reach 127.0.0.1), one sender could pose as thousands of clients, so
the headers are ignored unless the connection comes from a network in BRIEFING_TRUSTED_PROXIES,
and by default none is listed. `briefing serve` leaves uvicorn's own proxy handling off so this
is the one place that decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.types import ASGIApp, Receive, Scope, Send

Network = IPv4Network | IPv6Network

SCHEMES = {"http": "http", "https": "https", "ws": "ws", "wss": "wss"}


def _address(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(text.strip())
    except ValueError:
        return None


class TrustedProxies:
    """Rewrites the ASGI client (and scheme) from forwarded headers sent by a trusted proxy."""

    def __init__(self, app: ASGIApp, trusted: Sequence[Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    def is_trusted(self, text: str) -> bool:
        found = _address(text)
        return found is not None and any(found in network for network in self.trusted)

    def forwarded_client(self, peer: str, forwarded_for: str) -> str:
        """The nearest address in the chain that is not one of our proxies.

        Each proxy appends the address it received the request from, so the chain is read from
        the right; whatever lies left of the first untrusted address was written by the client
        and proves nothing. A malformed entry stops the walk at the proxy that passed it on.
        """
        client = peer
        for entry in reversed([e.strip() for e in forwarded_for.split(",") if e.strip()]):
            found = _address(entry)
            if found is None:
                return client
            client = str(found)
            if not self.is_trusted(client):
                return client
        return client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        if scope["type"] in ("http", "websocket") and self.trusted and peer and self.is_trusted(peer[0]):
            values: dict[bytes, list[str]] = {}
            for key, value in scope["headers"]:
                if key in (b"x-forwarded-for", b"x-forwarded-proto"):
                    values.setdefault(key, []).append(value.decode("latin-1"))
            scope = dict(scope)
            if b"x-forwarded-for" in values:
                host = self.forwarded_client(peer[0], ",".join(values[b"x-forwarded-for"]))
                scope["client"] = (host, 0 if host != peer[0] else peer[1])
            if b"x-forwarded-proto" in values:
                proto = values[b"x-forwarded-proto"][-1].split(",")[-1].strip().lower()
                if scope["type"] == "websocket":
                    proto = proto.replace("http", "ws")
                if proto in SCHEMES:
                    scope["scheme"] = SCHEMES[proto]
        await self.app(scope, receive, send)
