"""Turn files into plain-text documents split into headed sections, using well-kept parsers."""

from __future__ import annotations

import io
import json
import re
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from knowledge.errors import BadDocumentError

if TYPE_CHECKING:
    from markdown_it.token import Token


@dataclass(frozen=True)
class Section:
    """A run of text under one heading ("" when the document has none)."""

    heading: str
    text: str


@dataclass(frozen=True)
class ParsedDocument:
    """A document's title and sections; `external_id` is set when the source names it."""

    title: str
    sections: tuple[Section, ...]
    external_id: str | None = None

    @property
    def text(self) -> str:
        """All section text, headings included, as one string (what the content hash covers)."""
        parts = [self.title]
        for section in self.sections:
            parts.extend(p for p in (section.heading, section.text) if p)
        return "\n\n".join(parts)


MAX_PDF_PAGES = 2_000
"""More pages than this is refused before any text is extracted."""
MAX_UNPACKED_BYTES = 200_000_000
"""A DOCX (a zip) that unpacks to more than this is refused unopened: a zip bomb."""
MAX_ARCHIVE_MEMBERS = 10_000

# What a file's first bytes say it is, for refusing e.g. a PDF sent as .txt.
_SIGNATURES = {
    b"%PDF-": "a PDF",
    b"PK\x03\x04": "a ZIP archive (DOCX, XLSX...)",
    b"\x7fELF": "a program",
    b"MZ": "a Windows program",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\x1f\x8b": "a gzip archive",
    b"Rar!": "a RAR archive",
    b"7z\xbc\xaf": "a 7z archive",
    b"\xd0\xcf\x11\xe0": "an old Office file (DOC, XLS)",
}
_TEXT_SUFFIXES = frozenset({".txt", ".md", ".mdx", ".markdown", ".html", ".htm", ".jsonl"})
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _kind(data: bytes) -> str | None:
    """What the leading bytes say the file is (None: no known binary signature)."""
    return next((kind for magic, kind in _SIGNATURES.items() if data.startswith(magic)), None)


def check_contents(data: bytes, name: str) -> None:
    """Refuse bytes that are not what the extension of `name` says, or a zip bomb."""
    suffix = Path(name).suffix.lower()
    kind = _kind(data)
    if suffix == ".pdf":
        if b"%PDF-" not in data[:1024]:
            raise BadDocumentError(f"{name} is not a PDF ({kind or 'no PDF header'}).")
    elif suffix == ".docx":
        if not data.startswith(b"PK\x03\x04"):
            raise BadDocumentError(f"{name} is not a DOCX file ({kind or 'not a ZIP archive'}).")
        _check_archive(data, name)
    elif suffix in _TEXT_SUFFIXES and not data.startswith(_UTF16_BOMS):
        if kind is not None:
            raise BadDocumentError(f"{name} is {kind}, not {suffix} text; nothing was read.")
        if b"\0" in data[:65536]:
            raise BadDocumentError(f"{name} holds binary data, not {suffix} text.")


def _check_archive(data: bytes, name: str) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise BadDocumentError(f"{name} is not a readable DOCX file ({exc}).") from None
    # zipfile never returns more than a member's declared size, so the headers can be trusted.
    unpacked = sum(member.file_size for member in members)
    if len(members) > MAX_ARCHIVE_MEMBERS or unpacked > MAX_UNPACKED_BYTES:
        raise BadDocumentError(
            f"{name} unpacks to {unpacked / 1e6:,.0f} MB in {len(members)} parts, over the "
            f"{MAX_UNPACKED_BYTES / 1e6:,.0f} MB limit; it looks like a zip bomb."
        )


_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")


def clean_text(text: str) -> str:
    """NFC-normalise, drop control characters, collapse spaces, keep paragraph breaks."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _document(title: str, sections: list[Section], name: str) -> ParsedDocument:
    kept = tuple(
        Section(clean_text(s.heading), clean_text(s.text)) for s in sections if clean_text(s.text)
    )
    if not kept:
        raise BadDocumentError(f"{name} has no readable text.")
    return ParsedDocument(title=clean_text(title) or name, sections=kept)


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
        if best is None:
            raise BadDocumentError(f"{name} is not text in any encoding we can read.") from None
        return str(best)


def parse_mdx(data: bytes, name: str) -> list[ParsedDocument]:
    """MDX (Markdown with JSX components, as most documentation sites ship it): read as
    Markdown, component tags dropped and their text kept."""
    named, source = _front_matter(_decode(data, name))
    return _markdown_document(_without_jsx(source), name, named)


def parse_txt(data: bytes, name: str) -> list[ParsedDocument]:
    """Plain text: one section, titled by the file name."""
    return [_document(Path(name).stem, [Section("", _decode(data, name))], name)]


# YAML front matter ("---" lines around it) at the very start, as Jekyll, Hugo and MDX sites
# write it; its `title` names the document when no level-1 heading does.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.S)
# MDX: components are capitalised tags (<Note>, <Tabs.Item title="x">, <Info/>); lowercase
# tags are HTML, which Markdown keeps. ESM lines and {/* comments */} are code, not text.
_JSX_TAG = re.compile(r"</?[A-Z][\w.]*(?:\s[^<>]*?)?/?>")
_MDX_ESM = re.compile(r"^(?:import|export)\s")
_MDX_COMMENT = re.compile(r"\{/\*.*?\*/\}")


def _front_matter(source: str) -> tuple[str | None, str]:
    """(the front matter's title, the text with the front matter blanked, lines kept)."""
    import yaml

    found = _FRONT_MATTER.match(source)
    if found is None:
        return None, source
    try:
        meta = yaml.safe_load(found[1])
    except yaml.YAMLError:
        return None, source  # not front matter after all: leave the text as written
    title = meta.get("title") if isinstance(meta, dict) else None
    rest = "\n" * found[0].count("\n") + source[found.end() :]
    return (str(title) if isinstance(title, str | int | float) else None), rest


def _code_lines(tokens: list[Token]) -> set[int]:
    """Line numbers inside fenced or indented code (left exactly as written)."""
    return {
        line
        for token in tokens
        if token.type in ("fence", "code_block") and token.map is not None
        for line in range(*token.map)
    }


def _without_jsx(source: str) -> str:
    """MDX read as Markdown: component tags, ESM lines and comments dropped, outside code."""
    from markdown_it import MarkdownIt

    code = _code_lines(MarkdownIt("commonmark").parse(source))
    lines = source.split("\n")
    for number, line in enumerate(lines):
        if number in code:
            continue
        if _MDX_ESM.match(line):
            lines[number] = ""
        else:
            lines[number] = _JSX_TAG.sub("", _MDX_COMMENT.sub("", line))
    return "\n".join(lines)


def parse_markdown(data: bytes, name: str) -> list[ParsedDocument]:
    """Markdown: a section per heading; the first level-1 heading (else the front matter's
    title) is the title."""
    named, source = _front_matter(_decode(data, name))
    return _markdown_document(source, name, named)


def _markdown_document(source: str, name: str, named: str | None) -> list[ParsedDocument]:
    from markdown_it import MarkdownIt

    lines = source.splitlines()
    tokens = MarkdownIt("commonmark").parse(source)
    headings: list[tuple[int, int, str, str]] = []  # (first line, end line, tag, text)
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.map is not None:
            headings.append((token.map[0], token.map[1], token.tag, tokens[i + 1].content))
    title = next((text for _, _, tag, text in headings if tag == "h1"), named or Path(name).stem)
    sections: list[Section] = []
    cursor, heading = 0, ""
    for start, end, _, text in headings:
        sections.append(Section(heading, "\n".join(lines[cursor:start])))
        cursor, heading = end, text
    sections.append(Section(heading, "\n".join(lines[cursor:])))
    return [_document(title, sections, name)]


_HEADING_MARK = "\u2063HEADING\u2063"


def parse_html(data: bytes, name: str) -> list[ParsedDocument]:
    """HTML: scripts and styles dropped, a section per h1-h6, title from <title> or <h1>."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_decode(data, name), "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "svg", "head"]):
        if tag.name == "head" and tag.title is not None:
            continue
        tag.decompose()
    title_tag = soup.find("title")
    title_source = title_tag or soup.find("h1")
    title = title_source.get_text(" ", strip=True) if title_source else Path(name).stem
    if title_tag is not None:
        title_tag.decompose()
    for heading in soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6"]):
        heading.replace_with(f"\n{_HEADING_MARK}{heading.get_text(' ', strip=True)}\n")
    sections: list[Section] = []
    heading_text, buffer = "", list[str]()
    for line in soup.get_text("\n").split("\n"):
        if line.startswith(_HEADING_MARK):
            sections.append(Section(heading_text, "\n".join(buffer)))
            heading_text, buffer = line.removeprefix(_HEADING_MARK), []
        else:
            buffer.append(line)
    sections.append(Section(heading_text, "\n".join(buffer)))
    return [_document(title, sections, name)]


def parse_pdf(data: bytes, name: str) -> list[ParsedDocument]:
    """PDF: a section per page (headed "page N"), title from metadata or the file name."""
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise BadDocumentError(f"{name} is password-protected; send an unprotected copy.")
        if (pages := len(reader.pages)) > MAX_PDF_PAGES:
            raise BadDocumentError(
                f"{name} has {pages:,} pages, over the {MAX_PDF_PAGES:,}-page limit; split it."
            )
        sections = [
            Section(f"page {number}", page.extract_text() or "")
            for number, page in enumerate(reader.pages, start=1)
        ]
        meta_title = reader.metadata.title if reader.metadata else None
    except BadDocumentError:
        raise
    except LimitReachedError:
        raise BadDocumentError(
            f"{name} holds a stream that unpacks past pypdf's safety limit; it looks like a "
            "decompression bomb."
        ) from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise BadDocumentError(f"{name} is not a readable PDF ({exc}).") from None
    return [_document(meta_title or Path(name).stem, sections, name)]


def parse_docx(data: bytes, name: str) -> list[ParsedDocument]:
    """DOCX: a section per Heading-styled paragraph; tables read row by row."""
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise BadDocumentError(f"{name} is not a readable DOCX file ({exc}).") from None
    title = document.core_properties.title or ""
    sections: list[Section] = []
    heading, buffer = "", list[str]()
    for paragraph in document.paragraphs:
        style = paragraph.style.name if paragraph.style is not None else ""
        if style == "Title" and not title:
            title = paragraph.text
        elif style.startswith("Heading"):
            sections.append(Section(heading, "\n".join(buffer)))
            heading, buffer = paragraph.text, []
        else:
            buffer.append(paragraph.text)
    sections.append(Section(heading, "\n".join(buffer)))
    for table in document.tables:
        rows = [" | ".join(cell.text for cell in row.cells) for row in table.rows]
        sections.append(Section("table", "\n".join(rows)))
    return [_document(title or Path(name).stem, sections, name)]


def parse_jsonl(data: bytes, name: str) -> list[ParsedDocument]:
    """The eval corpus format: one `{"id", "title", "text"}` object per line, `id` kept."""
    documents = []
    for number, line in enumerate(_decode(data, name).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            doc_id, text = str(row["id"]), str(row["text"])
            title = str(row.get("title") or doc_id)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise BadDocumentError(
                f"{name} line {number} is not a JSON object with id, title and text ({exc})."
            ) from None
        parsed = _document(title, [Section("", text)], f"{name} line {number}")
        documents.append(ParsedDocument(parsed.title, parsed.sections, external_id=doc_id))
    if not documents:
        raise BadDocumentError(f"{name} has no documents.")
    return documents


PARSERS: dict[str, Callable[[bytes, str], list[ParsedDocument]]] = {
    ".txt": parse_txt,
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".mdx": parse_mdx,
    ".html": parse_html,
    ".htm": parse_html,
    ".pdf": parse_pdf,
    ".docx": parse_docx,
    ".jsonl": parse_jsonl,
}
SUPPORTED_SUFFIXES = tuple(sorted(PARSERS))


def parse_bytes(data: bytes, name: str) -> list[ParsedDocument]:
    """Parse a file's bytes, choosing the parser by the extension of `name`."""
    suffix = Path(name).suffix.lower()
    parser = PARSERS.get(suffix)
    if parser is None:
        raise BadDocumentError(
            f"{name}: {suffix or 'no extension'} is not a supported type "
            f"({', '.join(SUPPORTED_SUFFIXES)})."
        )
    if not data.strip():
        raise BadDocumentError(f"{name} is empty.")
    check_contents(data, name)
    return parser(data, name)


Parser = Callable[[bytes, str], list[ParsedDocument]]


def printable(text: str) -> str:
    """`text` with bytes that were not UTF-8 (in file names, command lines) shown as \\xNN.

    Python keeps such bytes as lone surrogates, which SQLite, JSON and terminals all refuse.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


_UNSEEN = {0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029}
"""Characters that move or hide what follows them on a terminal (bidi controls, line breaks)."""


def path_text(text: str) -> str:
    """A file name or path fit to store and to print on one line, one text per name: bytes that
    were not UTF-8 as \\xNN (as `printable` writes them), control and bidi characters as
    \\uNNNN, and a backslash as two, so that a name that holds "\\xe9" as written and one that
    holds the byte 0xE9 never read the same, and a newline in a name cannot start a line."""
    doubled = text.replace("\\", "\\\\")
    return one_line(doubled.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))


def one_line(text: str) -> str:
    """`text` with control and bidi characters shown as \\uNNNN: printed, it stays one line and
    reads in the order it is written (a name cannot forge a line of output below it)."""
    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) == "Cc" or ord(c) in _UNSEEN else c
        for c in text
    )


def too_big(name: str, size: int, max_bytes: int) -> BadDocumentError:
    """The refusal of a file over the document size limit."""
    return BadDocumentError(
        f"{name} is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB limit "
        "(RAGTUNE_MAX_DOCUMENT_BYTES)."
    )


def parse_file(path: Path, max_bytes: int, parse: Parser | None = None) -> list[ParsedDocument]:
    """Parse `path` with `parse` (default `parse_bytes`); refuse it unread if over `max_bytes`."""
    name = printable(path.name)
    if path.suffix.lower() not in PARSERS:
        return parse_bytes(b"", name)  # raises the unsupported-type error
    size = path.stat().st_size
    if size > max_bytes:
        raise too_big(name, size, max_bytes)
    return (parse or parse_bytes)(path.read_bytes(), name)


TITLE_CHARS = 80
"""Longest title taken from a document's first heading or line."""


def parse_web_page(data: bytes, name: str) -> list[ParsedDocument]:
    """A fetched HTML page: its main text as Markdown (trafilatura leaves menus, footers and
    ads out; text hidden from its readers is taken out first), titled by the page's own title;
    `name` (its URL) when it has none."""
    # Imported here: only the parsing child of a page fetch needs them.
    import trafilatura
    from trafilatura.utils import load_html

    from knowledge.visible import drop_hidden

    if not data.strip():
        raise BadDocumentError(f"{name} is empty.")
    tree = load_html(data)  # decoded as trafilatura decodes a page
    if tree is None:
        raise BadDocumentError(f"{name} has no main text to read.")
    drop_hidden(tree)
    text = trafilatura.extract(
        tree, output_format="markdown", include_comments=False, include_tables=True,
        include_formatting=True, favor_precision=True,
    )  # fmt: skip
    if not text or not text.strip():
        raise BadDocumentError(f"{name} has no main text to read.")
    metadata = trafilatura.extract_metadata(data)
    title = (metadata.title if metadata is not None else None) or name
    return [replace(d, title=title) for d in parse_markdown(text.encode("utf-8"), name)]


def titled_from_text(document: ParsedDocument, placeholder: str) -> ParsedDocument:
    """`document` titled by its first heading or line when its title is only `placeholder` (the
    stand-in file name an upload is parsed under)."""
    if document.title != placeholder:
        return document
    first = next(
        (
            line.strip()
            for section in document.sections
            for line in (section.heading, *section.text.splitlines())
            if line.strip()
        ),
        placeholder,
    )
    title = first if len(first) <= TITLE_CHARS else first[: TITLE_CHARS - 1].rstrip() + "…"
    return ParsedDocument(title, document.sections, document.external_id)
