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
    "briefing.compose": PURE,
    "briefing.inputs": PURE,
    "briefing.tokens": PURE,
    "briefing.preflight": PURE,
    "briefing.calendar": (*PURE, "apscheduler"),
    "briefing.topup": PURE,
    "briefing.render": (
        "sqlmodel",
        "sqlalchemy",
        "briefing.store",
        "briefing.config",
        "briefing.transport",
        "briefing.db",
    ),
    "briefing.message": (
        "sqlmodel",
        "sqlalchemy",
        "briefing.store",
        "briefing.render",
        "briefing.config",
        "briefing.db",
    ),
    "briefing.transport": (
        "sqlmodel",
        "sqlalchemy",
        "briefing.store",
        "briefing.render",
        "briefing.config",
        "briefing.db",
    ),
    "briefing.models": ("briefing.service", "briefing.publishing", "briefing.cli", "briefing.web"),
    "briefing.db": ("briefing.service", "briefing.publishing", "briefing.cli", "briefing.web"),
    "briefing.store": (
        "briefing.render",
        "briefing.transport",
        "briefing.message",
        "briefing.cli",
        "briefing.web",
        "briefing.config",
        "briefing.publishing",
        "briefing.service",
    ),
    "briefing.delivery": ("briefing.cli", "briefing.web", "briefing.scheduler", "briefing.config"),
    "briefing.service": ("briefing.cli", "briefing.web", "briefing.scheduler", "briefing.config"),
    "briefing.publishing": ("briefing.cli", "briefing.web", "briefing.scheduler", "briefing.config"),
    "briefing.daily": ("briefing.cli", "briefing.web", "briefing.scheduler", "briefing.config"),
    "briefing.feeds": ("briefing.cli", "briefing.web", "briefing.scheduler", "briefing.config"),
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
