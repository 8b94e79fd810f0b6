"""Grounded training data: each question in the prompt the bot will serve it with.

An adapter trained closed-book learns to answer without looking (README, "RAG or fine-tuning,
or both?": RAG + that adapter found fewer answers than RAG alone). Here every question is put in
the serving prompt — the same system prompt, the same number of sources, the same token budget,
the same filter for sentences that address the model (`bot.core.prompts.pack_sources`) — with
the chunks the product's own retriever returns for it: with probability `gold_share` the chunk
that holds the answer at a random position among distractors, the reply the source sentence that
holds it (cited, with the extractive prompt; see Grounding.reply); otherwise sources that do not
hold it (by default chunks of other titles: see Grounding.negatives), and the reply the prompt
asks for then, "I don't know." Sources are cut to random runs of their sentences as often as
Grounding.excerpts says, so that short documents are answered, not only long ones.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.core.answer import Retriever
from bot.core.answer_eval import normalize_answer
from bot.core.prompts import RAG_PROMPTS, pack_sources, rag_messages
from knowledge.chunking import split_sentences
from knowledge.keywords import CJK
from knowledge.store import StoredChunk
from tuning.data import Example, question_and_answer, read_rows
from tuning.errors import TuningError

DONT_KNOW = "I don't know."
"""What both RAG prompts ask for when the sources do not hold the answer."""
NEGATIVES = ("nearest", "other-titles", "answer-removed")
REPLIES = ("auto", "span", "clause", "sentence")
CLAUSE_BREAK = re.compile(
    r"(?<=[,;:])\s+|(?<=[，；：])|\s+(?=\()|\s+(?:and|but)\s+|\s+(?=(?:while|which|who)\s)"
)
"""Where a sentence splits into clauses: after , ; : before ( and at some conjunctions."""
SHORTEST_CLAUSE_WORDS = 4
"""A clause reply grows by its neighbours to at least this many words: a phrase, not a span."""
NEGATIVES_DEPTH = 32
"""Hits searched for an "I don't know." prompt's sources (other titles rank lower)."""
LONGEST_SENTENCE_WORDS = 40
"""A source sentence longer than this is not a short answer: the span alone is the reply."""
WORD = re.compile(f"[{CJK}]|[^\\s{CJK}]+")
"""A word: one CJK character (scripts written without spaces), or a run of anything else."""


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
    know." on it teaches the model to refuse answers that are there; `answer-removed`, the
    answer's own chunk without the sentences that hold the answer (then other titles, for more
    sources), beside the same question with the answer (so `1 - gold_share` of the rows give
    two prompts): the same topic and words, only the answer gone, so what the model learns to
    check is whether the answer is there, not whether the topic matches."""
    reply: str = "auto"
    """What an answerable prompt's reply is: `sentence` (`auto`), the source sentence that holds
    the answer; `clause`, its clause; `span`, the answer alone. Spans score best on span-scored
    sets of the training's own kind (EM/F1: README, grounded adapters), but a 135M model picking
    spans on another domain picks wrong ones or gives up: 1 or 2 of 10 café questions right
    against RAG alone's 7, and 8 with sentences (bench.grounded_knobs, 2026-12-06), at the CI's
    size (120 questions). Trained on 787 at `--lr 5e-4 --gold-share 0.95`, spans answered 8
    against RAG's 6 (README, "One SmolLM2 adapter for both")."""
    excerpts: float = 0.5
    """Share of sources cut to a random run of their sentences (a gold source keeps the one
    with the answer). Documents come in every length — a café FAQ answers in one sentence, a
    Wikipedia chunk in ten — and a model trained on long chunks only answers "I don't know." to
    short ones (bench.grounded_knobs: 8 of 10 café questions)."""
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


def short_reply(
    answer: str, source_text: str, number: int, rag_prompt: str, reply: str = "auto"
) -> str:
    """The reply the bot should give: the short source sentence that holds the answer (`auto`,
    `sentence`), its clause (`clause`) or the answer alone (`span`; also when the sentence is
    long), cited with the extractive prompt (the sentence prompt asks for no citation)."""
    form = "sentence" if reply == "auto" else reply
    cite = f" [{number}]" if rag_prompt == "extractive" else ""
    wanted = normalize_answer(answer)
    sentences = split_sentences(source_text)
    at = answer_sentence(sentences, wanted)
    if form != "span" and at is not None:
        if form == "clause":
            return answer_clause(sentences[at], wanted) + cite
        if word_count(sentences[at]) <= LONGEST_SENTENCE_WORDS:
            return sentences[at].strip() + cite
    return answer + cite


def word_count(text: str) -> int:
    """Words in `text`: whitespace-separated, except that each CJK character counts as one
    (Chinese and Japanese are written without spaces: a long sentence is one part)."""
    return len(WORD.findall(text))


def answer_clause(sentence: str, wanted: str) -> str:
    """The clause of `sentence` that holds `wanted` (normalized), with its neighbours until it
    has SHORTEST_CLAUSE_WORDS words; the whole sentence when the answer spans clauses."""
    parts = [part for part in CLAUSE_BREAK.split(sentence.strip()) if part]
    at = answer_sentence(parts, wanted)
    if at is None:
        return sentence.strip()
    low = high = at
    while word_count(" ".join(parts[low : high + 1])) < SHORTEST_CLAUSE_WORDS:
        if high + 1 < len(parts):
            high += 1
        elif low > 0:
            low -= 1
        else:
            break
    return " ".join(parts[low : high + 1]).rstrip(",;: ")


def has_answer(text: str, wanted: str) -> bool:
    """Whether normalized `wanted` is in `text` as whole words ("six" is not in "sixty"); as a
    substring in scripts written without spaces."""
    if not wanted:
        return False
    normalized = normalize_answer(text)
    if " " not in normalized and not normalized.isascii():
        return wanted in normalized
    return f" {wanted} " in f" {normalized} "


def answer_sentence(sentences: Sequence[str], wanted: str) -> int | None:
    """The first of `sentences` that holds `wanted` (normalized) as whole words, else the first
    that holds it at all ("Denver" in "Denver's", normalized "denvers"); None when none does."""
    if not wanted:
        return None
    loose = [i for i, sentence in enumerate(sentences) if wanted in normalize_answer(sentence)]
    return next((i for i in loose if has_answer(sentences[i], wanted)), loose[0] if loose else None)


def without_answer_sentences(text: str, wanted: str) -> str | None:
    """`text` without its sentences that hold `wanted` (normalized), or None when too little
    is left (under two sentences) or the answer is still in it (split across sentences). An
    answer given in other words is not found: a chunk that repeats its answer in other words
    would teach "I don't know." wrongly."""
    sentences = split_sentences(text)
    kept = [s for s in sentences if not wanted or wanted not in normalize_answer(s)]
    rest = " ".join(kept)
    if len(kept) < 2 or len(kept) == len(sentences) or wanted in normalize_answer(rest):
        return None
    return rest


def cut(draw: random.Random, share: float) -> bool:
    """Whether to cut this source; draws nothing when nothing is cut (`share` 0), so that the
    prompts of a seed stay those of the version before excerpts."""
    return share > 0 and draw.random() < share


def excerpt(text: str, wanted: str, draw: random.Random) -> str:
    """A random run of `text`'s sentences, with the first that holds `wanted` when one does
    (`text` whole when the answer spans sentences, or when it is one sentence)."""
    sentences = split_sentences(text)
    at = answer_sentence(sentences, wanted)
    spans_sentences = at is None and bool(wanted) and wanted in normalize_answer(text)
    if len(sentences) < 2 or spans_sentences:
        return text
    length = draw.randint(1, len(sentences))
    if at is not None:
        start = draw.randint(max(0, at - length + 1), min(at, len(sentences) - length))
    else:
        start = draw.randint(0, len(sentences) - length)
    if length == len(sentences):
        return text
    return text_between(text, sentences[start : start + length])


def text_between(text: str, run: Sequence[str]) -> str:
    """`text` from the first sentence of `run` to the end of its last, line breaks and spacing
    kept (the sentences joined by spaces where they cannot be found as they are)."""
    begin = text.find(run[0])
    end = text.find(run[-1], max(begin, 0))
    if begin < 0 or end < 0:
        return " ".join(run)
    return text[begin : end + len(run[-1])]


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
        if grounding.negatives in ("other-titles", "answer-removed"):
            titles = {c.title for c in (gold, *named)}
            unrelated = [c for c in deep if c.id not in off_limits and c.title not in titles]
        else:
            unrelated = distractors
        removed = None
        if grounding.negatives == "answer-removed":
            removed = without_answer_sentences(gold.text, wanted)
        answerable = not (unrelated or removed) or draw.random() < grounding.gold_share
        # An answer-removed prompt comes with its answerable twin: the same question, the same
        # chunk at the same place with and without the answer's sentences.
        picked = distractors[: grounding.sources - 1]
        gold_at = draw.randint(0, len(picked)) if answerable or removed else -1
        for holds_answer in (True,) if answerable else (True, False) if removed else (False,):
            if holds_answer:
                sources = [(c.title, c.text) for c in picked]
                sources.insert(gold_at, (gold.title, gold.text))
            elif removed:  # the twin: the answer's chunk where it stood, without the answer
                sources = [(c.title, c.text) for c in unrelated[: grounding.sources - 1]]
                sources.insert(min(gold_at, len(sources)), (gold.title, removed))
            else:
                sources = [(c.title, c.text) for c in unrelated[: grounding.sources]]
            sources = [
                (title, excerpt(text, wanted, draw) if cut(draw, grounding.excerpts) else text)
                for title, text in sources
            ]
            packed = pack_sources(sources, count_tokens, grounding.context_tokens)
            if holds_answer and gold_at not in packed.kept:  # over the budget: gold first
                sources.insert(0, sources.pop(gold_at))
                gold_at = 0
                packed = pack_sources(sources, count_tokens, grounding.context_tokens)
            if holds_answer:
                number = packed.kept.index(gold_at) + 1
                text = packed.texts[number - 1]
                reply = short_reply(row.answer, text, number, grounding.rag_prompt, grounding.reply)
                with_answer += 1
            else:
                reply = DONT_KNOW
                without_answer += 1
            messages = rag_messages(row.question, packed.blocks, [], system)
            examples.append(
                Example(
                    row.question, reply, rag_prompt=grounding.rag_prompt, prompt=tuple(messages)
                )
            )
    if not examples:
        raise TuningError(
            "No question could be grounded: none names a document of the knowledge base "
            "(positive_ids) or has its answer in one."
        )
    return GroundedData(examples, with_answer, without_answer, skipped)
