"""The real span reader, as `make reader` built it: it points at answers, in the sentence that
holds them, and is surer where the answer is than where it is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.llm.engine import ModelError
from bot.llm.span_reader import (
    MANIFEST,
    SpanReader,
    default_reader_dir,
    reader_info,
    whole_words,
)
from knowledge.chunking import sentence_bounds
from tuning.reader import DATA_DIR, is_current

HOURS = "The café is open from 8 am to 6 pm on weekdays and from 9 am to 4 pm on Saturdays."
CARDS = "The café takes cards and phone payments. It does not accept cash."


@pytest.fixture(scope="module")
def reader() -> SpanReader:
    folder = default_reader_dir()
    assert is_current(folder), f"no current span reader in {folder}: run `make reader`"
    return SpanReader(folder)


def test_the_reader_points_at_the_answer_in_the_passage_that_holds_it(
    reader: SpanReader, request: pytest.FixtureRequest
) -> None:
    # Same recipe and seed, different arithmetic: the reader trained under bfloat16 autocast
    # (CPUs with AVX512-BF16 or AMX) answers "9 am to 4 pm"; the one trained in float32 (this
    # project's CI and 2-core dev machines) answers the weekday hours, 13.3 against 12.3 for the
    # span that runs on to Saturdays. Strict: a float32 build that gets it right fails this mark.
    request.applymarker(
        pytest.mark.xfail(
            not reader.info.details.get("bfloat16_autocast"),
            reason="issue 37: the float32-trained reader answers the weekday hours",
            strict=True,
        )
    )
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


COMPANY = "The company was founded by Maria Lopez in 1998. It now employs 40 people."
MUSEUM = "Entry to the museum is free for children. Adults pay 12 euros."
TOWN = "The town lies on the river Ouse. Its bridge dates from 1820."
# Short chunks of plain facts, as an FAQ or a note is cut, with the answer anywhere in them.
# Written before the reader was trained on short crops; not used to tune anything.
PLAIN_FACTS = [
    ("What is the capital of Estonia?",
     "The capital of Estonia is Tallinn. Tallinn has a medieval old town.", "Tallinn"),
    ("Who founded the company?", COMPANY, "Maria Lopez"),
    ("How many people does the company employ?", COMPANY, "40"),
    ("When was the company founded?", COMPANY, "1998"),
    ("What is the library's phone number?",
     "You can reach the library at 555-0142. It is closed on public holidays.", "555-0142"),
    ("Which file holds the settings?",
     "All settings live in config.toml. Edit it and restart the service.", "config.toml"),
    ("What does the museum cost for children?", MUSEUM, "free"),
    ("How much do adults pay?", MUSEUM, "12 euros"),
    ("What is the river called?", TOWN, "Ouse"),
    ("When was the bridge built?", TOWN, "1820"),
    ("Which command lists the running containers?",
     "Run docker ps to list the running containers. Add -a to see stopped ones too.", "docker ps"),
    ("What is the tallest mountain in Japan?",
     "Mount Fuji is the tallest mountain in Japan. It is an active volcano.", "Mount Fuji"),
]  # fmt: skip


def test_plain_facts_in_short_chunks_are_found_and_a_span_stays_in_one_sentence(
    reader: SpanReader,
) -> None:
    right = []
    for question, passage, answer in PLAIN_FACTS:
        span = reader.read(question, [passage])
        assert span is not None
        bounds = sentence_bounds(passage)
        assert any(start <= span.start and span.end <= end for start, end in bounds), span
        print(f"{span.confidence:5.1f} {question} -> {span.text!r}")
        right.append(answer.lower() in span.text.lower() and len(span.text) < 3 * len(answer) + 10)
    assert sum(right) >= 10, right


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


@pytest.mark.parametrize(
    ("text", "piece", "term"),
    [
        ("All settings live in config.toml. Edit it.", "toml", "config.toml"),
        ("Call 555-0142 today.", "0142", "555-0142"),
        ("Revenue was $12,500 in 2019, up 3.5%.", "500", "12,500"),
        ("It rose by 3.5% last year.", "5", "3.5"),
        ("Luther's theses were posted.", "Luther", "Luther"),
        ("It reached Paris,London and Rome.", "Paris", "Paris"),
        ("马丁·路德于1517年发表论纲。", "1517", "1517"),
        ("马丁·路德于1517年发表论纲。", "路德", "路德"),
    ],
)
def test_a_span_is_widened_to_the_whole_terms_it_cuts_and_no_further(
    text: str, piece: str, term: str
) -> None:
    begin = text.index(piece)
    start, end = whole_words(text, begin, begin + len(piece))
    assert text[start:end] == term
