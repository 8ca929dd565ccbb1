"""Typer's help renderer, loaded without the two rich modules this command line never uses.

`typer.rich_utils` draws every `--help` page and usage error. At its top it imports `rich.markdown`
(markdown-it, for help written in Markdown) and `rich.traceback` (pygments and attrs, for pretty
tracebacks): half of what printing the help costs, and neither is used here (the app's help is
rich markup, and pretty tracebacks are off). `install` adds an import hook for that one module:
while it runs, those two modules are stand-ins whose one class imports the real module on first
use, so a typer that does use them still works; then the stand-ins are gone, and the real modules
import as usual. A typer that asks them for more than that class gets the ordinary import.
"""

from __future__ import annotations

import importlib
import sys
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType
from typing import Any

RENDERER = "typer.rich_utils"
# module -> the one name typer.rich_utils takes from it
UNUSED = {"rich.markdown": "Markdown", "rich.traceback": "Traceback"}


class _OnFirstUse(type):
    """A class standing for one in a module not loaded yet; calling or reading it loads that module."""

    _module: str
    _name: str

    def _real(cls) -> Any:
        return getattr(importlib.import_module(cls._module), cls._name)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._real()(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        return getattr(cls._real(), name)

    def __instancecheck__(cls, instance: Any) -> bool:
        real = sys.modules.get(cls._module)
        return real is not None and isinstance(instance, getattr(real, cls._name))


def _place_stand_ins() -> dict[str, ModuleType]:
    placed: dict[str, ModuleType] = {}
    for module, name in UNUSED.items():
        if module in sys.modules:
            continue
        stand_in = ModuleType(module)
        setattr(stand_in, name, _OnFirstUse(name, (), {"_module": module, "_name": name}))
        placed[module] = stand_in
    sys.modules.update(placed)
    return placed


def _remove(placed: dict[str, ModuleType]) -> None:
    for module, stand_in in placed.items():
        if sys.modules.get(module) is stand_in:
            del sys.modules[module]


class _WithStandIns:
    """The renderer's own loader, run with the stand-ins in place."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        created: ModuleType | None = self._loader.create_module(spec)
        return created

    def exec_module(self, module: ModuleType) -> None:
        placed = _place_stand_ins()
        try:
            self._loader.exec_module(module)
        except ImportError:
            _remove(placed)
            placed = {}
            self._loader.exec_module(module)  # it wanted more from them: the ordinary import
        finally:
            _remove(placed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)  # get_source and the like, for tracebacks


class _Finder:
    """Finds typer.rich_utils where Python would, and hands it the loader above; nothing else."""

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != RENDERER:
            return None
        spec = PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _WithStandIns(spec.loader)  # type: ignore[assignment]
        return spec


def install() -> None:
    """Load typer's renderer without rich.markdown and rich.traceback when it is first imported."""
    if RENDERER in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())
