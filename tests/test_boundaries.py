"""The architecture's import boundaries, checked on the source so a stray import fails the build."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "briefing"

# The Boundaries table of docs/ARCHITECTURE.md, as "module or package: imports it must not make".
STORAGE = ("sqlmodel", "sqlalchemy", "briefing.db", "briefing.models", "briefing.store")
EDGES_AND_CONFIG = (
    "briefing.cli",
    "briefing.web",
    "briefing.scheduler",
    "briefing.config",
    "briefing.wiring",
)
PURE = (*STORAGE, "smtplib", "briefing.config", "briefing.mail", "briefing.service", "briefing.feeds")
RULES: dict[str, tuple[str, ...]] = {
    "briefing.domain": ("briefing.", "sqlmodel", "sqlalchemy"),
    "briefing.errors": ("briefing.",),
    "briefing.urls": ("briefing.", "sqlmodel", "sqlalchemy"),
    "briefing.edition": PURE,
    "briefing.links": (*PURE, "briefing.edition"),
    "briefing.calendar": (*PURE, "briefing.edition", "apscheduler"),
    "briefing.inputs": PURE,
    "briefing.reader_copy": (*PURE, "briefing.edition"),
    "briefing.mail": (*STORAGE, "briefing.edition", "briefing.config", "briefing.service", "briefing.feeds"),
    "briefing.feeds.fetch": (*STORAGE, "briefing.config", "briefing.service", "briefing.feeds.poll"),
    "briefing.feeds.parse": (*STORAGE, "briefing.config", "briefing.service", "briefing.feeds.poll"),
    "briefing.feeds.deadline": (*STORAGE, "briefing.config", "briefing.service", "briefing.feeds.poll"),
    "briefing.feeds.text": (*STORAGE, "briefing.config", "briefing.service", "briefing.feeds.poll"),
    "briefing.feeds.poll": ("briefing.service", *EDGES_AND_CONFIG),
    "briefing.models": ("briefing.store", "briefing.service", *EDGES_AND_CONFIG),
    "briefing.db": ("briefing.store", "briefing.service", *EDGES_AND_CONFIG),
    "briefing.store": (
        "briefing.edition",
        "briefing.mail",
        "briefing.feeds",
        "briefing.service",
        *EDGES_AND_CONFIG,
    ),
    "briefing.service": EDGES_AND_CONFIG,
    "briefing.wiring": ("briefing.cli", "briefing.web", "briefing.scheduler"),
    "briefing.scheduler": ("briefing.cli", "briefing.web", "briefing.config", "sqlmodel", "briefing.store"),
    "briefing.web": ("briefing.cli", "briefing.scheduler"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _applies(rule: str, module: str) -> bool:
    return module == rule or module.startswith(rule + ".")


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: _module_name(p))
def test_module_respects_the_boundaries(path: Path) -> None:
    module = _module_name(path)
    banned = [b for rule, bans in RULES.items() if _applies(rule, module) for b in bans]
    wrong = sorted(
        name
        for name in _imports(path)
        for ban in banned
        if (name == ban.rstrip(".") or name.startswith(ban if ban.endswith(".") else ban + "."))
        or name == ban
    )
    assert wrong == [], f"{module} must not import {', '.join(sorted(set(wrong)))}"


def test_every_rule_names_a_real_module() -> None:
    modules = {_module_name(p) for p in SOURCES}
    for rule in RULES:
        assert any(_applies(rule, m) for m in modules), rule


# --------------------------------------------------------------------------- the clock

# Only these read the real clock; everything else is handed `now` or a `Clock` (time is an input).
CLOCK_READERS = ("briefing.wiring", "briefing.scheduler")
_CLOCK_CALLS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "monotonic"),
    ("time", "monotonic_ns"),
    ("time", "perf_counter"),
    ("time", "sleep"),
}
_CLOCK_NAMES = {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "sleep"}


def clock_reads(source: str) -> list[str]:
    """Uses of the real clock, called or passed on: `datetime.now()`, `time.monotonic`, `sleep()` ..."""
    tree = ast.parse(source)
    time_aliases = {"time"}
    from_time: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            time_aliases.update(a.asname or a.name for a in node.names if a.name == "time")
        elif isinstance(node, ast.ImportFrom) and node.module == "time":
            from_time.update(a.asname or a.name for a in node.names if a.name in _CLOCK_NAMES)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            kind = "time" if name in time_aliases else name
            if (kind, node.attr) in _CLOCK_CALLS and kind in ("time", "datetime", "date"):
                found.append(f"line {node.lineno}: {name}.{node.attr}")
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in from_time:
            found.append(f"line {node.lineno}: {node.id}")
    return sorted(found, key=lambda f: int(f.split()[1].rstrip(":")))


def test_the_clock_detector_finds_every_kind_of_read() -> None:
    sample = (
        "import time as _t\nfrom time import monotonic\nimport datetime as dt\n"
        "from datetime import datetime, date\n"
        "a = datetime.now(UTC)\nb = dt.datetime.now()\nc = date.today()\nd = _t.sleep(1)\ne = monotonic()\n"
        "f = self.clock.now()\ng = clock.monotonic()\nh = Limiter(clock=_t.monotonic)\n"
    )
    assert clock_reads(sample) == [
        "line 5: datetime.now",
        "line 6: datetime.now",
        "line 7: date.today",
        "line 8: _t.sleep",
        "line 9: monotonic",
        "line 12: _t.monotonic",
    ]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: _module_name(p))
def test_only_the_edges_read_the_real_clock(path: Path) -> None:
    module = _module_name(path)
    if any(_applies(edge, module) for edge in CLOCK_READERS):
        return
    reads = clock_reads(path.read_text(encoding="utf-8"))
    assert reads == [], f"{module} reads the real clock (take `now` or a Clock instead): {reads}"


# --------------------------------------------------------------------------- store writers

# The edges (CLI, web app, scheduler, demo) may read through the store, but every write goes
# through a use case in briefing/service, where the rules live. A store function writes when it
# adds, deletes, inserts, updates or upserts, or calls a store function that does.
EDGES = ("briefing.cli", "briefing.web", "briefing.scheduler", "briefing.demo")
STORE = PACKAGE / "store"
_WRITE_CALLS = {"add", "add_all", "delete", "merge", "insert", "update", "bulk_save_objects"}


def _store_functions(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, ast.FunctionDef] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):  # a writer class (the ledger's) counts as writing
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    found[f"{node.name}.{item.name}"] = item
    return found


def store_writers(path: Path) -> set[str]:
    functions = _store_functions(path)

    def direct(fn: ast.FunctionDef) -> bool:
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in _WRITE_CALLS:
                    return True
        return False

    writers = {name for name, fn in functions.items() if direct(fn)}
    changed = True
    while changed:  # a function that calls a writer of its module writes too
        changed = False
        for name, fn in functions.items():
            if name in writers:
                continue
            called = {
                n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            }
            if called & writers:
                writers.add(name)
                changed = True
    return {name.split(".")[0] for name in writers}


def _store_aliases(tree: ast.Module) -> dict[str, str]:
    """Local names bound to store modules: `from briefing.store import stories as story_store`."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "briefing.store":
            for a in node.names:
                aliases[a.asname or a.name] = a.name
    return aliases


def store_writes(source: str) -> list[str]:
    tree = ast.parse(source)
    aliases = _store_aliases(tree)
    writers = {m: store_writers(STORE / f"{m}.py") for m in set(aliases.values())}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("briefing.store."):
            module = node.module.rsplit(".", 1)[1]
            found += [
                f"line {node.lineno}: imports {module}.{a.name}"
                for a in node.names
                if a.name in store_writers(STORE / f"{module}.py")
            ]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id)
            if module and node.attr in writers[module]:
                found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_the_writer_check_finds_a_store_write_from_an_edge() -> None:
    assert "add_story" in store_writers(STORE / "stories.py")
    assert "list_stories" not in store_writers(STORE / "stories.py")
    sample = (
        "from briefing.store import stories as story_store\n"
        "from briefing.store.subscribers import unsubscribe, find_by_email\n"
        "story_store.list_stories(s, newsletter_id=1)\nstory_store.set_status(s, 1, 'ready', now=now)\n"
    )
    assert store_writes(sample) == [
        "line 2: imports subscribers.unsubscribe",
        "line 4: story_store.set_status",
    ]


@pytest.mark.parametrize(
    "path",
    [p for p in SOURCES if any(_applies(e, _module_name(p)) for e in EDGES)],
    ids=lambda p: _module_name(p),
)
def test_edges_write_only_through_use_cases(path: Path) -> None:
    writes = store_writes(path.read_text(encoding="utf-8"))
    assert writes == [], f"{_module_name(path)} writes through the store; call a use case instead: {writes}"
