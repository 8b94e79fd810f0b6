"""What a GGUF chat model says about itself: architecture, context length, size, hash."""

from __future__ import annotations

import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bot.llm.catalogue import Catalogue
from bot.llm.engine import ModelError


@dataclass(frozen=True)
class ModelInfo:
    """The served model as `doctor`, `/stats` and the prompt profile see it."""

    name: str
    """Catalogue name, or the file name for a model given by path."""
    path: Path
    architecture: str
    context_length: int
    """Tokens the model was trained to attend to (the GGUF's `<arch>.context_length`)."""
    parameters: int
    size_bytes: int
    sha256: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {**asdict(self), "path": str(self.path)}

    def summary(self) -> str:
        """One line for people: name, architecture, parameters, context, size, short hash."""
        return (
            f"{self.name} ({self.architecture}, {self.parameters / 1e6:.0f}M parameters, "
            f"context {self.context_length:,}, {self.size_bytes / 1e6:.0f} MB, "
            f"sha256 {self.sha256[:12]}…)"
        )


def read_model_info(path: Path, catalogue: Catalogue, name: str | None = None) -> ModelInfo:
    """Read the GGUF header of `path` (no tensor data); hash the file once."""
    try:
        fields, parameters = read_gguf_header(path, {"general.architecture"}, "context_length")
    except (OSError, ValueError, struct.error, MemoryError, RecursionError) as exc:
        raise ModelError(f"The model file {path} is not a readable GGUF ({exc}).") from None
    architecture = str(fields.get("general.architecture", "unknown"))
    context = fields.get(f"{architecture}.context_length", 0)
    return ModelInfo(
        name=name or path.name,
        path=path,
        architecture=architecture,
        context_length=int(context) if isinstance(context, int) else 0,
        parameters=parameters,
        size_bytes=path.stat().st_size,
        sha256=catalogue.sha256(path),
    )


# GGUF value types (ggml's gguf.h): fixed sizes, 8 = string, 9 = array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}  # fmt: skip
_STRING, _ARRAY = 8, 9


def read_gguf_header(path: Path, keys: set[str], key_suffix: str) -> tuple[dict[str, object], int]:
    """The scalar values of `keys` (and of keys ending in `key_suffix`), and the parameter count.

    Hand-written because gguf.GGUFReader builds an object per array element: 25 s for Qwen's
    151k-token vocabulary, where skipping the arrays takes a fraction of a second.
    """
    found: dict[str, object] = {}
    size = path.stat().st_size
    with path.open("rb") as handle:

        def unpack(fmt: str) -> Any:
            wanted = struct.calcsize(fmt)
            data = handle.read(wanted)
            if len(data) != wanted:
                raise ValueError("the header ends early")
            return struct.unpack("<" + fmt, data)[0]

        def length() -> int:
            value = int(unpack("Q"))
            if value > size:  # a corrupt or hostile length: never allocate it
                raise ValueError(f"a length of {value:,} bytes is past the end of the file")
            return value

        def string() -> str:
            return handle.read(length()).decode("utf-8", "replace")

        def skip(kind: int, depth: int = 0) -> None:
            if kind in _SCALARS:
                handle.seek(struct.calcsize(_SCALARS[kind]), 1)
            elif kind == _STRING:
                handle.seek(length(), 1)
            elif kind == _ARRAY and depth < 4:
                inner, count = unpack("I"), length()
                if inner in _SCALARS:
                    handle.seek(struct.calcsize(_SCALARS[inner]) * count, 1)
                else:
                    for _ in range(count):
                        skip(inner, depth + 1)
            else:
                raise ValueError(f"unsupported GGUF value type {kind}")

        if handle.read(4) != b"GGUF":
            raise ValueError("no GGUF magic")
        version = unpack("I")
        if version not in (2, 3):  # also catches a big-endian file (its 3 reads as 0x03000000)
            raise ValueError(f"GGUF version {version} is not one llama.cpp reads")
        tensors, entries = length(), length()
        for _ in range(entries):
            key, kind = string(), unpack("I")
            wanted = key in keys or key.endswith(key_suffix)
            if wanted and kind in _SCALARS:
                found[key] = unpack(_SCALARS[kind])
            elif wanted and kind == _STRING:
                found[key] = string()
            else:
                skip(kind)
        parameters = 0
        for _ in range(tensors):
            string()  # name
            n_dims = int(unpack("I"))
            if n_dims > 4:  # ggml's GGML_MAX_DIMS
                raise ValueError(f"a tensor with {n_dims} dimensions")
            dims = [int(unpack("Q")) for _ in range(n_dims)]
            handle.seek(4 + 8, 1)  # type, offset
            parameters += math.prod(dims)
    return found, parameters
