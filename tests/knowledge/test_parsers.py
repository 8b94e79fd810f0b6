from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.errors import BadDocumentError
from knowledge.parsers import parse_bytes, parse_file
from tests.knowledge.documents import make_docx, make_encrypted_pdf, make_pdf

LIMIT = 1_000_000


def test_markdown_sections_follow_headings_and_ignore_code_fences(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(
        "# Llama Guide\n\nLlamas hum.\n\n## Food\n\nHay.\n\n```\n# not a heading\n```\n"
    )
    (doc,) = parse_file(path, LIMIT)
    assert doc.title == "Llama Guide"
    headings = [s.heading for s in doc.sections]
    assert headings == ["Llama Guide", "Food"]
    assert "# not a heading" in doc.sections[1].text


def test_html_drops_scripts_and_splits_at_headings(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Tides</title><script>alert('x')</script></head><body>"
        "<h1>Tides</h1><p>Tides follow the moon.</p><style>p{}</style>"
        "<h2>Spring tides</h2><p>They are the largest.</p></body></html>"
    )
    (doc,) = parse_file(path, LIMIT)
    assert doc.title == "Tides"
    assert "alert" not in doc.text and "p{}" not in doc.text
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Tides", "Tides follow the moon."),
        ("Spring tides", "They are the largest."),
    ]


def test_pdf_text_comes_out_page_by_page(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "guide.pdf", ["Owls hunt at night.", "Owls swallow prey whole."])
    (doc,) = parse_file(path, LIMIT)
    assert doc.title == "Field Guide"
    assert [s.heading for s in doc.sections] == ["page 1", "page 2"]
    assert "swallow prey whole" in doc.sections[1].text


def test_docx_headings_and_tables(tmp_path: Path) -> None:
    (doc,) = parse_file(make_docx(tmp_path / "handbook.docx"), LIMIT)
    assert doc.title == "Lighthouse Handbook"
    by_heading = {s.heading: s.text for s in doc.sections}
    assert by_heading["Fog"] == "In fog the horn sounds every thirty seconds."
    assert "Three blasts | Danger" in by_heading["table"]


def test_jsonl_keeps_each_id(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text(
        '{"id": "p-1", "title": "One", "text": "First passage."}\n\n'
        '{"id": "p-2", "title": "Two", "text": "Second passage."}\n'
    )
    docs = parse_file(path, LIMIT)
    assert [(d.external_id, d.title, d.sections[0].text) for d in docs] == [
        ("p-1", "One", "First passage."),
        ("p-2", "Two", "Second passage."),
    ]


def test_text_in_a_legacy_encoding_is_decoded() -> None:
    text = (
        "Le café au lait et la crème brûlée sont très appréciés. Après le déjeuner, "
        "on sert du thé à la menthe, des crêpes et des éclairs au chocolat. Voilà!"
    )
    (doc,) = parse_bytes(text.encode("cp1252"), "menu.txt")
    assert doc.sections[0].text == text


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.exe", b"MZ\x90", "not a supported type"),
        ("empty.txt", b"  \n", "is empty"),
        ("broken.pdf", b"%PDF-1.7\n this is not really a pdf", "not a readable PDF"),
        ("broken.docx", b"PK\x03\x04 not a zip", "not a readable DOCX"),
        ("bad.jsonl", b'{"id": 1, "title": "x"}\n', "line 1 is not a JSON object"),
        ("blank.html", b"<html><script>only()</script></html>", "no readable text"),
    ],
)
def test_bad_files_get_one_clear_sentence(name: str, data: bytes, message: str) -> None:
    with pytest.raises(BadDocumentError, match=message):
        parse_bytes(data, name)


def test_password_protected_pdf_is_refused(tmp_path: Path) -> None:
    plain = make_pdf(tmp_path / "plain.pdf", ["Secret plans."])
    locked = make_encrypted_pdf(tmp_path / "locked.pdf", plain)
    with pytest.raises(BadDocumentError, match="password-protected"):
        parse_file(locked, LIMIT)


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("x" * 2_000)
    with pytest.raises(BadDocumentError, match=r"over the 0\.0 MB limit"):
        parse_file(path, max_bytes=1_000)


def test_mdx_is_read_as_markdown_without_its_components() -> None:
    """MDX, as most documentation sites ship it: front matter names it, component tags go,
    their text stays, and code is left exactly as written."""
    mdx = (
        b'---\ntitle: Setup guide\nsidebar: 2\n---\nimport Tabs from "@site/tabs"\n\n'
        b"## Install\n\n<Note>\n  Run the installer as root.\n</Note>\n\n"
        b'<Tabs.Item title="Linux">Use `apt`.</Tabs.Item> {/* a comment */}\n\n'
        b"```jsx\n<Button onClick={go}>Go</Button>\n```\n"
    )
    (doc,) = parse_bytes(mdx, "setup.mdx")
    assert doc.title == "Setup guide"
    assert [s.heading for s in doc.sections] == ["Install"]
    text = doc.sections[0].text
    assert "Run the installer as root." in text and "Use `apt`." in text
    assert "<Note>" not in text and "Tabs" not in text and "comment" not in text
    assert "<Button onClick={go}>Go</Button>" in text


def test_front_matter_names_a_markdown_file_without_a_top_heading() -> None:
    (doc,) = parse_bytes(b"---\ntitle: Opening hours\n---\n\nWe open at 8.\n", "hours.md")
    assert doc.title == "Opening hours" and doc.sections[0].text == "We open at 8."
    # A rule line that is not front matter is text as usual.
    (plain,) = parse_bytes(b"Intro.\n\n---\n\nMore.\n", "notes.md")
    assert plain.title == "notes" and "More." in plain.sections[0].text


def test_a_real_mdx_faq_reads_into_its_sections() -> None:
    """Ollama's FAQ (tests/documents, MIT): every question a section, no component left."""
    faq = Path(__file__).resolve().parents[1] / "documents" / "ollama_faq.mdx"
    (doc,) = parse_bytes(faq.read_bytes(), faq.name)
    headings = [s.heading for s in doc.sections]
    assert doc.title == "FAQ" and "How do I use Ollama behind a proxy?" in headings
    assert not any(tag in doc.text for tag in ("<Note>", "</Note>", "<Info>"))
    assert "Avoid setting `HTTP_PROXY`." in doc.text
