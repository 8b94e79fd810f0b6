"""Questions a user asks about one document, in one chat and in fresh chats, as the bot answers.

    python -m bench.document_questions [--set cafe|ollama] [--json]

`cafe`: the café test's ten questions in new wording over knowledge/examples/cafe_faq.md;
`ollama`: ten questions about Ollama's FAQ (tests/documents, MIT), a document nobody here wrote.
Both question lists were written before the reader of issue 37 was built. Prints each reply and
whether the model's own words and what is shown are right, then the counts.
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
from tests.bot.cafe_questions import CAFE_FAQ, REWORDED_CAFE_QUESTIONS, Check, is_right
from tests.bot.third_party_questions import OLLAMA_FAQ, OLLAMA_QUESTIONS

SETS: dict[str, tuple[Path, list[tuple[str, Check]]]] = {
    "cafe": (CAFE_FAQ, REWORDED_CAFE_QUESTIONS),
    "ollama": (OLLAMA_FAQ, OLLAMA_QUESTIONS),
}


def main() -> None:
    """Ask one set's questions in one chat, then each in a fresh chat; print the counts."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", choices=sorted(SETS), default="cafe")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    document, questions = SETS[args.set]
    settings = Settings(_env_file=None)
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        embedder = app.build_embedder(settings)
        store = KnowledgeStore.open(folder / "kb.db")
        Ingestor(store, embedder).add_paths([document])
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
            for scenario in ("one chat", "fresh chats"):
                words = shown = 0
                for number, (question, check) in enumerate(questions):
                    chat = "bench:one" if scenario == "one chat" else f"bench:fresh-{number}"
                    answer = answerer.ask(question, chat_key=chat)
                    own = is_right(answer.model_text or answer.text, check)
                    seen = is_right(answer.text, check)
                    words += own
                    shown += seen
                    print(f"[{scenario}] words {'RIGHT' if own else 'WRONG'} / shown "
                          f"{'RIGHT' if seen else 'WRONG'} {question} -> {answer.text!r} "
                          f"(model: {answer.model_text!r}) evidence: "
                          f"{' / '.join(answer.evidence)!r}")  # fmt: skip
                key = scenario.replace(" ", "_")
                counts[f"{key}_words"], counts[f"{key}_shown"] = words, shown
                print(f"{scenario}: model's words right {words}/{len(questions)}, "
                      f"shown right {shown}/{len(questions)}")  # fmt: skip
        finally:
            worker.close()
            state.close()
            store.close()
    if args.json:
        print(json.dumps({"set": args.set, "questions": len(questions), **counts}))


if __name__ == "__main__":
    main()
