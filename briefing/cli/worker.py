"""`briefing worker`: send with the editions being sent, from any number of machines (PostgreSQL).

Kept to typer, rich and the command helpers at the top: `briefing --help` builds every command,
and this one imports the database and the mail pool only when it runs.
"""

import contextlib
import math
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from briefing.cli.common import fail, handle_errors, show, state, styled
from briefing.cli.stopping import STOP_GRACE, Stopper, wait_stoppable
from briefing.errors import InvalidInput, LockHeld

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from briefing.service.setup import EditionSetup
    from briefing.service.worker import PassReport

SENDER_RUNNING_EXIT = 73  # another sender has this SQLite database (as for `briefing send`)
MAX_CONNECTIONS = 64  # as BRIEFING_SMTP_POOL_SIZE allows
MAX_POLL = 24 * 3600.0


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


@handle_errors
def worker(
    connections: Annotated[
        int,
        typer.Option(
            "--connections", help="SMTP connections this worker opens (default: BRIEFING_SMTP_POOL_SIZE)."
        ),
    ] = 0,
    poll: Annotated[
        float, typer.Option("--poll", help="Seconds between two looks for work while there is none.")
    ] = 5.0,
    once: Annotated[
        bool,
        typer.Option("--once", help="Exit 0 as soon as no edition being sent has anything to send now."),
    ] = False,
) -> None:
    """Send with the editions being sent: join any edition in `sending`, from any machine.

    A worker never freezes an edition or takes its snapshot (`briefing send`
    or the scheduler does that, once). It waits for an edition in `sending`
    and sends what is there now: pending copies, deferred copies now due,
    and the claims of a sender that stopped, on any host.

    Many workers may share one PostgreSQL database. SQLite takes one sender:
    a worker exits 73 if another is sending when it starts, later waits.

    SIGTERM or Ctrl-C: the copies in flight finish and are recorded first.

    Exit codes: 0 done (--once), 1 an error, 73 another sender on this
    SQLite database, 130 stopped by Ctrl-C, 143 stopped by SIGTERM.

    Example: briefing worker --connections 4
    Example: briefing worker --once
    """
    if connections < 0 or connections > MAX_CONNECTIONS:
        raise InvalidInput(
            f"must be from 1 to {MAX_CONNECTIONS} (0: the pool-size setting)", field="--connections"
        )
    if not math.isfinite(poll) or poll <= 0 or poll > MAX_POLL:
        raise InvalidInput(f"must be a number of seconds above 0, at most {MAX_POLL:.0f}", field="--poll")
    import logging
    from dataclasses import replace

    from briefing.locks import acquire_send_lock
    from briefing.service.worker import Worker, WorkerContext
    from briefing.wiring import edition_setup, edition_setup_now, transport

    settings = state().settings
    if connections:
        settings = settings.model_copy(update={"smtp_pool_size": connections})
    settings.secret_keys()  # fail now, not at the first pass
    engine, clock = state().engine, state().clock
    try:
        held = acquire_send_lock(settings.database_url, clock=clock)
    except LockHeld as exc:
        raise fail(f"{exc}; SQLite takes one sender (PostgreSQL takes many)", SENDER_RUNNING_EXIT) from None
    if held is not None:
        held.release()  # taken again around each pass, so `briefing send` can have its turn

    base = edition_setup(settings)
    width = settings.smtp_pool_size

    bases: dict[int, EditionSetup] = {}

    def setup(newsletter_id: int) -> "EditionSetup":
        current = edition_setup_now(
            settings, engine, base=bases.get(newsletter_id, base), newsletter=newsletter_id
        )
        bases[newsletter_id] = current
        return replace(current, policy=replace(current.policy, workers=width))

    def guard() -> "Callable[[], None] | None":
        lock = acquire_send_lock(settings.database_url, clock=clock)
        return lock.release if lock is not None else None

    stopper = Stopper()
    loop = Worker(
        WorkerContext(
            engine=engine,
            setup=setup,
            transport=lambda: transport(settings, clock),
            clock=clock,
            stop=stopper.stop,
            log=logging.getLogger("briefing.worker"),
            send_guard=guard,
            on_pass=print_pass,
        )
    )
    error: list[BaseException] = []
    done = threading.Event()

    def work() -> None:
        try:
            loop.run(poll=poll, once=once)
        except BaseException as exc:  # noqa: BLE001 - raised again below, in the command's thread
            error.append(exc)
        finally:
            done.set()

    show(
        f"worker started with {width} connection{'' if width == 1 else 's'}; waiting for editions being sent"
    )
    with stopper, _logging_to_stderr():
        threading.Thread(target=work, name="briefing-worker", daemon=True).start()
        finished = wait_stoppable(done, stopper, clock, on_stopping=_stopping)
    if not finished:
        raise fail(
            "stopped before the copies in flight were answered; the next pass settles them "
            "(as ambiguous, per the policy)",
            stopper.exit_code,
        )
    if error:
        raise error[0]
    if stopper.signum:
        show(f"worker stopped ({_passes(loop.passes)})")
        raise typer.Exit(stopper.exit_code)
    show(f"worker done: nothing to send now ({_passes(loop.passes)})")


def _passes(n: int) -> str:
    return f"{n} pass" if n == 1 else f"{n} passes"


@contextlib.contextmanager
def _logging_to_stderr() -> "Iterator[None]":
    """The send loop's log lines (pauses, recovered claims, trouble) on standard error while it runs.

    On the package's logger, taken off again afterwards, so a command run inside another program
    (the tests) leaves no handler behind on a stream that program closes.
    """
    import logging
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    package = logging.getLogger("briefing")
    level = package.level
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(level)


def _stopping(name: str) -> None:
    show(
        f"Stopping on {name}: no new copy starts; the ones in flight finish and are recorded "
        f"(up to {STOP_GRACE:.0f} s; a second signal stops at once).",
        err=True,
    )


def print_pass(report: "PassReport") -> None:
    """One line per pass: whose edition and which, what this worker sent, where the whole edition stands."""
    outcome = report.outcome
    status = outcome.edition.status
    whose = f"{report.newsletter} " if report.newsletter else ""
    show(
        styled(
            f"{whose}{report.kind} edition {report.edition_date}: {report.mine} sent by this worker, "
            f"{report.sent}/{report.total} sent in all; {status} ({report.reason})",
            "green" if status == "sent" else "yellow",
        )
    )
    if status != "sent":
        show(f"  {outcome.message}")
