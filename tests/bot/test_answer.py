"""The answering core around the model: sources, budget, refusal, citations, memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.answer import Answerer, AnswerSettings, Mode, cited_sources
from bot.core.answer_eval import contains_answer, exact_match, normalize_answer, token_f1
from bot.core.prompts import NOT_COVERED, RAG_SYSTEM
from bot.llm.engine import GenerationLimits, Message
from bot.llm.worker import ModelWorker
from bot.state import StateStore
from knowledge.ingest import Ingestor
from knowledge.search import HybridSearcher
from knowledge.store import KnowledgeStore
from tests.helpers import HashEmbedder, ScriptedEngine

FACTS = {
    "estonia.txt": "The capital of Estonia is Tallinn. Tallinn has a medieval old town.",
    "latvia.txt": "The capital of Latvia is Riga. Riga lies on the Gulf of Riga.",
    "pumps.txt": "The coolant pump must be restarted after error XK-4471.",
}


@pytest.fixture
def searcher(tmp_path: Path, store: KnowledgeStore) -> HybridSearcher:
    embedder = HashEmbedder()
    for name, text in FACTS.items():
        (tmp_path / name).write_text(text)
    Ingestor(store, embedder).add_paths([tmp_path / n for n in FACTS])
    return HybridSearcher(store, embedder)


# The hash embedder's similarities are low; thresholds get a test of their own.
ANY_SIMILARITY = AnswerSettings(min_similarity=-1.0)


def make(engine: ScriptedEngine, searcher: HybridSearcher | None, **kw: object) -> Answerer:
    settings = AnswerSettings(**{"min_similarity": -1.0, **kw})  # type: ignore[arg-type]
    return Answerer(ModelWorker(engine), searcher, settings=settings)


def test_rag_numbers_sources_and_keeps_the_cited_ones(searcher: HybridSearcher) -> None:
    engine = ScriptedEngine(["Tallinn [1]"])
    answer = make(engine, searcher).ask("What is the capital of Estonia?")
    assert answer.text == "Tallinn [1]"
    assert [s.number for s in answer.cited] == [1]
    assert answer.cited[0].hit.chunk.title == "estonia"
    system, user = engine.history[0]
    assert system["content"] == RAG_SYSTEM
    assert user["content"].startswith('Sources:\n[1] estonia: "The capital of Estonia is Tallinn.')
    assert user["content"].endswith("Question: What is the capital of Estonia?")


def test_sources_are_packed_within_the_token_budget(searcher: HybridSearcher) -> None:
    engine = ScriptedEngine(["Riga [1]"])
    answerer = make(engine, searcher, search_k=3, context_tokens=15)
    prepared = answerer.prepare("capital of Latvia")
    assert len(prepared.sources) == 1  # the best source always fits; the next would not
    wide = make(ScriptedEngine(), searcher, search_k=3, context_tokens=500)
    assert len(wide.prepare("capital of Latvia").sources) == 3


def test_below_the_similarity_threshold_the_model_is_not_asked(searcher: HybridSearcher) -> None:
    engine = ScriptedEngine(["should not be said"])
    answer = make(engine, searcher, min_similarity=0.99).ask("What is the capital of Estonia?")
    assert answer.text == NOT_COVERED and answer.completion is None
    assert engine.history == []


def test_base_mode_sends_only_the_question() -> None:
    engine = ScriptedEngine(["Paris"])
    answer = make(engine, None).ask("What is the capital of France?", mode=Mode.BASE)
    assert answer.text == "Paris" and answer.sources == []
    assert [m["role"] for m in engine.history[0]] == ["system", "user"]


def test_memory_survives_restarts_feeds_follow_ups_and_resets(
    tmp_path: Path, searcher: HybridSearcher
) -> None:
    path = tmp_path / "state.db"
    engine = ScriptedEngine(["Tallinn [1]", "It has a medieval old town [1]"])
    first = Answerer(
        ModelWorker(engine), searcher, state=StateStore.open(path), settings=ANY_SIMILARITY
    )
    first.ask("What is the capital of Estonia?", chat_key="chat-1")
    again = Answerer(  # a restart: a new answerer on the same state file
        ModelWorker(engine), searcher, state=StateStore.open(path), settings=ANY_SIMILARITY
    )
    prepared = again.prepare("What is special about it?", chat_key="chat-1")
    # The earlier question is remembered and given beside the sources; the earlier answer not.
    assert [m["role"] for m in prepared.messages] == ["system", "user"]
    assert "Earlier question: What is the capital of Estonia?" in prepared.messages[-1]["content"]
    assert "Tallinn [1]" not in prepared.messages[-1]["content"]
    assert prepared.sources[0].hit.chunk.title == "estonia"  # the follow-up found the topic
    earlier: list[Message] = [
        {"role": "user", "content": "What is the capital of Estonia?"},
        {"role": "assistant", "content": "Tallinn [1]"},
    ]
    for own_question in ("Is there parking?", "Opening hours?", "Can I pay with cash?"):
        assert again.search_query(own_question, earlier) == own_question
        assert (
            "Earlier question"
            not in again.prepare(own_question, chat_key="chat-1").messages[-1]["content"]
        )
    assert again.search_query("And on Sundays?", earlier).startswith(
        "What is the capital of Estonia?"
    )
    assert again.search_query("What is special about it?", earlier).startswith(
        "What is the capital of Estonia?"
    )
    assert again.state is not None and again.state.reset("chat-1") == 2
    assert again.prepare("Hello there", chat_key="chat-1").messages[1]["role"] == "user"


def test_citations_parse_only_given_numbers(searcher: HybridSearcher) -> None:
    prepared = make(ScriptedEngine(), searcher, search_k=2, context_tokens=500).prepare(
        "capital of Latvia"
    )
    assert [s.number for s in cited_sources("Riga [2] and [7]", prepared.sources)] == [2]


@pytest.mark.parametrize(
    ("prediction", "gold", "em", "f1", "contains"),
    [
        ("The Tallinn.", ["Tallinn"], 1.0, 1.0, 1.0),
        ("It is Tallinn, of course", ["Tallinn"], 0.0, 2 * (1 / 5) / (1 / 5 + 1), 1.0),
        ("Riga", ["Tallinn", "riga"], 1.0, 1.0, 1.0),
        ("", ["Tallinn"], 0.0, 0.0, 0.0),
        ("I don't know", ["Tallinn"], 0.0, 0.0, 0.0),
    ],
)
def test_squad_scoring(
    prediction: str, gold: list[str], em: float, f1: float, contains: float
) -> None:
    assert exact_match(prediction, gold) == em
    assert token_f1(prediction, gold) == pytest.approx(f1)
    assert contains_answer(prediction, gold) == contains


def test_normalisation_follows_squad() -> None:
    assert normalize_answer("  The  Eiffel-Tower, a landmark!") == "eiffeltower landmark"


@pytest.mark.parametrize(
    "question",
    [
        "Why does this log fail? " + " ".join(f"{i * 7919:08x}" for i in range(445)),
        "What is the capital of Estonia? " + "🏰🇪🇪" * 1_980,
    ],
    ids=["a pasted log", "emoji"],
)
def test_a_question_too_long_for_the_real_models_context_is_refused_in_one_sentence(
    searcher: HybridSearcher, question: str
) -> None:
    from bot.app import build_engine
    from bot.config import Settings

    engine = build_engine(Settings(_env_file=None))  # the packaged model, 2,048 tokens
    worker = ModelWorker(engine)
    try:
        # A few answer tokens are enough to show it is answered (a long one adds minutes).
        short = AnswerSettings(min_similarity=-1.0, limits=GenerationLimits(max_tokens=4))
        answerer = Answerer(worker, searcher, settings=short)
        assert len(question) >= 4_000 and engine.count_tokens(question) > 1_500
        answer = answerer.ask(question)
        assert answer.completion is None  # refused before the model (and before any search)
        assert answer.text.startswith("Your question is too long for me (")
        assert answer.text.count(".") == 1
        allowed = int(answer.text.rsplit("about ", 1)[1].split(" ")[0].replace(",", ""))
        shorter = question[:allowed]  # what the sentence allows is answered
        fits = answerer.ask(shorter)
        assert fits.completion is not None and fits.completion.tokens > 0
    finally:
        worker.close()


def test_settings_that_leave_no_room_for_a_question_are_refused_at_start() -> None:
    from bot.llm.engine import ModelError

    worker = ModelWorker(ScriptedEngine())  # a 2,048-token window
    try:
        with pytest.raises(ModelError, match="leave no room for a question"):
            Answerer(worker, None, settings=AnswerSettings(context_tokens=1900))
    finally:
        worker.close()
