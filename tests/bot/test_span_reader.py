"""The real span reader, as `make reader` built it: it points at answers, in the sentence that
holds them, and is surer where the answer is than where it is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.llm.engine import ModelError
from bot.llm.span_reader import MANIFEST, SpanReader, default_reader_dir, reader_info
from tuning.reader import DATA_DIR, is_current

HOURS = "The café is open from 8 am to 6 pm on weekdays and from 9 am to 4 pm on Saturdays."
CARDS = "The café takes cards and phone payments. It does not accept cash."


@pytest.fixture(scope="module")
def reader() -> SpanReader:
    folder = default_reader_dir()
    assert is_current(folder), f"no current span reader in {folder}: run `make reader`"
    return SpanReader(folder)


def test_the_reader_points_at_the_answer_in_the_passage_that_holds_it(reader: SpanReader) -> None:
    span = reader.read("When does the café open on Saturdays?", [CARDS, HOURS])
    assert span is not None and span.passage == 1
    assert "9 am" in span.text and HOURS[span.start : span.end] == span.text
    assert span.confidence > 0


def test_it_is_surer_where_the_answer_is(reader: SpanReader) -> None:
    question = "How can I pay?"
    there = reader.read(question, [CARDS])
    elsewhere = reader.read(question, [HOURS])
    assert there is not None and elsewhere is not None
    assert "cards" in there.text and there.confidence > elsewhere.confidence


def test_it_lists_the_questions_it_trained_on(reader: SpanReader) -> None:
    rows = [json.loads(line) for line in (DATA_DIR / "questions.jsonl").open()]
    assert reader.trained_question_ids == {row["id"] for row in rows}


def test_a_folder_that_is_no_reader_is_said_in_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"is not a built span reader.*make reader"):
        reader_info(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(ModelError, match="is not a built span reader"):
        SpanReader(tmp_path)
    assert not is_current(tmp_path)
