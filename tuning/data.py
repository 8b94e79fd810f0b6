"""Training data: Q/A JSONL rows turned into chat messages the served model is prompted with."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from bot.core.prompts import RAG_PROMPTS, base_messages, pack_sources, rag_messages
from bot.llm.engine import Message
from tuning.errors import TuningError


@dataclass(frozen=True)
class Example:
    """One question with the answer the adapter should give (and, optionally, its passage)."""

    question: str
    answer: str
    context: str | None = None
    title: str = "source"
    rag_prompt: str = "extractive"
    """The served model's RAG prompt style: an adapter learns the prompt it will be served."""
    prompt: tuple[Message, ...] = ()
    """A prompt built already (grounded training: the serving prompt with retrieved sources);
    `answer` is then the whole reply."""

    def messages(self) -> list[Message]:
        """The prompt as the bot builds it: RAG-style with the passage, else the bare question."""
        if self.prompt:
            return list(self.prompt)
        if self.context:
            # Packed as served: sentences that address the model are left out here too.
            packed = pack_sources([(self.title, self.context)], lambda _: 0, 0)
            return rag_messages(self.question, packed.blocks, [], RAG_PROMPTS[self.rag_prompt])
        return base_messages(self.question, [])

    def reply(self) -> str:
        """The target text: the answer, cited as the extractive prompt asks when given a passage."""
        if self.context and not self.prompt and self.rag_prompt == "extractive":
            return f"{self.answer} [1]"
        return self.answer


def load_examples(
    path: Path, corpus: Path | None = None, rag_prompt: str = "extractive"
) -> list[Example]:
    """Rows with `question` and `answer` (or the eval set's `answers`), optional `context`.

    With `corpus` (id, title, text JSONL), rows naming `positive_ids` get that passage as context.
    """
    passages: dict[str, tuple[str, str]] = {}
    if corpus is not None:
        for row in read_rows(corpus):
            passages[str(row["id"])] = (str(row.get("title", "source")), str(row["text"]))
    examples = []
    for number, row in enumerate(read_rows(path), start=1):
        question, answer = question_and_answer(row, number, path)
        given = row.get("context")
        title, context = "source", given if isinstance(given, str) else None
        ids = row.get("positive_ids")
        if context is None and isinstance(ids, list) and ids and str(ids[0]) in passages:
            title, context = passages[str(ids[0])]
        examples.append(Example(question, answer, context, title, rag_prompt))
    if not examples:
        raise TuningError(f"{path} holds no examples.")
    return examples


def question_and_answer(row: dict[str, object], number: int, path: Path) -> tuple[str, str]:
    """A row's question and its `answer` (or the eval set's first `answers`), stripped; line
    `number` of `path` is named when either is missing."""
    question, answers = row.get("question"), row.get("answers")
    answer = row.get("answer") or (answers[0] if isinstance(answers, list) and answers else None)
    if not isinstance(question, str) or not isinstance(answer, str) or not answer.strip():
        raise TuningError(
            f"Line {number} of {path} needs a `question` and an `answer` (or `answers`)."
        )
    return question.strip(), answer.strip()


def read_rows(path: Path) -> list[dict[str, object]]:
    """The JSON objects of a JSONL file, with the line of the first one that is not."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TuningError(f"Cannot read {path} ({exc.strerror}).") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise TuningError(f"Line {number} of {path} is not valid JSON.") from None
        if not isinstance(row, dict):
            raise TuningError(f"Line {number} of {path} is not a JSON object.")
        rows.append(row)
    return rows


def dataset_sha256(examples: list[Example]) -> str:
    """A fingerprint of the training data, for the manifest."""
    digest = hashlib.sha256()
    for example in examples:
        row: list[object] = [example.question, example.answer, example.context]
        if example.prompt:  # grounded: the sources the prompt was built with are data too
            row.append([m["content"] for m in example.prompt])
        digest.update(json.dumps(row).encode())
    return digest.hexdigest()


SMALL_SET = 50
"""Below this many examples nothing is held out: each row is a fact the user wants learned, and
`tune train`'s check (recall on the training questions) says whether it was."""


def split(
    examples: list[Example], validation_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """A seeded shuffle into (train, validation); small sets keep everything for training."""
    shuffled = examples[:]
    random.Random(seed).shuffle(shuffled)
    held = int(len(shuffled) * validation_fraction)
    if len(shuffled) < SMALL_SET or held < 1:
        return shuffled, []
    return shuffled[held:], shuffled[:held]


def knowledge_texts(db: Path) -> list[str]:
    """Every chunk of a knowledge base, for continued pre-training on its documents."""
    from knowledge.errors import KnowledgeError
    from knowledge.store import KnowledgeStore

    if not db.is_file():
        raise TuningError(f"There is no knowledge base at {db}.")
    try:
        with KnowledgeStore.open(db) as store:
            return [chunk.text for batch in store.iter_chunks() for chunk in batch]
    except KnowledgeError as exc:
        raise TuningError(f"Cannot read the knowledge base {db}: {exc}") from None
