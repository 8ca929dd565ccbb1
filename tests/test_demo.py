"""`make demo` end to end: the sample newsroom is built, previewed and sent over real SMTP."""

from __future__ import annotations

import mailbox
from email.utils import parseaddr
from pathlib import Path

import pytest

from briefing import demo

pytestmark = pytest.mark.slow


def to(message: mailbox.MaildirMessage) -> str:
    return parseaddr(str(message["To"]))[1]


def test_the_demo_sends_two_newsletters_and_a_special_each_to_its_readers_and_prints_no_markup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "demo"

    assert demo.main(folder) == 0

    out = capsys.readouterr().out
    copies = list(mailbox.Maildir(str(folder / "maildir"), create=False))
    special = [m for m in copies if ".special-1." in str(m["Message-ID"])]
    morning = [m for m in copies if "<briefing." in str(m["List-Id"]) and m not in special]
    americas = [m for m in copies if "<americas." in str(m["List-Id"])]
    assert len(copies) == len(morning) + len(americas) + len(special) == 12
    # Each newsletter's readers once: the reader who chose only the Americas edition gets no
    # morning copy, and the reader who said no to specials gets no special.
    readers = {to(m) for m in copies}
    assert sorted(to(m) for m in morning) == sorted(readers - {demo.AMERICAS_ONLY})
    assert sorted(to(m) for m in americas) == sorted(demo.AMERICAS_READERS)
    assert sorted(to(m) for m in special) == sorted({to(m) for m in morning} - {demo.NO_SPECIALS})
    assert "is sent: 5 delivered" in out and "is sent: 3 delivered" in out
    assert "(special-1) is sent: 4 delivered" in out
    assert f"{demo.LEAVES_OUT_ECONOMY} left out Economy: their copy has none of its stories" in out
    assert "Edition of " in out
    for tag in ("[bold]", "[/bold]", "[green]", "[yellow]", "[/]"):
        assert tag not in out, tag
