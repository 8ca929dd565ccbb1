"""`make demo`: the main job end to end on embedded defaults, in a throwaway folder `demo/`.

It builds a fresh demo database from the sample data shipped with the package, through the same
service functions the CLI uses, and shows the queue for the next edition.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from briefing import service
from briefing.cli.common import console
from briefing.cli.stories import print_queue
from briefing.db import make_engine, session_scope, upgrade
from briefing.store import stories as story_store

SAMPLE_DIR = Path(__file__).parent / "sample_data"
ROOT = Path.cwd()


def main(folder: Path = ROOT / "demo") -> int:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    db_path = folder / "briefing.db"
    engine = make_engine(f"sqlite:///{db_path}")
    upgrade(engine)

    articles = service.import_articles(engine, SAMPLE_DIR / "articles.jsonl")
    console.print(f"Loaded {articles.added} sample articles.")

    with session_scope(engine) as session:
        for raw in json.loads((SAMPLE_DIR / "stories.json").read_text(encoding="utf-8")):
            service.add_story(session, service.StoryRequest(**raw))
    subscribers = service.import_subscribers(engine, ROOT / "subscribers" / "example.csv")
    console.print(f"Loaded {subscribers.counts.added} sample subscribers from subscribers/example.csv.")

    with session_scope(engine) as session:
        queue = story_store.list_stories(session)
    print_queue(queue, None)
    console.print(f"\nDemo database: {db_path}")
    console.print(f"Try: BRIEFING_DATABASE_URL=sqlite:///{db_path} .venv/bin/briefing stories list")
    return 0


if __name__ == "__main__":
    sys.exit(main())
