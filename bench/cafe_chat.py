"""The café scenario: ten customer questions about cafe_faq.md, in one chat and in fresh chats.

    python -m bench.cafe_chat [--json]

Prints each answer with its evidence and whether it is right, then the two counts. The same
questions (tests/bot/cafe_questions.py) are asked through the bot in CI.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bot import app
from bot.config import Settings
from bot.core.answer import Answerer
from bot.state import StateStore
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore
from tests.bot.cafe_questions import CAFE_FAQ, CAFE_QUESTIONS, is_right


def main() -> None:
    """Ask the ten café questions in one chat, then each in a fresh chat; print the counts."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    settings = Settings(_env_file=None)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        embedder = app.build_embedder(settings)
        store = KnowledgeStore.open(folder / "kb.db")
        Ingestor(store, embedder).add_paths([CAFE_FAQ])
        state = StateStore.open(folder / "state.db")
        worker = app.build_worker(settings, app.build_engine(settings))
        try:
            answerer = Answerer(
                worker,
                app.build_searcher(settings, store, embedder),
                state=state,
                settings=app.answer_settings(settings),
                reader=app.build_reader(settings),
            )
            counts = {}
            for scenario in ("one chat", "fresh chats"):
                right = 0
                for number, (question, check) in enumerate(CAFE_QUESTIONS):
                    chat = "bench:one" if scenario == "one chat" else f"bench:fresh-{number}"
                    answer = answerer.ask(question, chat_key=chat)
                    ok = is_right(answer.text, check)
                    right += ok
                    evidence = " / ".join(answer.evidence)
                    print(f"[{scenario}] {'RIGHT' if ok else 'WRONG'} {question} -> "
                          f"{answer.text!r}  evidence: {evidence!r}")  # fmt: skip
                counts[scenario] = right
                print(f"{scenario}: {right}/{len(CAFE_QUESTIONS)} right")
        finally:
            worker.close()
            state.close()
            store.close()
    if args.json:
        print(json.dumps({"one_chat": counts["one chat"], "fresh_chats": counts["fresh chats"],
                          "questions": len(CAFE_QUESTIONS)}))  # fmt: skip


if __name__ == "__main__":
    main()
