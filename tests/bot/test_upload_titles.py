"""Uploads are titled by their first heading or line and labelled with the sender's file name."""

from __future__ import annotations

from bot.core.admin import LABEL_CHARS, file_label
from knowledge.parsers import TITLE_CHARS, parse_bytes, titled_from_text


def test_a_document_titled_only_by_the_stand_in_name_takes_its_first_heading_or_line() -> None:
    markdown = parse_bytes(b"Intro line.\n\n## Opening hours\nFrom 8 am.", "upload.md")[0]
    assert titled_from_text(markdown, "upload").title == "Intro line."
    headed = parse_bytes(b"## Opening hours\nFrom 8 am.", "upload.md")[0]
    assert titled_from_text(headed, "upload").title == "Opening hours"
    text = parse_bytes(b"\n\n  Menu of the week  \nSoup.", "upload.txt")[0]
    assert titled_from_text(text, "upload").title == "Menu of the week"
    long = parse_bytes(("word " * 60).encode(), "upload.txt")[0]
    title = titled_from_text(long, "upload").title
    assert len(title) == TITLE_CHARS and title.endswith("…")


def test_a_document_with_a_title_of_its_own_keeps_it() -> None:
    titled = parse_bytes(b"# Harbour Street Cafe\nOpen daily.", "upload.md")[0]
    assert titled_from_text(titled, "upload").title == "Harbour Street Cafe"


def test_a_file_name_label_keeps_no_folders_no_control_characters_and_a_bounded_length() -> None:
    assert file_label("../../etc/pass\nwd.txt") == "passwd.txt"
    assert file_label("C:\\Users\\ann\\menu.pdf") == "menu.pdf"
    assert file_label("") == ""
    assert len(file_label("a" * 500 + ".md")) == LABEL_CHARS
