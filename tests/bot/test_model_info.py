"""The GGUF header reader against the real models and against broken or hostile headers."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from bot.llm.catalogue import Catalogue
from bot.llm.engine import ModelError
from bot.llm.model_files import packaged_gguf_path
from bot.llm.model_info import read_gguf_header, read_model_info


def header(*, version: int = 3, key_length: int | None = None, endian: str = "<") -> bytes:
    """A one-key GGUF header (general.architecture = "llama") and no tensors."""
    key, value = b"general.architecture", b"llama"
    return (
        b"GGUF" + struct.pack(endian + "IQQ", version, 0, 1)
        + struct.pack("<Q", key_length if key_length is not None else len(key)) + key
        + struct.pack("<IQ", 8, len(value)) + value
    )  # fmt: skip


def test_the_packaged_models_header_matches_what_llama_cpp_reports() -> None:
    path = packaged_gguf_path()
    assert path is not None
    fields, parameters = read_gguf_header(path, {"general.architecture"}, "context_length")
    # llama.cpp's llama_model_n_params and the GGUF's metadata say the same.
    assert fields == {"general.architecture": "llama", "llama.context_length": 8192}
    assert parameters == 134_515_008


def test_a_well_formed_minimal_header_reads(tmp_path: Path) -> None:
    file = tmp_path / "ok.gguf"
    file.write_bytes(header())
    assert read_gguf_header(file, {"general.architecture"}, "x") == (
        {"general.architecture": "llama"}, 0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (header()[:30], "ends early"),
        (header(key_length=2**62), "past the end of the file"),
        (header(version=1), "version 1 is not one llama.cpp reads"),
        (header(endian=">"), "is not one llama.cpp reads"),  # big-endian
        (b"PK\x03\x04" + bytes(40), "no GGUF magic"),
    ],
    ids=["truncated", "huge length", "old version", "big-endian", "a zip"],
)
def test_a_broken_header_is_one_sentence(tmp_path: Path, body: bytes, reason: str) -> None:
    file = tmp_path / "bad.gguf"
    file.write_bytes(body)
    with pytest.raises(ModelError, match=f"is not a readable GGUF .*{reason}"):
        read_model_info(file, Catalogue(tmp_path / "models", []))
