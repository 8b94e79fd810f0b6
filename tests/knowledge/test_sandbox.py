"""Untrusted files are parsed in a child process that cannot take the bot's memory or CPU."""

from __future__ import annotations

import time

import pytest

from knowledge.errors import BadDocumentError
from knowledge.parsers import parse_bytes
from knowledge.sandbox import ParseLimits, parse_batch_isolated, parse_isolated
from tests.hostile_files import CANARIES, HTML_WITH_SCRIPTS, pdf

SLOW_HTML = b"<html><body>" + b"<div><p>word <b>bold</b> <i>it</i></p></div>" * 200_000


def test_the_child_parses_like_the_parent() -> None:
    samples = [(pdf(text="The ferry leaves at noon."), "a.pdf"), (HTML_WITH_SCRIPTS, "a.html"),
               ("# T\n\nÜber *alles*".encode(), "a.md")]  # fmt: skip
    for data, name in samples:
        assert parse_isolated(data, name) == parse_bytes(data, name)
    assert not any(c in parse_isolated(HTML_WITH_SCRIPTS, "a.html")[0].text for c in CANARIES)


def test_the_memory_limit_stops_a_bomb_inside_the_child(hostile: dict[str, bytes]) -> None:
    with pytest.raises(BadDocumentError, match="more than 120 MB of memory"):
        parse_isolated(hostile["pdf decompression bomb"], "bomb.pdf", ParseLimits(memory_mb=120))


def test_the_cpu_limit_stops_a_slow_parse() -> None:
    started = time.monotonic()
    with pytest.raises(BadDocumentError, match=r"more than 1 s of CPU time .*RAGTUNE_PARSE_CPU_S"):
        parse_isolated(SLOW_HTML, "slow.html", ParseLimits(cpu_s=1))
    assert time.monotonic() - started < 5
    assert parse_isolated(SLOW_HTML[:50_000] + b"</body>", "fine.html")  # the same, smaller, reads


def test_the_output_limit_refuses_a_file_with_too_much_text() -> None:
    with pytest.raises(BadDocumentError, match=r"5,005 characters of text, over the 1,000 limit"):
        parse_isolated(b"word " * 1000, "long.txt", ParseLimits(max_chars=1000))


@pytest.mark.parametrize(
    ("kind", "name", "refusal"),
    [
        ("docx zip bomb", "a.docx", "it looks like a zip bomb"),
        ("pdf decompression bomb", "a.pdf", "looks like a decompression bomb"),
        ("pdf 5000 pages", "a.pdf", "5,000 pages, over the 2,000-page limit"),
        ("pdf password", "a.pdf", "password-protected"),
        ("pdf broken xref", "a.txt", "is a PDF, not .txt text"),
        ("pdf broken xref", "a.docx", r"is not a DOCX file \(a PDF\)"),
    ],
)
def test_hostile_documents_are_refused_in_one_sentence(
    hostile: dict[str, bytes], kind: str, name: str, refusal: str
) -> None:
    with pytest.raises(BadDocumentError, match=refusal):
        parse_isolated(hostile[kind], name)


def test_a_broken_xref_is_recovered_and_binary_text_files_are_refused(
    hostile: dict[str, bytes],
) -> None:
    (document,) = parse_isolated(hostile["pdf broken xref"], "a.pdf")
    assert "The ferry leaves at noon." in document.text
    for data, kind in [(b"\x7fELF\x02\x01\x01" + bytes(64), "is a program"),
                       (b"notes\0\0\0binary", "holds binary data")]:  # fmt: skip
        with pytest.raises(BadDocumentError, match=kind):
            parse_isolated(data, "notes.md")
    assert parse_isolated("é".encode("utf-16"), "utf16.txt")[0].text.endswith("é")  # NULs, yet text


def test_a_batch_parses_like_files_alone_and_one_bad_file_fails_alone() -> None:
    files = [(f"# Note {n}\n\nThe ferry leaves at {n} o'clock.".encode(), f"n{n}.md")
             for n in range(5)]  # fmt: skip
    files.insert(2, (b"PK\x03\x04 not a docx", "broken.docx"))
    results = parse_batch_isolated(files)
    for (data, name), result in zip(files, results, strict=True):
        if name == "broken.docx":
            assert isinstance(result, BadDocumentError) and "broken.docx" in str(result)
        else:
            assert result == parse_bytes(data, name)


def test_a_batch_whose_child_dies_is_parsed_again_one_file_per_child(
    hostile: dict[str, bytes],
) -> None:
    """A memory bomb among small files (the batch child dies, or survives it): only the bomb is
    refused."""
    files = [(b"Plain words for the knowledge base.", f"ok{n}.txt") for n in range(3)]
    files.append((hostile["pdf decompression bomb"], "bomb.pdf"))
    results = parse_batch_isolated(files, ParseLimits(memory_mb=120, cpu_s=5))
    assert all(isinstance(r, list) and r[0].sections for r in results[:3])
    assert isinstance(results[3], BadDocumentError) and "bomb.pdf" in str(results[3])
