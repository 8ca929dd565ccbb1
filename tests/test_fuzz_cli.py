"""Fuzz every `briefing` command that takes text or numbers, in-process on a real SQLite file.

The commands are found by walking the real Typer app: a new option of a known command is fuzzed
with no edit here, and a new command fails `test_every_command_with_text_or_number_input_is_fuzzed`
until it has a Spec (a valid call) or a SKIPPED reason. Each parameter gets the hostile values for
its kind and NAUGHTY_PER_PARAM strings of the Big List of Naughty Strings (consecutive parameters
take consecutive strings; with the web and API files the suite tries about 430 of its 503), then
each command gets HYPOTHESIS_EXAMPLES generated values (derandomized: the same ones every run).
The valid call must succeed first, else the bad values prove nothing. Every input starts from the
same database (a template file copied in), and each answer must be:

- no exception escaping the command (a traceback for a person at a terminal), no "Traceback";
- exit 0, or 1 with one line on standard error starting "error:", or 2, Click's own usage error
  for a value its parser refuses (a clean message, not a traceback: the one allowed exception to
  the one-line rule); `preview` and `preflight` may also exit 1 with their report (preflight
  failed) on standard output, as documented;
- on a non-zero exit, every table exactly as before;
- after a command that stores text, its listing runs cleanly and shows short values literally
  (Rich markup such as `[/x]` in stored text is printed, never interpreted).

Sizes: 38 commands, 74 parameters (and two password lines on standard input), each with 6 to 12
hostile values + NAUGHTY_PER_PARAM naughty strings, + HYPOTHESIS_EXAMPLES per command: about 1,330
invocations, plus the listings run after a stored value; each test prints its count (pytest -s).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fixtures.cli import cli_env
from tests.fixtures.commands import ALL_COMMANDS, argv, fuzzable, invoke, problems
from tests.fixtures.naughty import (
    NAUGHTY_FROM,
    DatabaseTemplate,
    Findings,
    changed_tables,
    fingerprint,
    generated,
    inputs_for,
    shown_as_is,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(120)]

NAUGHTY_PER_PARAM = 3
HYPOTHESIS_EXAMPLES = 8
COSTLY_INPUTS = 5  # generated values for commands that hash a password (argon2)
DAY = "2026-11-30"  # sent while the template is made: its stories are used, its ledger has rows
NEXT_DAY = "2026-12-01"  # still open: the commands that change an edition work on it
PASSWORD = "correct horse battery staple"
RETURNED_MAIL = (
    "From: MAILER-DAEMON@example.net\nTo: bounces@news.example.com\nSubject: Undelivered Mail\n\n"
    "<ada@example.com>: host mx.example.com said: 550 5.1.1 no such user\n"
)

SKIPPED = {
    ("serve",): "runs the web server until stopped",
    ("schedule",): "runs until stopped, and refuses the pinned clock (BRIEFING_NOW) every test uses",
    ("dev-smtp",): "runs an SMTP server until stopped",
}


@dataclass(frozen=True)
class Spec:
    """How to call one command validly, so one parameter at a time can be replaced by a bad value."""

    base: dict[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    flags_for: dict[str, tuple[str, ...]] = field(default_factory=dict)  # instead of `flags`
    stdin: str | None = None
    listing: tuple[str, ...] = ()  # run after a success; it must print stored text literally
    echoed: frozenset[str] = frozenset()
    costly: bool = False
    report_exit: str = ""  # exit 1 with this on stdout is a report (preflight failed), not an error


def specs(tmp: Path) -> dict[tuple[str, ...], Spec]:
    csv_file = tmp / "subscribers.csv"
    return {
        ("articles", "add"): Spec(
            {"url": "https://news.example.com/2026/new", "title": "New article"},
            listing=("articles", "list"),
            echoed=frozenset({"title", "section"}),
        ),
        ("articles", "list"): Spec(),
        ("articles", "import"): Spec({"file": str(tmp / "articles.jsonl")}),
        ("stories", "add"): Spec(
            {"url": "https://news.example.com/2026/story", "headline": "A story"},
            listing=("stories", "list"),
            echoed=frozenset({"headline"}),
        ),
        ("stories", "list"): Spec(),
        ("stories", "edit"): Spec(
            {"story_id": "2", "headline": "Edited"},
            listing=("stories", "list"),
            echoed=frozenset({"headline"}),
        ),
        ("stories", "move"): Spec({"story_id": "2", "to": "1"}),
        ("stories", "ready"): Spec({"story_ids": "2"}),
        ("stories", "drop"): Spec({"story_id": "2"}),
        ("subscribers", "add"): Spec(
            {"email": "new.reader@example.com"}, listing=("subscribers", "list"), echoed=frozenset({"name"})
        ),
        ("subscribers", "list"): Spec(),
        ("subscribers", "import"): Spec({"file": str(csv_file)}),
        ("subscribers", "suppress"): Spec({"file": str(csv_file)}),
        ("subscribers", "export"): Spec(),
        ("subscribers", "unsubscribe"): Spec({"email": "ada@example.com"}),
        ("subscribers", "delete"): Spec({"email": "ada@example.com"}, flags=("--yes",)),
        ("preview",): Spec(
            {"out": str(tmp / "preview"), "edition": NEXT_DAY}, report_exit="Preflight failed"
        ),
        ("preflight",): Spec({"edition": NEXT_DAY}, report_exit="Preflight failed"),
        ("note",): Spec({"text": "Polls open at 7am.", "edition": NEXT_DAY}),
        ("hold",): Spec({"edition": NEXT_DAY}),
        ("release",): Spec({"edition": NEXT_DAY}),
        ("editions", "list"): Spec(),
        ("editions", "show"): Spec({"edition": DAY}),
        ("send",): Spec(flags=("--dry-run",), flags_for={"to": ()}),
        ("worker",): Spec({"connections": "2", "poll": "1"}, flags=("--once",)),  # no edition is sending
        ("calendar",): Spec(),
        ("skip",): Spec({"day": "2027-01-04"}, listing=("calendar",), echoed=frozenset({"reason"})),
        ("unskip",): Spec({"day": "2026-12-25"}),
        ("feeds", "add"): Spec(
            {"source": "https://news.example.com/other.xml", "name": "other"},
            listing=("feeds", "list"),
            echoed=frozenset({"name", "section"}),
        ),
        ("feeds", "remove"): Spec({"name_or_id": "site"}),
        ("feeds", "poll"): Spec({"name": "site"}),
        ("api-tokens", "create"): Spec(
            {"name": "cms2"}, listing=("api-tokens", "list"), echoed=frozenset({"name"})
        ),
        ("api-tokens", "revoke"): Spec({"name": "cms"}),
        ("editors", "add"): Spec(
            {"email": "new.editor@example.com"},
            flags=("--password-stdin",),
            stdin=PASSWORD + "\n",
            listing=("editors", "list"),
            costly=True,
        ),
        ("editors", "password"): Spec(
            {"email": "editor@example.com"}, flags=("--password-stdin",), stdin=PASSWORD + "!\n", costly=True
        ),
        ("editors", "disable"): Spec({"email": "editor@example.com"}),
        ("bounces", "receive"): Spec({"recipient": "bounces@news.example.com"}, stdin=RETURNED_MAIL),
        ("bounces", "poll"): Spec(),
        ("bounces", "list"): Spec(),
        ("editors", "enable"): Spec({"email": "editor@example.com"}),
        ("newsletters", "add"): Spec(
            {"slug": "culture", "name": "Culture"},
            listing=("newsletters", "list"),
            echoed=frozenset({"name"}),
        ),
        ("newsletters", "edit"): Spec(
            {"slug": "weekend", "name": "Weekend Edition"},
            listing=("newsletters", "list"),
            echoed=frozenset({"name"}),
        ),
        ("newsletters", "pause"): Spec({"slug": "weekend"}),
        ("newsletters", "resume"): Spec({"slug": "weekend"}),
        ("sponsors", "add"): Spec(
            {
                "starts_on": NEXT_DAY,
                "ends_on": NEXT_DAY,
                "name": "Example Bank",
                "url": "https://bank.example.net/",
            },
            listing=("sponsors", "list"),
            echoed=frozenset({"name", "label"}),
        ),
        ("sponsors", "list"): Spec(),
        ("sponsors", "remove"): Spec({"slot_id": "1"}),
        ("special",): Spec(
            {"newsletter": "the-morning-briefing", "subject": "Breaking news", "stories": "1"},
            flags=("--now", "--yes"),
            flags_for={"at": ("--yes",)},
            listing=("specials", "list"),
            echoed=frozenset({"subject"}),
            report_exit="Preflight failed",
        ),
        ("specials", "list"): Spec(),
        ("specials", "cancel"): Spec({"edition": "2026-11-29", "kind": "special-1"}),
    }


# --------------------------------------------------------------------------- the app's commands


FUZZED = sorted(p for p, c in ALL_COMMANDS.items() if fuzzable(p, c) and p not in SKIPPED)


def first_slice(path: tuple[str, ...]) -> int:
    """This command's first naughty slice: right after the slices of the commands before it."""
    before = FUZZED[: FUZZED.index(path)]
    return sum(len(fuzzable(p, ALL_COMMANDS[p])) + 1 for p in before)


# --------------------------------------------------------------------------- the starting database


FEED = (
    '<rss version="2.0"><channel><title>Site</title><item><title>Fed story</title>'
    "<link>https://news.example.com/fed</link><pubDate>Sun, 29 Nov 2026 09:00:00 GMT</pubDate>"
    "</item></channel></rss>"
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, DatabaseTemplate]]:
    """A newsroom with one of everything, saved once for the whole module."""
    tmp = tmp_path_factory.mktemp("fuzz-cli")
    (tmp / "site.xml").write_text(FEED, encoding="utf-8")
    for folder in ("cur", "new", "tmp"):  # an empty bounce mailbox for `bounces poll`
        (tmp / "bounces" / folder).mkdir(parents=True)
    (tmp / "subscribers.csv").write_text("email,name\ncsv.reader@example.com,Csv Reader\n", encoding="utf-8")
    (tmp / "articles.jsonl").write_text(
        json.dumps({"url": "https://news.example.com/2026/imported", "title": "Imported"}) + "\n",
        encoding="utf-8",
    )
    env = env_for(tmp)
    steps: list[tuple[list[str], str | None]] = [
        (
            ["articles", "add", "--url", "https://news.example.com/2026/budget", "--title", "Budget passes"],
            None,
        ),
        (
            ["stories", "add", "--article", "1", "--status", "ready", "--date", DAY, "--section", "Politics"],
            None,
        ),
        (
            ["stories", "add", "--url", "https://example.org/report", "--headline", "Report", "--date", DAY],
            None,
        ),
        (
            ["stories", "add", "--url", "https://example.org/world", "--headline", "World", "--date", DAY],
            None,
        ),
        (
            ["stories", "add", "--url", "https://example.org/next", "--headline", "Next", "--date", NEXT_DAY],
            None,
        ),
        (["stories", "ready", "4"], None),
        (["subscribers", "add", "ada@example.com", "--name", "Ada"], None),
        (["subscribers", "add", "bob@example.org", "--pending"], None),
        (["feeds", "add", str(tmp / "site.xml"), "--name", "site"], None),
        (["api-tokens", "create", "cms"], None),
        (["editors", "add", "editor@example.com", "--password-stdin"], PASSWORD + "\n"),
        (["skip", "2026-12-25", "--reason", "Christmas Day"], None),
        (["note", "Results from 11pm.", "--date", DAY], None),
        (["newsletters", "add", "weekend", "--name", "Weekend", "--send-days", "sat-sun"], None),
        (
            [
                *("sponsors", "add", "--from", DAY, "--to", NEXT_DAY),
                *("--name", "Example Books", "--url", "https://books.example.org/"),
            ],
            None,
        ),
        (
            [
                *("special", "--newsletter", "the-morning-briefing", "--subject", "Later today"),
                *("--stories", "1", "--at", "23:00"),
            ],
            None,
        ),
    ]
    for args, stdin in steps:
        outcome = invoke(env, args, stdin)
        assert outcome.code == 0 and outcome.exception is None, (args, outcome)
    # A sent edition gives `editions show` a ledger to print; the rest of the suite does not need it,
    # so a template that does not render today only narrows that one command.
    invoke(env, ["send", "--date", DAY, "--force"], None)
    db = tmp / "cli.db"
    saved = DatabaseTemplate(db)
    engine = sa.create_engine(f"sqlite:///{db}")
    saved.save(engine)
    yield tmp, saved
    engine.dispose()


def env_for(tmp: Path, db: Path | None = None) -> dict[str, str]:
    env = cli_env(
        tmp,
        secret_key="fuzz-link-secret-0123456789abcdef",
        smtp_url="memory://",
        public_base_url="https://news.example.com",
        send_days="mon-fri",
        bounce_mailbox=f"maildir://{tmp / 'bounces'}",
    )
    if db is not None:
        env["BRIEFING_DATABASE_URL"] = f"sqlite:///{db}"
    return env


class Trial:
    """Runs inputs against one command, each on a fresh copy of the template database."""

    def __init__(self, tmp: Path, saved: DatabaseTemplate, path: tuple[str, ...]) -> None:
        self.path = path
        self.command = ALL_COMMANDS[path]
        self.spec = specs(tmp)[path]
        self.params = fuzzable(path, self.command)
        self.db = tmp / "trial.db"
        self.env = env_for(tmp, self.db)
        self.saved = saved
        self.engine = sa.create_engine(f"sqlite:///{self.db}", poolclass=sa.pool.NullPool)
        saved.restore(to=self.db)
        self.before = fingerprint(self.engine)
        self.findings = Findings()
        self.target = "briefing " + " ".join(path)

    def run(self, name: str, value: str) -> None:
        if "\x00" in value and name != "<stdin>":
            return  # argv cannot carry a NUL byte
        self.saved.restore(to=self.db)
        values = dict(self.spec.base)
        stdin: str | bytes | None = self.spec.stdin
        if name == "<stdin>":  # bytes, as a pipe delivers them: a lone surrogate is invalid UTF-8
            stdin = (value + "\n").encode("utf-8", "surrogatepass")
        elif name:
            values[name] = value
        flags = self.spec.flags_for.get(name, self.spec.flags)
        self.findings.tried += 1
        outcome = invoke(self.env, argv(self.path, self.command, values, flags), stdin)
        target = f"{self.target} {name}"
        for problem in problems(outcome, self.spec.report_exit):
            self.findings.add(target, value, problem)
        if not name and outcome.code != 0:  # else the bad values would be refused for nothing
            self.findings.add(
                self.target, "", f"the valid call exits {outcome.code}: {outcome.stderr[:200]!r}"
            )
        if outcome.code != 0:
            changed = changed_tables(self.before, fingerprint(self.engine))
            if changed:
                self.findings.add(target, value, f"exit {outcome.code} but changed {', '.join(changed)}")
            return
        if self.spec.listing:
            self.check_listing(name, value)

    def check_listing(self, name: str, value: str) -> None:
        listing = invoke(self.env, list(self.spec.listing), None)
        target = f"briefing {' '.join(self.spec.listing)} after {self.target} {name}"
        for problem in problems(listing):
            self.findings.add(target, value, problem)
        if listing.code != 0:
            self.findings.add(target, value, f"exit {listing.code}")
        elif name in self.spec.echoed and shown_as_is(value, max_len=24) and value not in listing.stdout:
            self.findings.add(target, value, "stored text not shown literally")


@pytest.mark.parametrize("path", FUZZED, ids=" ".join)
def test_command_survives_naughty_and_generated_input(
    path: tuple[str, ...], template: tuple[Path, DatabaseTemplate]
) -> None:
    tmp, saved = template
    trial = Trial(tmp, saved, path)
    params = list(trial.params) + ([("<stdin>", "text")] if trial.spec.stdin else [])
    offset = first_slice(path)
    trial.run("", "")
    for i, (name, kind) in enumerate(params):
        # A command that hashes a password gets every hostile value but one naughty string per parameter.
        count = 1 if trial.spec.costly else NAUGHTY_PER_PARAM
        for value in inputs_for(kind, count, NAUGHTY_FROM["cli"] + NAUGHTY_PER_PARAM * (offset + i)):
            trial.run(name, value)

    @settings(
        max_examples=COSTLY_INPUTS if trial.spec.costly else HYPOTHESIS_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def examples(data: st.DataObject) -> None:
        name, kind = data.draw(st.sampled_from(params))
        trial.run(name, data.draw(generated(kind)))

    examples()
    print(f"{trial.target}: {trial.findings.tried} inputs")
    trial.findings.check()


def test_every_command_with_text_or_number_input_is_fuzzed(tmp_path: Path) -> None:
    known = specs(tmp_path)
    takes_input = {p for p, c in ALL_COMMANDS.items() if fuzzable(p, c)}
    assert takes_input - set(SKIPPED) - set(known) == set(), "add a Spec (or a SKIPPED reason)"
    assert set(FUZZED) == takes_input - set(SKIPPED)
    assert len(FUZZED) >= 30
