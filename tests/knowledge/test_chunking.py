from __future__ import annotations

import itertools
from pathlib import Path

from knowledge.chunking import chunk_document, sentence_bounds, split_sentences
from knowledge.parsers import ParsedDocument, Section, parse_bytes

SENTENCES = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(40)]


def _doc(text: str, heading: str = "") -> ParsedDocument:
    return ParsedDocument("Manual", (Section(heading, text),))


def test_sentences_split_at_full_stops_and_line_breaks() -> None:
    text = "Dr. Who went home. It rained!\nNext line? 中文句子。第二句。"
    assert split_sentences(text) == [
        "Dr. Who went home.",
        "It rained!",
        "Next line?",
        "中文句子。",
        "第二句。",
    ]


def test_chunks_hold_whole_sentences_within_the_size_limit() -> None:
    chunks = chunk_document(_doc(" ".join(SENTENCES)), max_chars=200, overlap_chars=60)
    assert len(chunks) > 5
    for chunk in chunks:
        assert len(chunk.text) <= 200
        assert all(part.endswith(".") for part in split_sentences(chunk.text))
        assert set(split_sentences(chunk.text)) <= set(SENTENCES)
    covered = {s for c in chunks for s in split_sentences(c.text)}
    assert covered == set(SENTENCES)  # nothing lost


def test_neighbouring_chunks_overlap_by_a_sentence() -> None:
    chunks = chunk_document(_doc(" ".join(SENTENCES)), max_chars=200, overlap_chars=60)
    for first, second in itertools.pairwise(chunks):
        assert split_sentences(first.text)[-1] == split_sentences(second.text)[0]


def test_heading_and_title_stay_with_every_chunk() -> None:
    chunks = chunk_document(_doc(" ".join(SENTENCES), "Safety"), max_chars=200)
    assert {c.heading for c in chunks} == {"Manual › Safety"}
    assert all(c.embed_text.startswith("Manual › Safety\n") for c in chunks)
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_chunking_is_deterministic() -> None:
    doc = _doc(" ".join(SENTENCES))
    assert chunk_document(doc) == chunk_document(doc)
    assert [c.hash for c in chunk_document(doc)] == [c.hash for c in chunk_document(doc)]


def test_overlong_sentences_and_unspaced_scripts_are_cut_to_size() -> None:
    long_word_text = "word " * 300 + "end."
    chinese = "这是一个没有标点的很长的句子" * 40
    for text in (long_word_text, chinese):
        chunks = chunk_document(_doc(text), max_chars=120, overlap_chars=0)
        assert all(len(c.text) <= 120 for c in chunks)
        assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")


def test_runs_of_tiny_sections_share_chunks_and_keep_their_headings() -> None:
    sections = tuple(Section(f"Rule {i}", f"word{i}") for i in range(500))  # a 5.8 KB file
    chunks = chunk_document(ParsedDocument("Rules", sections))
    assert len(chunks) <= 20
    joined = " ".join(c.text for c in chunks)
    assert all(f"Rule {i}: word{i}" in joined for i in range(500))  # nothing lost
    assert all(len(c.text) <= 500 and c.heading == "Rules" for c in chunks)


def test_sections_with_something_to_say_stay_chunks_of_their_own() -> None:
    faq = (Path(__file__).parents[2] / "knowledge/examples/cafe_faq.md").read_bytes()
    (document,) = parse_bytes(faq, "cafe_faq.md")
    chunks = chunk_document(document)
    assert [c.heading.split(" › ")[-1] for c in chunks] == [s.heading for s in document.sections]


def test_a_lone_tiny_section_keeps_its_own_heading() -> None:
    long_text = " ".join(SENTENCES[:8])
    document = ParsedDocument(
        "Manual", (Section("Intro", long_text), Section("Note", "Oil weekly."),
                   Section("Parts", long_text))
    )  # fmt: skip
    headings = [c.heading for c in chunk_document(document)]
    assert "Manual › Note" in headings


def test_a_lead_in_stays_with_the_code_or_list_it_introduces() -> None:
    """ "To unload it, use:" never ends a chunk while what it introduces starts the next; a
    fenced block is cut only when it alone is over a chunk."""
    filler = " ".join(SENTENCES[:6])
    text = (
        f"{filler}\nTo see what is loaded, use the `ollama ps` command:\n```shell\nollama ps\n"
        "ollama ps --verbose\n```\nThe Processor column says where it is loaded:\n"
        "- 100% GPU means on the GPU\n- 100% CPU means in memory"
    )
    chunks = chunk_document(_doc(text), max_chars=420, overlap_chars=60)
    assert len(chunks) > 1
    for chunk in chunks:
        assert not chunk.text.endswith(":"), chunk.text
    with_code = next(c for c in chunks if "ollama ps --verbose" in c.text)
    assert "use the `ollama ps` command: ```shell ollama ps ollama ps --verbose ```" in (
        with_code.text
    )
    with_list = next(c for c in chunks if "100% GPU" in c.text)
    assert "The Processor column says where it is loaded: - 100% GPU" in with_list.text


def test_sentence_bounds_are_where_each_sentence_lies_in_the_text() -> None:
    text = "Dr. Smith opened the clinic.  It closes at 6 pm!\nAsk at the desk"
    bounds = sentence_bounds(text)
    assert [text[start:end] for start, end in bounds] == split_sentences(text)
    assert [text[start:end] for start, end in bounds] == [
        "Dr. Smith opened the clinic.",
        "It closes at 6 pm!",
        "Ask at the desk",
    ]
    assert sentence_bounds("") == []
