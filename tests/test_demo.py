"""`make demo` end to end: the sample newsroom is built, previewed and sent over real SMTP."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest

from briefing import demo

pytestmark = pytest.mark.slow


def test_the_demo_sends_every_sample_reader_one_copy_and_prints_no_markup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "demo"

    assert demo.main(folder) == 0

    out = capsys.readouterr().out
    copies = mailbox.Maildir(str(folder / "maildir"), create=False)
    assert len(copies) == 6
    assert len({str(m["To"]) for m in copies}) == 6  # six different readers, one copy each
    assert "is sent: 6 delivered" in out
    assert "Edition of " in out
    for tag in ("[bold]", "[/bold]", "[green]", "[yellow]", "[/]"):
        assert tag not in out, tag
