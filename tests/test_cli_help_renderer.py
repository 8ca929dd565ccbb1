"""`briefing --help` draws with typer's renderer, loaded without rich's Markdown and traceback modules.

The stand-ins must change nothing a person sees (every page and usage error the same as with the
ordinary import) and must not linger: after the renderer loaded, the real modules import as usual.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# argv[1] "ordinary": typer's renderer is imported before the command line, so the hook stands aside.
PAGES = """
import contextlib, io, json, sys
if sys.argv[1] == "ordinary":
    import typer.rich_utils
from briefing.cli import app

pages = {}
for args in (["--help"], ["stories", "--help"], ["stories", "add", "--help"], ["status", "--help"],
             ["no-such-command"], ["stories", "add", "--no-such-option"], []):
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), contextlib.redirect_stderr(shown):
        try:
            app(args, prog_name="briefing")
        except SystemExit as exc:
            print("exit", exc.code)
    pages[" ".join(args)] = shown.getvalue()
loaded = {"markdown": "markdown_it" in sys.modules, "pygments": "pygments" in sys.modules}
print(json.dumps({"pages": pages, **loaded}))
"""

AFTERWARDS = """
import json, sys
import briefing.cli
import typer.rich_utils as renderer
light = "rich.markdown" not in sys.modules and "rich.traceback" not in sys.modules
made = renderer.Markdown("**bold**")  # the stand-in builds the real thing on first use
import rich.markdown, rich.traceback
print(json.dumps({
    "light": light,
    "real_class": type(made) is rich.markdown.Markdown,
    "isinstance": isinstance(made, renderer.Markdown),
    "traceback_is_real": rich.traceback.Traceback.__module__ == "rich.traceback",
    "from_exception": renderer.Traceback.from_exception == rich.traceback.Traceback.from_exception,
}))
"""


def _python(code: str, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "100", "TERMINAL_WIDTH": "100"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_help_pages_and_usage_errors_are_the_same_as_with_the_ordinary_renderer() -> None:
    light = _python(PAGES, "light")
    ordinary = _python(PAGES, "ordinary")
    assert (light["markdown"], light["pygments"]) == (False, False)
    assert ordinary["markdown"] is True  # the ordinary import does load them: the comparison means something
    pages = light["pages"]
    assert isinstance(pages, dict)
    assert "Usage: briefing stories add" in pages["stories add --help"]
    assert "No such option: --no-such-option" in pages["stories add --no-such-option"]
    assert pages == ordinary["pages"]


def test_after_the_renderer_loads_the_real_modules_import_as_usual() -> None:
    assert _python(AFTERWARDS) == {
        "light": True,
        "real_class": True,
        "isinstance": True,
        "traceback_is_real": True,
        "from_exception": True,
    }
