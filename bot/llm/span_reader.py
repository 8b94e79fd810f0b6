"""The span reader: an extractive question-answering model that finds the answer in the sources.

A 135M chat model often has the right source in front of it and still answers wrong; a reader
trained to point at the answer's first and last token (BERT-style start/end logits) cannot
invent anything: its answer is a span of a source, with the sentence around it. The model is the
packaged all-MiniLM-L6-v2 encoder trained for this by `ragtune reader build` (tuning/reader.py);
here it only runs. Its confidence is the span's score over the score of "no answer here" (the
[CLS] token), so the caller decides when to trust it (bot.core.answer).
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.llm.engine import ModelError
from knowledge.chunking import sentence_bounds

if TYPE_CHECKING:
    from transformers import PreTrainedModel

READER_RECIPE = "minilm-l6-span-v2"
"""Names the training recipe; a new recipe gets a new folder, so an old reader is never mistaken
for it."""
MANIFEST = "reader.json"
"""The file beside the weights that says what a reader folder is (tuning/reader.py writes it)."""
MAX_SPAN_TOKENS = 30
"""Longest answer span, in word pieces: answers are names, figures and short phrases."""
WINDOW_TOKENS = 256
WINDOW_STRIDE = 96
_CANDIDATES = 20
_JOINERS = frozenset("._-/:@+#")
"""Characters that join two word characters into one term: config.toml, 555-0142, 3.5, a/b (not
the apostrophe: "Luther" is the answer in "Luther's")."""


def _in_word(char: str) -> bool:
    """Whether `char` is part of a word that whitespace delimits: letters and digits of scripts
    that space their words (an ideograph is a word of its own, so Chinese spans are never
    widened to a whole clause)."""
    return (char.isalnum() or char == "_") and not _spaceless_script(char)


def _spaceless_script(char: str) -> bool:
    """Whether `char` is from a script written without spaces between words (CJK, kana, Thai)."""
    code = ord(char)
    return (
        0x2E80 <= code <= 0x9FFF  # CJK radicals, kana, ideographs
        or 0xAC00 <= code <= 0xD7AF  # Hangul syllables
        or 0xF900 <= code <= 0xFAFF
        or 0x0E00 <= code <= 0x0EFF  # Thai, Lao
        or 0x20000 <= code <= 0x3FFFF
    )


def whole_words(text: str, begin: int, end: int) -> tuple[int, int]:
    """begin..end widened to the whole terms it cuts: a reader pointing at word pieces answered
    "toml" for "config.toml" (the tokenizer splits at the dot) and would answer "##ing" ends."""

    def joined(at: int) -> bool:  # text[at] sits inside a term: a word char or a joiner in one
        if _in_word(text[at]):
            return True
        if not 0 < at < len(text) - 1:
            return False
        before, after = text[at - 1], text[at + 1]
        if text[at] == ",":  # 12,500 is one figure; "Paris,London" is not one term
            return before.isdigit() and after.isdigit()
        return text[at] in _JOINERS and _in_word(before) and _in_word(after)

    if begin >= end:
        return begin, end
    while begin > 0 and joined(begin - 1) and joined(begin):
        begin -= 1
    while end < len(text) and joined(end) and joined(end - 1):
        end += 1
    return begin, end


def default_reader_dir() -> Path:
    """Where `ragtune reader build` puts the reader: once per machine, outside the repo."""
    return Path.home() / ".cache" / "ragtune" / "readers" / READER_RECIPE


@dataclass(frozen=True)
class Span:
    """An answer span found in one of the passages read."""

    text: str
    passage: int
    """Index of the passage it was found in."""
    start: int
    end: int
    """Character offsets of the span in that passage."""
    confidence: float
    """The span's start + end logits minus those of "no answer" in its window (> 0: the reader
    prefers the span to saying the passage has no answer)."""


@dataclass(frozen=True)
class ReaderInfo:
    """What a reader folder's manifest says."""

    folder: Path
    trained_question_ids: frozenset[str]
    """Questions it was trained on: an evaluation must leave them out (never score on them)."""
    details: dict[str, Any]


def reader_info(folder: Path) -> ReaderInfo:
    """The manifest of a built reader, or ModelError in one sentence when it is not one."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        ids = frozenset(str(i) for i in manifest.get("trained_question_ids", []))
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise ModelError(
            f"{folder} is not a built span reader ({type(exc).__name__}): run `make reader`."
        ) from None
    return ReaderInfo(
        folder, ids, {k: v for k, v in manifest.items() if k != "trained_question_ids"}
    )


class _SentenceIndex:
    """Where a passage's sentences begin and end: an answer span stays inside one of them (an
    unconstrained reader answered "11434 by default. Set OLLAMA_HOST to change the address")."""

    def __init__(self, passage: str) -> None:
        self.bounds = sentence_bounds(passage) or [(0, len(passage))]
        self.starts = [start for start, _ in self.bounds]

    def within_one(self, begin: int, end: int) -> bool:
        """Whether characters begin..end lie in one sentence."""
        at = max(0, bisect.bisect_right(self.starts, begin) - 1)
        return end <= self.bounds[at][1]


class SpanReader:
    """Finds the answer span of a question in passages; loads its model on first use."""

    def __init__(self, folder: Path, *, threads: int = 1) -> None:
        self.info = reader_info(folder)
        self.threads = threads
        self._model: PreTrainedModel | None = None
        self._tokenizer: Any = None  # a fast tokenizer: offsets need one
        self._lock = threading.Lock()  # one read at a time: torch modules are not re-entrant

    @property
    def trained_question_ids(self) -> frozenset[str]:
        """Questions it was trained on: evaluations leave them out."""
        return self.info.trained_question_ids

    def _load(self) -> tuple[PreTrainedModel, Any]:
        if self._model is None or self._tokenizer is None:
            from transformers import AutoModelForQuestionAnswering, AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.info.folder)
                self._model = AutoModelForQuestionAnswering.from_pretrained(self.info.folder)
            except (OSError, ValueError) as exc:
                raise ModelError(
                    f"The span reader in {self.info.folder} cannot be loaded "
                    f"({type(exc).__name__}): run `make reader` to build it again."
                ) from None
            self._model.eval()
        return self._model, self._tokenizer

    def read(self, question: str, passages: Sequence[str]) -> Span | None:
        """The best-scoring answer span of `question` in any of `passages` (None: no passage)."""
        spans = [span for span in self.read_each(question, passages) if span is not None]
        return max(spans, key=lambda span: span.confidence, default=None)

    def read_each(self, question: str, passages: Sequence[str]) -> list[Span | None]:
        """The best answer span of `question` in each of `passages`, in their order (one batch)."""
        import torch

        if not passages:
            return []
        with self._lock:
            model, tokenizer = self._load()
            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)  # beside the chat model's threads, not over them
            try:
                encoded = tokenizer(
                    [question] * len(passages),
                    list(passages),
                    truncation="only_second",
                    max_length=WINDOW_TOKENS,
                    stride=WINDOW_STRIDE,
                    return_overflowing_tokens=True,
                    return_offsets_mapping=True,
                    padding=True,
                    return_tensors="pt",
                )
                offsets = encoded.pop("offset_mapping").tolist()
                owners = encoded.pop("overflow_to_sample_mapping").tolist()
                with torch.inference_mode():
                    output = model(**encoded)
            finally:
                torch.set_num_threads(previous)
        best: list[Span | None] = [None] * len(passages)
        sentences = [_SentenceIndex(passage) for passage in passages]
        for window, owner in enumerate(owners):
            in_passage = [t for t, s in enumerate(encoded.sequence_ids(window)) if s == 1]
            starts = output.start_logits[window].tolist()
            ends = output.end_logits[window].tolist()
            null = starts[0] + ends[0]
            top_starts = sorted(in_passage, key=lambda t: -starts[t])[:_CANDIDATES]
            top_ends = sorted(in_passage, key=lambda t: -ends[t])[:_CANDIDATES]
            for first in top_starts:
                for last in top_ends:
                    if not 0 <= last - first < MAX_SPAN_TOKENS:
                        continue
                    confidence = starts[first] + ends[last] - null
                    found = best[owner]
                    if found is None or confidence > found.confidence:
                        begin, end = whole_words(
                            passages[owner], offsets[window][first][0], offsets[window][last][1]
                        )
                        if not sentences[owner].within_one(begin, end):
                            continue
                        text = passages[owner][begin:end]
                        best[owner] = Span(text, owner, begin, end, confidence)
        return best
