"""Who holds a claim on the ledger: one name per sending run, and whether a crashed one is gone.

A name is host:pid:nonce, so a later run on the same host can tell a sender that died mid-message
(its claims were in flight) from one that is still running elsewhere.
"""

from __future__ import annotations

import os
import socket
import uuid


def make_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """True when the owner ran on this host and its process is gone (its claims were in flight)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
