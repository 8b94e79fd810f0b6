"""Span-first answering around the reader: when its span is the answer, what is shown, and when
the chat model answers instead. The reader here is a small real implementation of the Reader
interface that finds a scripted phrase; the trained reader has tests of its own."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.core.answer import Answerer, AnswerSettings
from bot.core.answer_eval import held_out
from bot.core.prompts import NOT_COVERED
from bot.core.reading import (
    holding_sentence,
    is_yes_no,
    ranked_span,
    reader_can_read,
    span_reply,
)
from bot.llm.span_reader import Span
from bot.llm.worker import ModelWorker
from knowledge.evaluation import EvalQuestion
from knowledge.ingest import Ingestor
from knowledge.search import HybridSearcher, SearchHit
from knowledge.store import KnowledgeStore
from tests.helpers import HashEmbedder, ScriptedEngine

CAFE = (
    "The café is open from 8 am to 6 pm on weekdays. It is closed on Sundays. "
    "The café takes cards and phone payments. It does not accept cash."
)


class PhraseReader:
    """Finds in each passage the first of its phrases that it holds, with a set confidence."""

    def __init__(
        self,
        phrases: Sequence[str],
        confidence: float = 5.0,
        confidences: dict[str, float] | None = None,
    ) -> None:
        self.phrases = phrases
        self.confidence = confidence
        self.confidences = confidences or {}
        """Confidence of particular phrases (others get `confidence`)."""
        self.read_passages: list[list[str]] = []

    @property
    def trained_question_ids(self) -> frozenset[str]:
        return frozenset({"trained-1"})

    def read_each(self, question: str, passages: Sequence[str]) -> list[Span | None]:
        self.read_passages.append(list(passages))
        return [self._find(number, passage) for number, passage in enumerate(passages)]

    def _find(self, number: int, passage: str) -> Span | None:
        for phrase in self.phrases:
            if (at := passage.find(phrase)) >= 0:
                confidence = self.confidences.get(phrase, self.confidence)
                return Span(phrase, number, at, at + len(phrase), confidence)
        return None


@pytest.fixture
def searcher(tmp_path: Path, store: KnowledgeStore) -> HybridSearcher:
    embedder = HashEmbedder()
    (tmp_path / "cafe.txt").write_text(CAFE)
    (tmp_path / "ferry.txt").write_text("The ferry to Lunholm leaves at noon.")
    Ingestor(store, embedder).add_paths([tmp_path / "cafe.txt", tmp_path / "ferry.txt"])
    return HybridSearcher(store, embedder)


def answerer(
    engine: ScriptedEngine, searcher: HybridSearcher, reader: PhraseReader, **knobs: float
) -> Answerer:
    settings = AnswerSettings(min_similarity=-1.0, **{"min_span_confidence": 0.0, **knobs})  # type: ignore[arg-type]
    return Answerer(ModelWorker(engine), searcher, settings=settings, reader=reader)


def test_a_confident_span_is_the_answer_and_the_model_is_not_asked(
    searcher: HybridSearcher,
) -> None:
    engine = ScriptedEngine(["should not be said"])
    answer = answerer(engine, searcher, PhraseReader(["8 am to 6 pm"])).ask(
        "What are the weekday hours?"
    )
    assert answer.text == "8 am to 6 pm [1]" and answer.model_text == "8 am to 6 pm"
    assert answer.evidence == ["The café is open from 8 am to 6 pm on weekdays."]
    assert answer.completion is None and engine.history == []
    assert [s.hit.chunk.title for s in answer.cited] == ["cafe"]
    assert not answer.quoted


def test_a_yes_no_question_is_answered_with_the_sentence_that_holds_the_span(
    searcher: HybridSearcher,
) -> None:
    answer = answerer(ScriptedEngine(), searcher, PhraseReader(["cash"])).ask(
        "Can I pay with cash?"
    )
    # "cash" alone would read as a yes; the sentence carries its own sign.
    assert answer.text == "It does not accept cash. [1]"


def test_below_the_confidence_floor_or_with_an_adapter_the_model_answers(
    searcher: HybridSearcher, tmp_path: Path
) -> None:
    engine = ScriptedEngine(["From 8 am [1]"])
    unsure = answerer(engine, searcher, PhraseReader(["8 am"], confidence=0.5),
                      min_reader_confidence=1.0)  # fmt: skip
    assert unsure.ask("When do you open?").text == "From 8 am [1]"
    assert len(engine.history) == 1
    engine.enqueue("From 8 am [1]")
    tuned = answerer(engine, searcher, PhraseReader(["8 am"]))
    # A fine-tuned reader chosen on purpose (eval's rag+fine-tuned, /adapter use) answers.
    assert tuned.ask("When do you open?", adapter=tmp_path).text == "From 8 am [1]"
    assert len(engine.history) == 2


def test_the_reader_reads_more_chunks_than_the_model_gets(searcher: HybridSearcher) -> None:
    reader = PhraseReader(["noon"])
    answer = answerer(ScriptedEngine(), searcher, reader, search_k=1, read_k=2).ask(
        "When do you open on weekdays?"
    )
    assert len(reader.read_passages[0]) == 2
    assert answer.text == "noon [1]" and answer.cited[0].hit.chunk.title == "ferry"


class TwoHits:
    """A retriever whose first hit is far from the question and the second close to it."""

    def __init__(self, searcher: HybridSearcher) -> None:
        self.searcher = searcher

    def search(self, query: str, k: int = 5, collections: Sequence[int] = (1,)) -> list[SearchHit]:
        hits = self.searcher.search(query, k=2, collections=collections)
        far, near = sorted(hits, key=lambda h: h.chunk.title != "ferry")
        return [_with(far, 0.125), _with(near, 0.617)][:k]


def _with(hit: SearchHit, similarity: float) -> SearchHit:
    from dataclasses import replace

    return replace(hit, similarity=similarity)


def test_not_covered_looks_at_every_source_not_only_the_top_one(
    searcher: HybridSearcher,
) -> None:
    """Top fused hit at cosine 0.125, the second at 0.617 with the answer: answered from it."""
    engine = ScriptedEngine(["From 8 am [1]"])
    settings = AnswerSettings(min_similarity=0.2, search_k=1)
    answer = Answerer(ModelWorker(engine), TwoHits(searcher), settings=settings).ask(
        "When do you open?"
    )
    assert answer.text == "From 8 am [1]" and answer.sources[0].hit.chunk.title == "cafe"
    none = AnswerSettings(min_similarity=0.7)
    refused = Answerer(ModelWorker(ScriptedEngine()), TwoHits(searcher), settings=none)
    assert refused.ask("When do you open?").text == NOT_COVERED


def test_evaluations_leave_out_what_the_reader_trained_on() -> None:
    asked = [EvalQuestion(i, "q?", ("a",), ()) for i in ("trained-1", "new-1", "new-2")]
    kept, left_out = held_out(asked, PhraseReader([]).trained_question_ids)
    assert [q.id for q in kept] == ["new-1", "new-2"] and left_out == 1


@pytest.mark.parametrize(
    ("question", "polar"),
    [("Can I pay with cash?", True), ("Is the soup vegan?", True), ("Don't you open?", True),
     ("What time do you open?", False), ("Cash?", False), ("", False)],
)  # fmt: skip
def test_yes_no_questions_open_with_an_auxiliary_verb(question: str, polar: bool) -> None:
    assert is_yes_no(question) is polar


def test_the_holding_sentence_and_the_reply() -> None:
    at = CAFE.index("phone")
    assert holding_sentence(CAFE, at) == "The café takes cards and phone payments."
    assert span_reply("How can I pay?", "cards and phone payments", at, CAFE) == (
        "cards and phone payments",
        ["The café takes cards and phone payments."],
    )


def test_a_span_the_reader_is_unsure_of_is_replied_with_its_sentence(
    searcher: HybridSearcher,
) -> None:
    unsure = answerer(ScriptedEngine(), searcher, PhraseReader(["6 pm"], confidence=1.0),
                      min_span_confidence=2.0)  # fmt: skip
    answer = unsure.ask("When do you close on weekdays?")
    assert answer.text == "The café is open from 8 am to 6 pm on weekdays. [1]"
    assert answer.completion is None


def test_a_lower_ranked_source_answers_only_when_its_span_is_clearly_surer() -> None:
    def span(passage: int, confidence: float) -> Span:
        return Span(f"answer {passage}", passage, 0, 8, confidence)

    # The best-ranked source keeps the answer against a slightly surer one below it ...
    assert ranked_span([span(0, 9.0), span(1, 16.0)], margin=8.0) == span(0, 9.0)
    # ... and loses it to one surer by the margin or more; a source without a span is skipped.
    assert ranked_span([span(0, 2.0), None, span(2, 10.0)], margin=8.0) == span(2, 10.0)
    assert ranked_span([None, span(1, -3.0)], margin=8.0) == span(1, -3.0)
    assert ranked_span([None, None], margin=8.0) is None
    # With no margin the most confident span wins, whatever its rank.
    assert ranked_span([span(0, 9.0), span(1, 9.5)], margin=0.0) == span(1, 9.5)


def test_the_reader_reads_latin_script_questions_and_leaves_others_to_the_model() -> None:
    assert reader_can_read("When does the café open on Saturdays?")
    assert reader_can_read("Où est la gare ?") and reader_can_read("Is OLLAMA_HOST 0.0.0.0?")
    assert not reader_can_read("周六咖啡馆几点开门？") and not reader_can_read(
        "Когда открывается кафе?"
    )
    assert not reader_can_read("123?")
