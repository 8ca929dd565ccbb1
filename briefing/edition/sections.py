"""Section variants: the edition without the sections a reader opted out of, rendered once per set.

Readers of a newsletter with optional sections may leave some out. Rendering per reader would cost
milliseconds each; instead the send groups readers by the set they left out (the variant key stored
on their subscription and copied to their delivery), renders each distinct set once, and fills in
each reader's values as for the full edition. With six sections there are at most 64 sets however
many readers there are.

Section names are compared the way compose groups stories (whitespace collapsed, case folded), so
" sport" and "Sport" are one section and one key. The key is JSON of the sorted, folded names,
ASCII only (json escapes everything else), so any name, a lone surrogate or a NUL included, gives a
key that every database stores and that parses back to the same set.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Protocol

from briefing.domain import Briefing, ComposeOptions, RenderedEdition
from briefing.errors import InvalidInput

__all__ = [
    "FULL_EDITION",
    "EditionRenderer",
    "VariantRenders",
    "parse_variant",
    "section_key",
    "variant_key",
    "without_sections",
]

FULL_EDITION = ""  # the key of a reader who left nothing out
_DEFAULT_SECTION = ComposeOptions().default_section


class EditionRenderer(Protocol):
    """What VariantRenders needs of briefing.edition.render.Renderer."""

    def render_edition(self, briefing: Briefing) -> RenderedEdition: ...


def section_key(name: str) -> str:
    """A section name as compose groups it: whitespace collapsed, case folded."""
    return " ".join(name.split()).casefold()


def _folded(names: Iterable[str]) -> frozenset[str]:
    if isinstance(names, str):  # iterating it would leave out sections named by its letters
        raise InvalidInput("must be a list of section names, not one string", field="excluded_sections")
    return frozenset(key for key in map(section_key, names) if key)


def variant_key(excluded: Iterable[str]) -> str:
    """The one text that stands for a set of left-out sections; "" for none.

    Order, repeats, case and surrounding whitespace do not change it, so readers who left out the
    same sections share one key and one render. Blank names leave nothing out and are dropped.
    """
    names = _folded(excluded)
    if not names:
        return FULL_EDITION
    return json.dumps(sorted(names), ensure_ascii=True, separators=(",", ":"))


def parse_variant(key: str) -> frozenset[str]:
    """The set a variant key stands for (folded names); a damaged key is refused, not guessed at."""
    if not key.strip():
        return frozenset()
    try:
        value = json.loads(key)
    except ValueError as exc:
        raise InvalidInput(f"not a variant key: {exc}", field="variant") from exc
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise InvalidInput("a variant key is a JSON list of section names", field="variant")
    return _folded(value)


def without_sections(
    briefing: Briefing, excluded: Iterable[str], *, default_section: str = _DEFAULT_SECTION
) -> Briefing:
    """The same edition without the stories of the `excluded` sections.

    Only stories go: the subject and preheader are the edition's (the variant is the same edition,
    and its Message-ID and archive copy are too), "More from" and the standing blocks stay. When the
    lead's section is left out the edition has no lead: promoting another story would put a
    different top story in front of these readers than the newsroom chose for everyone.
    `default_section` names where compose put stories without a section (ComposeOptions'), so a
    sectionless lead is judged by the section its readers see it under.
    """
    folded = _folded(excluded)
    if not folded:
        return briefing
    lead = briefing.lead
    if lead is not None and section_key(lead.section or default_section) in folded:
        lead = None
    sections = tuple(s for s in briefing.sections if section_key(s.name) not in folded)
    # Preflight warns about configured sections that have no story; these readers asked for none.
    configured = tuple(n for n in briefing.configured_sections if section_key(n) not in folded)
    return replace(briefing, lead=lead, sections=sections, configured_sections=configured)


class VariantRenders:
    """Each variant of one edition, rendered the first time a reader needs it and kept by key.

    `render` is the function the send renders with (the Renderer's `render_edition` unless told
    otherwise), so a caller can check or store each copy as it is made. `known` holds copies already
    rendered, the full edition or variants frozen before a restart: those are returned as they are,
    never rendered again. Keys are made canonical first, so two spellings of one set share a copy.
    Safe to share between the threads of one sending process.
    """

    def __init__(
        self,
        renderer: EditionRenderer,
        briefing: Briefing,
        *,
        render: Callable[[Briefing], RenderedEdition] | None = None,
        known: Mapping[str, RenderedEdition] | None = None,
        default_section: str = _DEFAULT_SECTION,
    ) -> None:
        self._briefing = briefing
        self._render = render if render is not None else renderer.render_edition
        self._default_section = default_section
        self._copies: dict[str, RenderedEdition] = {}
        # Each key as readers' rows spell it -> its canonical form: parsing once per spelling keeps
        # the per-reader cost at a dictionary lookup.
        self._canonical: dict[str, str] = {}
        for key, copy in (known or {}).items():
            self._copies[self._canonical_key(key)] = copy
        self._lock = threading.Lock()
        self.renders = 0  # how many times `render` ran

    def _canonical_key(self, key: str) -> str:
        canonical = self._canonical.get(key)
        if canonical is None:
            canonical = self._canonical[key] = variant_key(parse_variant(key))
        return canonical

    def get(self, key: str) -> RenderedEdition:
        """The copy for readers with this variant key, rendered on first use."""
        canonical = self._canonical_key(key)
        copy = self._copies.get(canonical)
        if copy is not None:
            return copy
        with self._lock:
            copy = self._copies.get(canonical)
            if copy is None:
                variant = without_sections(
                    self._briefing, parse_variant(canonical), default_section=self._default_section
                )
                copy = self._render(variant)
                self.renders += 1
                self._copies[canonical] = copy
        return copy

    def copies(self) -> dict[str, RenderedEdition]:
        """Every copy made or given so far, by key: what the send freezes as its edition variants."""
        with self._lock:
            return dict(self._copies)

    def __len__(self) -> int:
        return len(self._copies)
