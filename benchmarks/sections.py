"""What optional sections cost the send: one render per distinct set of left-out sections.

100,000 seeded random readers over a newsletter with six sections; each reader leaves out each
section with probability p (0.15, with rows for 0.05 and 0.3). For each p: how many distinct sets
they make, the cost of rendering each set once with the real Renderer (Jinja -> MJML -> inlining,
on the 15-story edition benchmarks/render.py builds, re-filed under six sections) and building its
MIME skeleton, the per-reader cost (finding the reader's copy, then the MIME fill the send does
today), and the send-side total per 100k readers. The baseline, measured in the same run: one render
and one skeleton of the full edition plus the same per-reader fill, i.e. a send without sections.
Medians of interleaved rounds. Prints one JSON line.

    .venv/bin/python benchmarks/sections.py [--readers 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from render import EDITION, NOW, TEMPLATES, edition_inputs, median_us_batched

from briefing.domain import Briefing, Recipient, RenderedEdition
from briefing.edition.compose import compose_briefing
from briefing.edition.render import Renderer, _parse_markdown
from briefing.edition.sections import FULL_EDITION, VariantRenders, variant_key
from briefing.mail.message import MessageTemplate
from briefing.reader_copy import personalise

SECTIONS = ("Politics", "Economy", "Climate", "World", "Culture", "Sport")
PROBABILITIES = (0.05, 0.15, 0.3)
MAIN_P = 0.15
SEED = 20261130
WHEN = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def six_section_briefing() -> Briefing:
    stories, articles, options = edition_inputs()
    stories = [replace(s, section=SECTIONS[s.id % len(SECTIONS)]) for s in stories]
    options = replace(options, section_order=SECTIONS)
    return compose_briefing(stories, articles, EDITION, NOW, options)


def reader_keys(readers: int, p: float) -> list[str]:
    """Each reader's variant key, as the subscription stores it."""
    rng = random.Random(f"{SEED}-{p}")
    return [variant_key([s for s in SECTIONS if rng.random() < p]) for _ in range(readers)]


def skeleton(copy: RenderedEdition) -> MessageTemplate:
    """The per-copy MIME skeleton, as service.setup builds it for the edition."""
    return MessageTemplate(
        from_name="The Morning Briefing",
        from_address="briefing@news.example.com",
        subject=copy.subject,
        html=copy.html,
        text=copy.text,
        list_id="morning.news.example.com",
        unsubscribe_mailto="unsubscribe@news.example.com",
        message_id_domain="news.example.com",
        edition_key=copy.edition_date.isoformat(),
    )


def full_edition_ms(renderer: Renderer, briefing: Briefing) -> tuple[float, float]:
    """The baseline: one cold render of the full edition, then its skeleton (ms, ms)."""
    _parse_markdown.cache_clear()  # a real morning starts cold
    start = time.perf_counter()
    copy = renderer.render_edition(briefing)
    rendered = time.perf_counter()
    skeleton(copy)
    return (rendered - start) * 1e3, (time.perf_counter() - rendered) * 1e3


def every_set_ms(renderer: Renderer, briefing: Briefing, keys: list[str]) -> tuple[float, float, int]:
    """Render each distinct set once (full edition first, as the send does) and build its skeleton."""
    _parse_markdown.cache_clear()
    variants = VariantRenders(renderer, briefing)
    render_s = skeleton_s = 0.0
    for key in sorted(set(keys), key=lambda k: (k != FULL_EDITION, k)):
        start = time.perf_counter()
        copy = variants.get(key)
        rendered = time.perf_counter()
        skeleton(copy)
        render_s += rendered - start
        skeleton_s += time.perf_counter() - rendered
    return render_s * 1e3, skeleton_s * 1e3, variants.renders


def lookup_us(variants: VariantRenders, keys: list[str]) -> float:
    """Per reader: find the reader's copy among the variants (all already rendered)."""
    start = time.perf_counter()
    for key in keys:
        variants.get(key)
    return (time.perf_counter() - start) / len(keys) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()

    renderer = Renderer(TEMPLATES)
    briefing = six_section_briefing()
    full = renderer.render_edition(briefing)
    keys = {p: reader_keys(args.readers, p) for p in PROBABILITIES}

    baseline_render: list[float] = []
    baseline_skeleton: list[float] = []
    sets: dict[float, dict[str, list[float]]] = {p: {"render": [], "skeleton": []} for p in PROBABILITIES}
    renders: dict[float, int] = {}
    for _ in range(args.rounds):  # interleaved, so drift hits baseline and variants alike
        render_ms, skeleton_ms = full_edition_ms(renderer, briefing)
        baseline_render.append(render_ms)
        baseline_skeleton.append(skeleton_ms)
        for p in PROBABILITIES:
            render_ms, skeleton_ms, renders[p] = every_set_ms(renderer, briefing, keys[p])
            sets[p]["render"].append(render_ms)
            sets[p]["skeleton"].append(skeleton_ms)

    # Per reader, as today: the MIME fill from the edition's skeleton (what the send does), and
    # personalise() (what preview and the archive do), both on the full edition.
    template = skeleton(full)
    people = [
        Recipient(i, f"r{i}@example.com", f"Reader {i}", f"https://www.example.com/u/{i}x{'s' * 80}", "")
        for i in range(1, 501)
    ]
    turn = iter(range(10**9))
    fill_us = median_us_batched(lambda: template.render(people[next(turn) % 500], date=WHEN), 5_000)
    personalise_us = median_us_batched(lambda: personalise(full, people[next(turn) % 500]), 20_000)

    base_render = statistics.median(baseline_render)
    base_skeleton = statistics.median(baseline_skeleton)
    per_100k = 100_000 / 1e3  # µs per reader -> ms per 100k readers
    baseline_total = base_render + base_skeleton + fill_us * per_100k
    rows = []
    for p in PROBABILITIES:
        variants = VariantRenders(renderer, briefing)
        for key in set(keys[p]):
            variants.get(key)
        find_us = statistics.median(lookup_us(variants, keys[p]) for _ in range(args.rounds))
        render_ms = statistics.median(sets[p]["render"])
        skeleton_ms = statistics.median(sets[p]["skeleton"])
        total = render_ms + skeleton_ms + (find_us + fill_us) * per_100k
        counts = Counter(keys[p])
        rows.append(
            {
                "p": p,
                "distinct_sets": len(counts),
                "renders": renders[p],
                "readers_with_full_edition": counts[FULL_EDITION],
                "largest_set_readers": counts.most_common(1)[0][1],
                "render_all_sets_ms": round(render_ms, 1),
                "skeletons_all_sets_ms": round(skeleton_ms, 1),
                "render_per_set_ms": round(render_ms / len(counts), 2),
                "lookup_us_per_reader": round(find_us, 3),
                "send_side_ms_per_100k": round(total, 1),
                "vs_baseline": round(total / baseline_total, 3),
                "extra_ms_per_100k": round(total - baseline_total, 1),
            }
        )

    result = {
        "benchmark": "sections",
        "readers": args.readers,
        "sections": len(SECTIONS),
        "seed": SEED,
        "stories": len(briefing.stories),
        "html_bytes": len(full.html.encode()),
        "main": next(row for row in rows if row["p"] == MAIN_P),
        "rows": rows,
        "baseline": {
            "what": "one render + one MIME skeleton of the full edition, same per-reader fill",
            "full_render_ms": round(base_render, 2),
            "full_skeleton_ms": round(base_skeleton, 2),
            "send_side_ms_per_100k": round(baseline_total, 1),
        },
        "per_reader_today": {
            "mime_fill_us": round(fill_us, 2),
            "personalise_us": round(personalise_us, 2),
        },
        "render_per_reader_s_per_100k": round(base_render * 100_000 / 1e3, 1),
        "rounds": args.rounds,
        "wall_s": round(time.perf_counter() - started, 1),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
