"""Parse untrusted files in a child process with memory, CPU-time and output limits.

A hostile PDF or DOCX can make a parser allocate gigabytes or spin for minutes; in a child
process that costs the child, never the bot. The child sets its own rlimits before it reads a
byte (no `preexec_fn`, which is unsafe in a threaded parent) and answers with JSON on stdout.
"""

from __future__ import annotations

import json
import resource
import signal
import struct
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from knowledge.errors import BadDocumentError
from knowledge.parsers import ParsedDocument, Section, parse_bytes, parse_txt, parse_web_page


@dataclass(frozen=True)
class ParseLimits:
    """What one file's parsing may use (see RAGTUNE_PARSE_* settings)."""

    memory_mb: int = 1024
    """Address space of the child process."""
    cpu_s: int = 30
    """CPU seconds of the child process."""
    max_chars: int = 10_000_000
    """Characters of text a file may yield (~20,000 chunks)."""

    @property
    def wall_s(self) -> float:
        """Wall-clock limit: the CPU limit plus room for a busy machine."""
        return self.cpu_s * 2 + 10


ParseKind = Literal["file", "page", "text"]
"""A file (parser by its name's extension), a fetched HTML page, or fetched plain text."""


def parse_isolated(
    data: bytes, name: str, limits: ParseLimits | None = None, kind: ParseKind = "file"
) -> list[ParsedDocument]:
    """Parse like `parse_bytes` (or, for a fetched page, `parse_web_page`), in a limited child
    process; failures are BadDocumentError."""
    limits = limits or ParseLimits()
    command = [sys.executable, "-m", "knowledge.sandbox", name,
               str(limits.memory_mb), str(limits.cpu_s), str(limits.max_chars), kind]  # fmt: skip
    try:
        child = subprocess.run(
            command, input=data, capture_output=True, timeout=limits.wall_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise BadDocumentError(
            f"{name} took over {limits.wall_s:.0f} s to read; nothing was added."
        ) from None
    if child.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise BadDocumentError(
            f"{name} needed more than {limits.cpu_s} s of CPU time to read (RAGTUNE_PARSE_CPU_S)."
        )
    try:
        reply: dict[str, Any] = json.loads(child.stdout)
    except ValueError:
        raise BadDocumentError(
            f"{name} could not be read: the reader stopped ({_exit(child.returncode)}) without "
            f"an answer, most likely over the {limits.memory_mb} MB memory limit "
            "(RAGTUNE_PARSE_MEMORY_MB)."
        ) from None
    if "error" in reply:
        raise BadDocumentError(str(reply["error"]))
    return [_document(row) for row in reply["documents"]]


BATCH_FILES = 64
"""Most small files one child parses (each child costs ~70-130 ms to start here)."""
BATCH_BYTES = 2_000_000
"""Most bytes one batch child is given."""
_FRAME = struct.Struct("<IQ")  # name length, data length


def parse_batch_isolated(
    files: Sequence[tuple[bytes, str]], limits: ParseLimits | None = None
) -> list[list[ParsedDocument] | BadDocumentError]:
    """Parse several (data, name) files in one limited child, each result (documents, or the
    error a file alone would get) in input order.

    The child's limits hold for the whole batch. If it is killed, overruns or answers nothing
    (one hostile file can do that), every file of the batch is parsed again in a child of its
    own, so one bad file still cannot sink the rest.
    """
    limits = limits or ParseLimits()
    if len(files) > 1:
        payload = b"".join(
            _FRAME.pack(len(name.encode("utf-8", "surrogateescape")), len(data))
            + name.encode("utf-8", "surrogateescape")
            + data
            for data, name in files
        )
        command = [sys.executable, "-m", "knowledge.sandbox", "(batch)", str(limits.memory_mb),
                   str(limits.cpu_s), str(limits.max_chars), "batch"]  # fmt: skip
        try:
            child = subprocess.run(
                command, input=payload, capture_output=True, timeout=limits.wall_s, check=False
            )
            replies = json.loads(child.stdout)["batch"] if child.returncode == 0 else None
        except (subprocess.TimeoutExpired, ValueError, KeyError):
            replies = None
        if replies is not None and len(replies) == len(files):
            return [_result(reply) for reply in replies]
    return [_alone(data, name, limits) for data, name in files]


def _alone(data: bytes, name: str, limits: ParseLimits) -> list[ParsedDocument] | BadDocumentError:
    try:
        return parse_isolated(data, name, limits)
    except BadDocumentError as exc:
        return exc


def _result(reply: dict[str, Any]) -> list[ParsedDocument] | BadDocumentError:
    if "error" in reply:
        return BadDocumentError(str(reply["error"]))
    return [_document(row) for row in reply["documents"]]


def _exit(returncode: int) -> str:
    if returncode < 0:
        return f"signal {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"


def _document(row: dict[str, Any]) -> ParsedDocument:
    return ParsedDocument(
        title=str(row["title"]),
        sections=tuple(Section(str(h), str(t)) for h, t in row["sections"]),
        external_id=row["external_id"],
    )


def _limit_self(memory_mb: int, cpu_s: int) -> None:
    """Limits on this (child) process: memory, CPU (SIGXCPU, then SIGKILL), no files written."""
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def _child(
    name: str, memory_mb: int, cpu_s: int, max_chars: int, kind: str = "file"
) -> dict[str, Any]:
    _limit_self(memory_mb, cpu_s)
    data = sys.stdin.buffer.read()
    if kind == "batch":
        return {
            "batch": [
                _parse_one(part, part_name, memory_mb, max_chars, "file")
                for part, part_name in _unframe(data)
            ]
        }
    return _parse_one(data, name, memory_mb, max_chars, kind)


def _unframe(data: bytes) -> list[tuple[bytes, str]]:
    """The (data, name) files of a batch, as `parse_batch_isolated` framed them."""
    files, at = [], 0
    while at < len(data):
        name_length, data_length = _FRAME.unpack_from(data, at)
        at += _FRAME.size
        name = data[at : at + name_length].decode("utf-8", "surrogateescape")
        at += name_length
        files.append((data[at : at + data_length], name))
        at += data_length
    return files


def _parse_one(data: bytes, name: str, memory_mb: int, max_chars: int, kind: str) -> dict[str, Any]:
    """One file's reply: its documents, or the error to tell about it."""
    try:
        if kind == "page":
            documents = parse_web_page(data, name)
        elif kind == "text":
            documents = parse_txt(data, name)
        else:
            documents = parse_bytes(data, name)
    except BadDocumentError as exc:
        return {"error": str(exc)}
    except MemoryError:
        return {
            "error": f"{name} needs more than {memory_mb} MB of memory to read "
            "(RAGTUNE_PARSE_MEMORY_MB); nothing was added."
        }
    except Exception as exc:  # a parser bug on odd input: refuse the file, say what broke
        return {"error": f"{name} could not be read ({type(exc).__name__}: {exc})."[:500]}
    if (chars := sum(len(d.text) for d in documents)) > max_chars:
        return {
            "error": f"{name} holds {chars:,} characters of text, over the {max_chars:,} limit "
            "(RAGTUNE_PARSE_MAX_CHARS)."
        }
    return {"documents": [_row(d) for d in documents]}


def _row(document: ParsedDocument) -> dict[str, Any]:
    sections = [[s.heading, s.text] for s in document.sections]
    return {"title": document.title, "external_id": document.external_id, "sections": sections}


if __name__ == "__main__":
    file_name, memory, cpu, chars = sys.argv[1], *map(int, sys.argv[2:5])
    reply = _child(file_name, memory, cpu, chars, *sys.argv[5:6])
    sys.stdout.write(json.dumps(reply))
