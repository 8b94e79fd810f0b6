"""Answering: retrieve → fuse → pack sources within budget → generate → keep the cited sources."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol, TypedDict, Unpack

from bot.core.evidence import quote_evidence
from bot.core.follow_ups import is_follow_up
from bot.core.guard import echoes_prompt, quote_source
from bot.core.prompts import (
    BASE_SYSTEM,
    EMPTY_KNOWLEDGE_BASE,
    NOT_COVERED,
    RAG_PROMPTS,
    WITHHELD,
    base_messages,
    pack_sources,
    rag_messages,
)
from bot.core.reading import ranked_span, reader_can_read, span_reply
from bot.core.support import quoted_reply, unsupported
from bot.core.tidy import tidy_answer
from bot.llm.engine import GenerationLimits, Message, ModelError
from bot.llm.span_reader import Span
from bot.llm.worker import DEFAULT_ADAPTER, AdapterChoice, Completion, Job, ModelWorker
from bot.state import StateStore, Turn
from knowledge.migrations import GLOBAL_COLLECTION
from knowledge.search import SearchHit

log = logging.getLogger(__name__)
_CITATION = re.compile(r"\[(\d{1,2})\]")
# Tokens the chat template adds around each message, and a margin for the count of the whole.
_TOKENS_PER_MESSAGE = 8
_PROMPT_MARGIN = 32
CANDIDATES = 3
"""Hits retrieved at least, so that the similarity floor can pass over the first ones."""
MIN_QUESTION_TOKENS = 64
"""Settings that leave a question less room than this are refused at start."""


def too_long(characters: int, allowed: int) -> str:
    """The one sentence for a question that cannot fit in the model's context window."""
    return (
        f"Your question is too long for me ({characters:,} characters); please ask it in "
        f"at most about {allowed:,} characters."
    )


class Mode(StrEnum):
    """How a question is answered."""

    RAG = "rag"
    BASE = "base"


class Asking(TypedDict, total=False):
    """How a question is answered (`Answerer.begin` and `ask`)."""

    mode: Mode
    """RAG (the default) or the model alone."""
    chat_key: str | None
    """The conversation it belongs to (None: no memory)."""
    adapter: AdapterChoice
    """The LoRA adapter (default: the one users get)."""
    collections: Sequence[int]
    """The collections searched (default: global)."""


class Reader(Protocol):
    """Anything that finds an answer span in passages (bot.llm.span_reader.SpanReader)."""

    @property
    def trained_question_ids(self) -> frozenset[str]:
        """Questions it was trained on: evaluations leave them out."""
        ...

    def read_each(self, question: str, passages: Sequence[str]) -> list[Span | None]:
        """The best answer span of `question` in each of `passages`, in their order."""
        ...


class Retriever(Protocol):
    """Anything that returns the best chunks for a query (the knowledge base's HybridSearcher)."""

    def search(
        self, query: str, k: int = 5, collections: Sequence[int] = (GLOBAL_COLLECTION,)
    ) -> list[SearchHit]:
        """The k best chunks of `collections` for `query`."""
        ...


@dataclass(frozen=True)
class AnswerSettings:
    """Knobs of answering (see Settings for their environment names)."""

    search_k: int = 1
    context_tokens: int = 300
    """Token budget for the numbered sources in the prompt (prompt evaluation dominates latency)."""
    min_similarity: float = 0.2
    """Below this cosine similarity of the best chunk, say the knowledge base does not cover it."""
    history_turns: int = 4
    history_tokens: int = 200
    rag_prompt: str = "extractive"
    """The RAG system prompt's style, a key of prompts.RAG_PROMPTS."""
    limits: GenerationLimits = field(default_factory=GenerationLimits)
    read_k: int = 3
    """Chunks the span reader reads (when there is one); the best chunk's span is the answer
    unless another's beats it by `reader_switch_margin`."""
    reader_switch_margin: float = 8.0
    """How much more confident a lower-ranked chunk's span must be to answer instead of the best
    chunk's (0, the most confident span wins, lost 2.5 reply F1 on TAT-QA: the reader is sure
    of wrong reports too)."""
    min_reader_confidence: float = -100.0
    """The span reader answers when its span scores at least this much over "no answer here";
    below it the chat model answers (see bot.llm.span_reader)."""
    min_span_confidence: float = 8.0
    """A read span scoring below this is replied with the sentence that holds it."""


@dataclass(frozen=True)
class Source:
    """A numbered source given to the model."""

    number: int
    hit: SearchHit
    text: str = ""
    """The chunk's text as the model saw it (instruction-like sentences left out)."""


@dataclass(frozen=True)
class ReadSpan:
    """The span reader's answer: the span and the source it is in."""

    span: Span
    source: Source


@dataclass(frozen=True)
class PreparedAnswer:
    """Everything decided before generation: the messages and sources, or a refusal."""

    question: str
    mode: Mode
    messages: list[Message]
    sources: list[Source]
    refusal: str | None = None
    read: ReadSpan | None = None
    """The span reader's confident answer, given instead of a generation when the chat model
    would run without an adapter (see `Answerer.start`)."""


@dataclass(frozen=True)
class Answer:
    """The final answer with the sources it cites."""

    text: str
    mode: Mode
    sources: list[Source]
    cited: list[Source]
    completion: Completion | None
    evidence: list[str] = field(default_factory=list)
    """The source sentences the answer rests on, quoted for the reader (bot.core.evidence)."""
    model_text: str = ""
    """The model's own words (tidied); `text` is what the reader is shown."""
    unsupported: str = ""
    """Why the model's words did not hold up against the sources and `text` quotes them instead
    ("" when they did; bot.core.support)."""
    by_reader: bool = False
    """Whether the span reader gave the answer (`model_text` is its span), not the chat model."""

    @property
    def quoted(self) -> bool:
        """Whether `text` is the quoted evidence instead of the model's words."""
        return bool(self.unsupported)

    @property
    def shown_sources(self) -> list[Source]:
        """Sources to show: the cited ones, or all given ones when the model cited none."""
        return self.cited or self.sources


def cited_sources(text: str, sources: Sequence[Source]) -> list[Source]:
    """Sources whose `[n]` appears in `text`, in source order."""
    numbers = {int(n) for n in _CITATION.findall(text)}
    return [s for s in sources if s.number in numbers]


class Answerer:
    """Answers questions for any front end (terminal, Telegram, evaluation)."""

    def __init__(
        self,
        worker: ModelWorker,
        retriever: Retriever | None,
        *,
        state: StateStore | None = None,
        settings: AnswerSettings | None = None,
        reader: Reader | None = None,
    ) -> None:
        self.worker = worker
        self.retriever = retriever
        self.reader = reader
        self.state = state
        self.settings = settings or AnswerSettings()
        self._system = RAG_PROMPTS[self.settings.rag_prompt]
        # The knowledge base connection is shared by the bot's threads: one search at a time.
        self._search_lock = threading.Lock()
        if self._question_room(Mode.RAG) < MIN_QUESTION_TOKENS:
            raise ModelError(
                f"RAGTUNE_CONTEXT_TOKENS ({self.settings.context_tokens}) and "
                f"RAGTUNE_MAX_ANSWER_TOKENS ({self.settings.limits.max_tokens}) leave no room "
                f"for a question in the model's {worker.context_window}-token context "
                "(RAGTUNE_CONTEXT_WINDOW): lower them or raise it."
            )

    @property
    def trained_question_ids(self) -> frozenset[str]:
        """Questions the span reader was trained on (none without one): never scored on."""
        return self.reader.trained_question_ids if self.reader is not None else frozenset()

    def _history(self, chat_key: str | None) -> list[Message]:
        if self.state is None or chat_key is None:
            return []
        turns = self.state.recent_turns(chat_key, self.settings.history_turns)
        kept: list[Message] = []
        budget = self.settings.history_tokens
        for turn in reversed(turns):  # newest first, until the budget is spent
            cost = self.worker.count_tokens(turn.content)
            if cost > budget:
                break
            budget -= cost
            kept.insert(0, {"role": turn.role, "content": turn.content})
        return kept

    @staticmethod
    def follows_up(question: str, history: Sequence[Message]) -> str | None:
        """The previous question when `question` reads as a follow-up of it, else None."""
        previous = next((m["content"] for m in reversed(history) if m["role"] == "user"), None)
        return previous if previous and is_follow_up(question) else None

    def search_query(self, question: str, history: Sequence[Message]) -> str:
        """The question, with the previous question prepended when it reads as a follow-up."""
        previous = self.follows_up(question, history)
        return f"{previous} {question}" if previous else question

    def _prompt_tokens(self, messages: Sequence[Message]) -> int:
        count = self.worker.count_tokens
        return sum(count(m["content"]) + _TOKENS_PER_MESSAGE for m in messages) + _PROMPT_MARGIN

    def _room(self) -> int:
        """Prompt tokens the context window holds beside the answer (llama.cpp shortens an
        answer that would not fit, so at most half the window is kept for it)."""
        window = self.worker.context_window
        return window - min(self.settings.limits.max_tokens, window // 2)

    def _question_room(self, mode: Mode) -> int:
        """Tokens a question may have beside the system prompt, the sources' budget (RAG) and
        the answer."""
        reserved = self._prompt_tokens(
            base_messages("", []) if mode is Mode.BASE else rag_messages("", [], [], self._system)
        )
        if mode is Mode.RAG:
            reserved += self.settings.context_tokens
        return self._room() - reserved

    def _question_refusal(self, question: str, mode: Mode) -> str | None:
        """A refusal when the question cannot fit (see `_question_room`); decided before any
        search."""
        allowed = self._question_room(mode)
        tokens = self.worker.count_tokens(question)
        if tokens <= allowed:
            return None
        return too_long(len(question), len(question) * max(0, allowed) // tokens)

    def _fitted(
        self, question: str, build: Callable[[list[Message]], list[Message]], history: list[Message]
    ) -> list[Message] | str:
        """The prompt `build` makes with as much of `history` as fits, or a refusal."""
        while True:
            messages = build(history)
            over = self._prompt_tokens(messages) - self._room()
            if over <= 0:
                return messages
            if not history:
                tokens = max(1, self.worker.count_tokens(question))
                return too_long(len(question), len(question) * max(0, tokens - over) // tokens)
            history = history[2:]  # the oldest exchange goes first

    def prepare(
        self,
        question: str,
        *,
        mode: Mode = Mode.RAG,
        chat_key: str | None = None,
        collections: Sequence[int] = (GLOBAL_COLLECTION,),
    ) -> PreparedAnswer:
        """Retrieve from `collections` and pack sources (RAG) or not (base); decide a refusal
        before generating."""
        if (refusal := self._question_refusal(question, mode)) is not None:
            return PreparedAnswer(question, mode, [], [], refusal=refusal)
        history = self._history(chat_key)
        if mode is Mode.BASE:
            fitted = self._fitted(question, lambda kept: base_messages(question, kept), history)
            if isinstance(fitted, str):
                return PreparedAnswer(question, mode, [], [], refusal=fitted)
            return PreparedAnswer(question, mode, fitted, [])
        if self.retriever is None:
            raise ValueError("RAG mode needs a retriever")
        # Earlier answers never reach a RAG prompt: a small model copies them (after four turns
        # the 135M model answered five different café questions with one earlier answer). A
        # follow-up gets the question it leans on, for its search and beside its sources.
        earlier = self.follows_up(question, history)
        reading = (
            self.settings.read_k if self.reader is not None and reader_can_read(question) else 0
        )
        with self._search_lock:
            found = self.retriever.search(
                f"{earlier} {question}" if earlier else question,
                # A few candidates even for one source: one far from the question in meaning
                # gives its place to the next (the floor below).
                k=max(self.settings.search_k, reading, CANDIDATES),
                collections=collections,
            )
        if not found:  # the vector search returns its nearest chunks whenever there are any
            return PreparedAnswer(question, mode, [], [], refusal=EMPTY_KNOWLEDGE_BASE)
        # Every source is held to the floor, not only the first: a keyword match that is far
        # from the question in meaning must not make the knowledge base say it has no answer
        # when the next hit has it (top hit cosine 0.125, second 0.617 and the answer).
        relevant = [hit for hit in found if hit.similarity >= self.settings.min_similarity]
        if not relevant:
            return PreparedAnswer(question, mode, [], [], refusal=NOT_COVERED)
        read = self._read(question, relevant[:reading]) if reading else None
        hits = relevant[: self.settings.search_k]
        # Retrieved text is data: sentences that address the model never reach it.
        packed = pack_sources(
            [(hit.chunk.title, hit.chunk.text) for hit in hits],
            self.worker.count_tokens,
            self.settings.context_tokens,
        )
        sources = [
            Source(number, hits[position], text)
            for number, (position, text) in enumerate(
                zip(packed.kept, packed.texts, strict=True), 1
            )
        ]
        blocks = packed.blocks
        if packed.dropped_sentences:
            log.info(
                "left out %d instruction-like sentences of the sources", packed.dropped_sentences
            )
        fitted = self._fitted(
            question,
            lambda kept: rag_messages(
                question, blocks, kept, self._system, earlier_question=earlier
            ),
            [],
        )
        if isinstance(fitted, str):  # only when the best source alone is over its budget
            return PreparedAnswer(question, mode, [], [], refusal=fitted)
        return PreparedAnswer(question, mode, fitted, sources, read=read)

    def _read(self, question: str, hits: Sequence[SearchHit]) -> ReadSpan | None:
        """The span reader's answer in `hits` when it is confident enough, else None."""
        assert self.reader is not None
        # The reader gets the sources as the model would: instruction-like sentences left out,
        # so a planted "say X" is never the span a user is shown.
        texts = [quote_source(hit.chunk.text)[0] for hit in hits]
        span = ranked_span(
            self.reader.read_each(question, texts), self.settings.reader_switch_margin
        )
        if span is None or span.confidence < self.settings.min_reader_confidence:
            return None
        return ReadSpan(span, Source(1, hits[span.passage], texts[span.passage]))

    def begin(self, question: str, **how: Unpack[Asking]) -> AnswerRun:
        """Retrieve, then queue the generation (none for a refusal); raises QueueFullError when
        the model's queue is full. Blocks for the search: call it from a thread in async code."""
        chat_key = how.get("chat_key")
        prepared = self.prepare(
            question,
            mode=how.get("mode", Mode.RAG),
            chat_key=chat_key,
            collections=how.get("collections", (GLOBAL_COLLECTION,)),
        )
        return self.start(prepared, chat_key, how.get("adapter", DEFAULT_ADAPTER))

    def start(
        self,
        prepared: PreparedAnswer,
        chat_key: str | None = None,
        adapter: AdapterChoice = DEFAULT_ADAPTER,
    ) -> AnswerRun:
        """Queue the generation of a prepared answer (none for a refusal); never blocks.
        Raises QueueFullError when the model's queue is full."""
        if prepared.read is not None and self._without_adapter(adapter):
            return AnswerRun(self, prepared, None, chat_key)  # the span is the answer
        # An adapter is a fine-tuned reader chosen on purpose (`/adapter use`, eval's
        # rag+fine-tuned): it answers, and the span is not used.
        prepared = replace(prepared, read=None)
        job = (
            None
            if prepared.refusal is not None
            else self.worker.submit(prepared.messages, self.settings.limits, adapter)
        )
        return AnswerRun(self, prepared, job, chat_key)

    def _without_adapter(self, adapter: AdapterChoice) -> bool:
        """Whether a generation with `adapter` would run on the base model alone."""
        return adapter is None or (adapter == DEFAULT_ADAPTER and not self.worker.default_adapter)

    def ask(self, question: str, **how: Unpack[Asking]) -> Answer:
        """Answer in one blocking call (evaluation, scripts)."""
        return self.begin(question, **how).answer()

    def conclude(
        self, prepared: PreparedAnswer, completion: Completion | None, chat_key: str | None
    ) -> Answer:
        """The Answer to a finished generation (or a refusal, or a read span), remembered in
        the chat."""
        if prepared.read is not None:
            read = prepared.read
            sure = read.span.confidence >= self.settings.min_span_confidence
            text, evidence = span_reply(prepared.question, read.span.text, read.span.start,
                                        read.source.text, sure=sure)  # fmt: skip
            answer = Answer(
                f"{text} [{read.source.number}]", prepared.mode, [read.source], [read.source],
                None, evidence, model_text=text, by_reader=True,
            )  # fmt: skip
            return self._remember(chat_key, prepared, answer)
        text = prepared.refusal or (
            tidy_answer(completion.text, len(prepared.sources)) if completion else ""
        )
        withheld = echoes_prompt(text, (*RAG_PROMPTS.values(), BASE_SYSTEM))
        if withheld:
            log.info("withheld a reply that repeated the system prompt")
            text = WITHHELD
        cited = cited_sources(text, prepared.sources)
        evidence = (
            quote_evidence(text, prepared.question, [s.text for s in cited or prepared.sources])
            if completion is not None and not withheld
            else []
        )
        model_text, reason = text, ""
        if evidence and prepared.mode is Mode.RAG and prepared.refusal is None and not withheld:
            reason = unsupported(
                text,
                prepared.question,
                [s.text for s in prepared.sources],
                # A title taken from the text itself (an /add note's first line) is content.
                [s.hit.chunk.title for s in prepared.sources if s.hit.chunk.title not in s.text],
            )
            if reason:
                # Quoted from the sources the evidence came from, cited like a model answer.
                numbers = [s.number for s in prepared.sources if any(e in s.text for e in evidence)]
                text = quoted_reply(evidence, "".join(f"[{n}]" for n in numbers))
                cited = cited_sources(text, prepared.sources)
                log.info("quoted the sources instead of an answer with %s", reason)
        answer = Answer(
            text, prepared.mode, prepared.sources, cited, completion, evidence, model_text, reason
        )
        return self._remember(chat_key, prepared, answer)

    def _remember(self, chat_key: str | None, prepared: PreparedAnswer, answer: Answer) -> Answer:
        if self.state is not None and chat_key is not None:
            self.state.add_turns(
                chat_key, [Turn("user", prepared.question), Turn("assistant", answer.text)]
            )
        return answer


@dataclass(frozen=True)
class AnswerRun:
    """One question being answered: what `Answerer.prepare` retrieved and, unless it was
    refused, its queued generation, which it turns into the Answer. Every front end (Telegram,
    the terminal, evaluation) answers through it."""

    answerer: Answerer
    prepared: PreparedAnswer
    job: Job | None
    """None when the question was refused before the model (the refusal is the answer)."""
    chat_key: str | None

    @property
    def position(self) -> int:
        """Generations ahead of this one when it was queued (0: next, or none needed)."""
        return self.job.position if self.job is not None else 0

    def pieces(self) -> Iterator[str]:
        """The answer's text as it is generated (blocking; nothing for a refusal)."""
        return self.job.pieces() if self.job is not None else iter(())

    async def apieces(self) -> AsyncIterator[str]:
        """The answer's text as it is generated, waited for in a thread."""
        if self.job is not None:
            async for piece in self.job.apieces():
                yield piece

    def cancel(self) -> None:
        """Stop the generation (the model's place is given back); harmless when finished."""
        if self.job is not None:
            self.job.cancel()

    def finish(self) -> Answer | None:
        """Wait for the generation and build the Answer, remembered in the chat; None when the
        generation was cancelled (nothing is remembered then)."""
        completion = self.job.result() if self.job is not None else None
        if completion is not None and completion.cancelled:
            return None
        return self.answerer.conclude(self.prepared, completion, self.chat_key)

    def answer(self) -> Answer:
        """`finish` for callers that never cancel (the terminal, evaluation)."""
        answer = self.finish()
        if answer is None:
            raise ModelError("The answer was stopped before it was finished.")
        return answer
