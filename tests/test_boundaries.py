"""The architecture's import boundaries, checked on the source so a stray import fails the build."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "briefing"

PURE = ("sqlmodel", "sqlalchemy", "jinja2", "smtplib", "briefing.config", "briefing.store", "briefing.db")
RULES: dict[str, tuple[str, ...]] = {
    # module (or package prefix): imports it must not make
    "briefing.domain": ("briefing.", "sqlmodel", "sqlalchemy"),
    "briefing.errors": ("briefing.",),
    "briefing.edition.compose": PURE,
    "briefing.inputs": PURE,
    "briefing.links": PURE,
    "briefing.edition.preflight": PURE,
    "briefing.calendar": (*PURE, "apscheduler"),
    "briefing.edition.topup": PURE,
    "briefing.edition.render": (
        "sqlmodel",
        "sqlalchemy",
        "briefing.store",
        "briefing.config",
        "briefing.mail.transport",
        "briefing.db",
    ),
    "briefing.mail.message": (
        "sqlmodel",
        "sqlalchemy",
        "briefing.store",
        "briefing.edition.render",
        "briefing.config",
        "briefing.db",
    ),
    "briefing.mail.transport": (
        "sqlmodel",
        "sqlalchemy",
        "briefing.store",
        "briefing.edition.render",
        "briefing.config",
        "briefing.db",
    ),
    "briefing.models": ("briefing.service", "briefing.service.editions", "briefing.cli", "briefing.web"),
    "briefing.db": ("briefing.service", "briefing.service.editions", "briefing.cli", "briefing.web"),
    "briefing.store": (
        "briefing.edition.render",
        "briefing.mail.transport",
        "briefing.mail.message",
        "briefing.cli",
        "briefing.web",
        "briefing.config",
        "briefing.service.editions",
        "briefing.service",
    ),
    "briefing.service.delivery": ("briefing.cli", "briefing.web", "briefing.scheduler", "briefing.config"),
    "briefing.service": ("briefing.cli", "briefing.web", "briefing.scheduler", "briefing.config"),
    "briefing.service.editions": ("briefing.cli", "briefing.web", "briefing.scheduler", "briefing.config"),
    "briefing.service.schedule": ("briefing.cli", "briefing.web", "briefing.scheduler", "briefing.config"),
    "briefing.service.feeds": ("briefing.cli", "briefing.web", "briefing.scheduler", "briefing.config"),
    "briefing.scheduler": ("briefing.cli", "briefing.web", "briefing.config", "sqlmodel"),
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
