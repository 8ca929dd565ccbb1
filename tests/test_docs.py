"""The documents stay true: every command is in the README, every module the architecture names exists.

Documentation that drifts from the code misleads the next person more than none at all, so the
parts that can be checked mechanically are checked here (as sqlite-utils does for its docs).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from briefing.cli import app
from briefing.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
ARCHITECTURE = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if hasattr(command, "commands"):  # a group (Typer's own or click's)
        if path:
            yield path
        for name, sub in command.commands.items():
            if not sub.hidden:
                yield from _commands(sub, (*path, name))
    else:
        yield path


COMMANDS = sorted(_commands(typer.main.get_command(app)))


def mentioned(words: str, text: str) -> bool:
    """`briefing stories add ...` in a shell block, or `stories add` in running text."""
    return bool(re.search(rf"briefing {re.escape(words)}\b", text)) or f"`{words}" in text


def test_the_command_walk_sees_groups_and_commands() -> None:
    assert ("stories",) in COMMANDS and ("stories", "add") in COMMANDS and ("send",) in COMMANDS
    assert ("tokens",) not in COMMANDS  # hidden alias of api-tokens
    assert not mentioned("stories frobnicate", README)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_is_in_the_readme(path: tuple[str, ...]) -> None:
    assert mentioned(" ".join(path), README), f"README.md never mentions `briefing {' '.join(path)}`"


def test_every_setting_the_readme_names_exists() -> None:
    known = {f"BRIEFING_{name.upper()}" for name in Settings.model_fields}
    # Not settings: the test suite's database, and the CLI's traceback switch (environment only).
    named = set(re.findall(r"BRIEFING_[A-Z0-9_]+[A-Z0-9]", README)) - {
        "BRIEFING_TEST_POSTGRES_URL",
        "BRIEFING_DEBUG",
    }
    assert named - known == set()


# --------------------------------------------------------------------------- docs/ARCHITECTURE.md


def layout_paths(text: str) -> set[str]:
    """Paths named in the Layout block: `briefing/`, then indented `store/`, `links.py` ...

    A line names one entry or several separated by commas (`compose.py, topup.py`); indentation
    says which folder it sits in.
    """
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    paths: set[str] = set()
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        names = re.match(r"\s*((?:[\w./]+(?:, )?)+)", line)
        if names is None:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else ""
        for name in (n.strip() for n in names.group(1).split(",")):
            if not name or not re.fullmatch(r"[\w]+(\.py|/)", name):
                continue
            paths.add(parent + name)
            if name.endswith("/"):
                stack.append((indent, parent + name))
    return paths


def test_the_layout_reader_follows_indentation() -> None:
    sample = "## Layout\n```\nbriefing/\n  store/\n    a.py, b.py\n  c.py   what c holds\n```\n"
    assert layout_paths(sample) == {
        "briefing/",
        "briefing/store/",
        "briefing/store/a.py",
        "briefing/store/b.py",
        "briefing/c.py",
    }


def test_every_module_the_architecture_names_exists() -> None:
    missing = sorted(p for p in layout_paths(ARCHITECTURE) if not (ROOT / p).exists())
    assert missing == []


def test_every_package_and_module_is_named_in_the_architecture() -> None:
    named = layout_paths(ARCHITECTURE)
    code = ROOT / "briefing"
    packages = {p.parent.relative_to(ROOT).as_posix() + "/" for p in code.rglob("__init__.py")}
    modules = {
        p.relative_to(ROOT).as_posix()
        for p in code.rglob("*.py")
        if p.name != "__init__.py" and "migrations" not in p.parts
    }
    unnamed = sorted(p for p in packages | modules if p not in named and "migrations" not in p)
    assert unnamed == []


# --------------------------------------------------------------------------- docs/systemd, deployment


SYSTEMD = ROOT / "docs" / "systemd"
DEPLOYMENT = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("unit", sorted(p.name for p in SYSTEMD.glob("*.service")))
def test_each_systemd_unit_starts_a_command_that_exists(unit: str) -> None:
    text = (SYSTEMD / unit).read_text(encoding="utf-8")
    starts = re.findall(r"^ExecStart=\S*/briefing ([\w -]+)$", text, flags=re.MULTILINE)
    assert len(starts) == 1, f"{unit}: one ExecStart running briefing"
    assert tuple(starts[0].split()) in COMMANDS, f"{unit} runs `briefing {starts[0]}`, which is no command"
    assert "KillSignal=SIGTERM" in text and "RestartPreventExitStatus=73" in text
    assert unit in DEPLOYMENT, f"docs/deployment.md never names {unit}"


def test_the_worker_template_unit_is_there() -> None:
    assert (SYSTEMD / "briefing-worker@.service").is_file()
    assert ("worker",) in COMMANDS


def test_the_readme_scheduler_unit_is_the_shipped_one() -> None:
    shipped = (SYSTEMD / "briefing-schedule.service").read_text(encoding="utf-8")
    body = shipped.split("[Unit]", 1)[1]
    assert "[Unit]" + body.rstrip() in README, "README's briefing-schedule.service differs from docs/systemd"


def test_every_setting_the_deployment_guide_names_exists() -> None:
    known = {f"BRIEFING_{name.upper()}" for name in Settings.model_fields}
    assert set(re.findall(r"BRIEFING_[A-Z0-9_]+[A-Z0-9]", DEPLOYMENT)) - known == set()
