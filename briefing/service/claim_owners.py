"""Who holds a claim on the ledger, and whether that sender is still at work, from any host.

A claim's owner is `host:pid:nonce:wN` (a run's name plus its connection). Each run keeps a row in
the sender table with a heartbeat, so a sender on any host can tell a live run from one that
crashed or finished: a process id only means something on its own host, a heartbeat means the
same everywhere. Today's host's own processes are still checked by pid too, which is quicker than
waiting for a heartbeat to fall silent.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from briefing.store import deliveries as ledger
from briefing.store import ledger_recovery
from briefing.store import senders as sender_store

# A run writes its heartbeat this often (seconds) ...
HEARTBEAT_EVERY = 5.0
# ... and one not heard from for this long has crashed or lost the database: its claims are free.
# Six missed beats: a busy database or a long garbage collection does not look like a crash.
STALE_AFTER = 30.0


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


def stale_before(now: datetime) -> datetime:
    """A run whose last heartbeat is older than this is no longer sending."""
    return now - timedelta(seconds=STALE_AFTER)


def run_is_live(run: sender_store.SenderRow, *, now: datetime) -> bool:
    """The liveness rule: not finished, heard from within STALE_AFTER, and not a dead process here."""
    return run.alive(stale_before=stale_before(now)) and not owner_is_dead(run.owner)


def gone_owners(session: Session, edition_id: int, owners: Iterable[str], *, now: datetime) -> list[str]:
    """Of these claim owners, those whose run is gone: finished, silent, or a dead process on this host.

    A claim whose run has no sender row is left to its lease (it expires on its own).
    """
    owners = list(owners)
    gone = set(sender_store.owners_gone(session, edition_id, owners, stale_before=stale_before(now)))
    gone.update(o for o in owners if owner_is_dead(o))
    return sorted(gone)


@dataclass(frozen=True, slots=True)
class OthersAtWork:
    """The other runs still sending an edition, and the copies they hold claimed right now."""

    senders: int = 0
    in_flight: int = 0


def others_at_work(session: Session, edition_id: int, me: str, *, now: datetime) -> OthersAtWork:
    """Other live runs on the edition (from the sender table, whatever their host) and their claims.

    A claim under a live lease whose run keeps no sender row counts as in flight too: it is in
    someone's hands until its lease runs out.
    """
    rows = sender_store.for_edition(session, edition_id)
    known = {r.owner for r in rows}
    runs = {r.owner for r in rows if r.owner != me and run_is_live(r, now=now)}
    in_flight = 0
    for owner, n in ledger.live_claims(session, edition_id, now=now).items():
        run = sender_store.run_of(owner)
        if run == me:
            continue
        if run in runs or (run not in known and not owner_is_dead(owner)):
            in_flight += n
    return OthersAtWork(senders=len(runs), in_flight=in_flight)


def live_runs(session: Session, edition_id: int, *, now: datetime) -> list[sender_store.SenderRow]:
    """Every run sending the edition now, by the liveness rule."""
    return [r for r in sender_store.for_edition(session, edition_id) if run_is_live(r, now=now)]


def recover(
    session: Session, edition_id: int, me: str, *, now: datetime, resend: bool, held: bool
) -> tuple[list[str], int]:
    """Free the claims of senders that are gone, from any host: (addresses in flight, rows freed).

    A claim is free when its lease ran out, when its run's sender row is finished or silent
    (STALE_AFTER), or when its process is gone from this host; the claims of `me` never are.
    Each connection's lowest claimed row was in flight: ambiguous, resent only with `resend`.
    With `held`, refusals a stopped run held unjudged go back to the queue too, but only when no
    other run is live: a live sender's judge may still be weighing its own.
    """
    owners = [o for o in ledger.claim_owners(session, edition_id) if sender_store.run_of(o) != me]
    in_flight, freed = ledger_recovery.recover_claims(
        session,
        edition_id,
        now=now,
        dead_owners=gone_owners(session, edition_id, owners, now=now),
        resend=resend,
        keep_run=me,
    )
    if held and not others_at_work(session, edition_id, me, now=now).senders:
        freed += ledger_recovery.recover_held(session, edition_id, now=now)
    return in_flight, freed
