"""Grounded training data: each question in the prompt the bot will serve it with.

An adapter trained closed-book learns to answer without looking (README, "RAG or fine-tuning,
or both?": RAG + that adapter found fewer answers than RAG alone). Here every question is put in
the serving prompt — the same system prompt, the same number of sources, the same token budget,
the same filter for sentences that address the model (`bot.core.prompts.pack_sources`) — with
the chunks the product's own retriever returns for it: with probability `gold_share` the chunk
that holds the answer at a random position among distractors, the reply the answer copied from
it (cited, with the extractive prompt); otherwise sources from other documents only (by default
of other titles: see Grounding.negatives), and the reply the prompt asks for then, "I don't know."
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.core.answer import Retriever
from bot.core.answer_eval import normalize_answer
from bot.core.prompts import RAG_PROMPTS, pack_sources, rag_messages
from knowledge.chunking import split_sentences
from knowledge.store import StoredChunk
from tuning.data import Example, question_and_answer, read_rows
from tuning.errors import TuningError

DONT_KNOW = "I don't know."
"""What both RAG prompts ask for when the sources do not hold the answer."""
NEGATIVES = ("nearest", "other-titles")
NEGATIVES_DEPTH = 32
"""Hits searched for an "I don't know." prompt's sources (other titles rank lower)."""
LONGEST_SENTENCE_WORDS = 40
"""A source sentence longer than this is not a short answer: the span alone is the reply."""


@dataclass(frozen=True)
class GroundedRow:
    """A question, its answer and (optionally) the documents that hold it."""

    question: str
    answer: str
    positive_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Grounding:
    """How grounded prompts are built; recorded in the adapter's manifest."""

    sources: int
    """Sources per prompt: the served model's profile (`answer_k`)."""
    context_tokens: int
    """Token budget of the sources: the served model's profile."""
    rag_prompt: str = "extractive"
    gold_share: float = 0.9
    """Share of prompts that hold the answer; the rest teach "I don't know."."""
    depth: int = 8
    """Distractors are taken from this many best hits for the question."""
    negatives: str = "other-titles"
    """Where the sources of an "I don't know." prompt come from: `nearest`, the best hits from
    any document but the answer's; `other-titles`, the best hits whose title differs from every
    title of the answer's chunks. A sibling chunk of the same article or report often holds the
    answer in other words (XQuAD: other paragraphs of the same article), so teaching "I don't
    know." on it teaches the model to refuse answers that are there."""
    seed: int = 0


@dataclass(frozen=True)
class GroundedData:
    """The examples, and what building them found."""

    examples: list[Example]
    with_answer: int
    without_answer: int
    skipped: int
    """Rows whose answer is in no chunk and that name no document: nothing to ground them on."""


def load_rows(path: Path) -> list[GroundedRow]:
    """Rows with `question`, `answer` (or the eval set's `answers`) and optional `positive_ids`."""
    rows = []
    for number, row in enumerate(read_rows(path), start=1):
        question, answer = question_and_answer(row, number, path)
        ids = row.get("positive_ids")
        positive = tuple(str(i) for i in ids) if isinstance(ids, list) else ()
        rows.append(GroundedRow(question, answer, positive))
    if not rows:
        raise TuningError(f"{path} holds no examples.")
    return rows


def short_reply(answer: str, source_text: str, number: int, rag_prompt: str) -> str:
    """The reply the bot should give: the span cited (extractive prompt), or the short source
    sentence that holds it (sentence prompt, which asks for no citation), else the span."""
    if rag_prompt == "extractive":
        return f"{answer} [{number}]"
    wanted = normalize_answer(answer)
    for sentence in split_sentences(source_text):
        if wanted and wanted in normalize_answer(sentence):
            if len(sentence.split()) <= LONGEST_SENTENCE_WORDS:
                return sentence.strip()
            break
    return answer


def grounded_examples(
    rows: Sequence[GroundedRow],
    retriever: Retriever,
    chunks: Sequence[StoredChunk],
    count_tokens: Callable[[str], int],
    grounding: Grounding,
) -> GroundedData:
    """One serving-shaped example per row (see the module's docstring)."""
    by_document: dict[str, list[StoredChunk]] = {}
    for chunk in chunks:
        by_document.setdefault(chunk.external_id, []).append(chunk)
    normalized = [(chunk, normalize_answer(chunk.text)) for chunk in chunks]
    draw = random.Random(grounding.seed)
    system = RAG_PROMPTS[grounding.rag_prompt]
    examples: list[Example] = []
    with_answer = without_answer = skipped = 0
    for row in rows:
        wanted = normalize_answer(row.answer)
        deep = [hit.chunk for hit in retriever.search(row.question, k=NEGATIVES_DEPTH)]
        hits = deep[: grounding.depth]
        holds = [chunk for chunk, text in normalized if wanted and wanted in text]
        named = [c for i in row.positive_ids for c in by_document.get(i, [])]
        holding = {c.id for c in holds}
        gold_candidates = [c for c in named if c.id in holding] or named or holds
        if not gold_candidates:
            skipped += 1
            continue
        candidate_ids = {c.id for c in gold_candidates}
        gold = next((c for c in hits if c.id in candidate_ids), gold_candidates[0])
        # Anything from the answer's documents, or holding the answer, is no distractor.
        off_limits = {c.id for c in (*named, *holds)}
        distractors = [c for c in hits if c.id not in off_limits]
        if grounding.negatives == "other-titles":
            titles = {c.title for c in (gold, *named)}
            unrelated = [c for c in deep if c.id not in off_limits and c.title not in titles]
        else:
            unrelated = distractors
        answerable = not unrelated or draw.random() < grounding.gold_share
        if answerable:
            picked = distractors[: grounding.sources - 1]
            picked.insert(draw.randint(0, len(picked)), gold)
        else:
            picked = unrelated[: grounding.sources]
        packed = pack_sources(
            [(c.title, c.text) for c in picked], count_tokens, grounding.context_tokens
        )
        if answerable and picked.index(gold) not in packed.kept:  # over the budget: gold first
            picked.remove(gold)
            picked.insert(0, gold)
            packed = pack_sources(
                [(c.title, c.text) for c in picked], count_tokens, grounding.context_tokens
            )
        if answerable:
            number = packed.kept.index(picked.index(gold)) + 1
            reply = short_reply(row.answer, packed.texts[number - 1], number, grounding.rag_prompt)
            with_answer += 1
        else:
            reply = DONT_KNOW
            without_answer += 1
        messages = rag_messages(row.question, packed.blocks, [], system)
        examples.append(
            Example(row.question, reply, rag_prompt=grounding.rag_prompt, prompt=tuple(messages))
        )
    if not examples:
        raise TuningError(
            "No question could be grounded: none names a document of the knowledge base "
            "(positive_ids) or has its answer in one."
        )
    return GroundedData(examples, with_answer, without_answer, skipped)
