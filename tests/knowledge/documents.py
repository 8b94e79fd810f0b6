"""Build real test documents (PDF, DOCX, HTML, Markdown) on disk."""

from __future__ import annotations

import io
from pathlib import Path

import docx
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter


def make_pdf(path: Path, pages: list[str], title: str = "Field Guide") -> Path:
    """A text PDF with one page per string."""
    pdf = FPDF()
    pdf.set_title(title)
    pdf.set_font("helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    pdf.output(str(path))
    return path


def make_encrypted_pdf(path: Path, source: Path) -> Path:
    """A password-protected copy of `source`."""
    writer = PdfWriter()
    for page in PdfReader(source).pages:
        writer.add_page(page)
    writer.encrypt("secret")
    buffer = io.BytesIO()
    writer.write(buffer)
    path.write_bytes(buffer.getvalue())
    return path


def make_docx(path: Path) -> Path:
    """A DOCX with a title, two headed sections and a table."""
    document = docx.Document()
    document.add_paragraph("Lighthouse Handbook", style="Title")
    document.add_heading("Lamps", level=1)
    document.add_paragraph("The lamp is lit at dusk by the keeper on duty.")
    document.add_heading("Fog", level=1)
    document.add_paragraph("In fog the horn sounds every thirty seconds.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Signal"
    table.cell(0, 1).text = "Meaning"
    table.cell(1, 0).text = "Three blasts"
    table.cell(1, 1).text = "Danger"
    document.save(str(path))
    return path
