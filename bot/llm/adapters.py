"""The adapters directory: one folder per LoRA adapter, `adapter.gguf` beside `manifest.json`.

Written by `ragtune tune train` (tuning/), read by the bot; nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from bot.llm.engine import ModelError

ADAPTER_FILE = "adapter.gguf"
MANIFEST_FILE = "manifest.json"
PEFT_FOLDER = "peft"
"""The same adapter as a peft folder, for servers that load those (vLLM, LoRAX)."""
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class AdapterError(ModelError):
    """An adapter cannot be found, read or used with the served model (one sentence)."""


class Manifest(BaseModel):
    """What an adapter is, what it was trained on and how; kept beside the GGUF file."""

    name: str
    base_model_file: str
    base_model_sha256: str
    rank: int
    alpha: float
    target_modules: list[str]
    dataset_sha256: str
    dataset_examples: int
    training: dict[str, Any] = Field(default_factory=dict)
    """Steps, learning rate, seed, losses, duration... as the trainer recorded them."""
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    eval_scores: dict[str, Any] = Field(default_factory=dict)


def check_name(name: str) -> str:
    """Adapter names become folder names: letters, digits, `.`, `_`, `-`, at most 64."""
    if not NAME_PATTERN.fullmatch(name):
        raise AdapterError(
            f"{name!r} is not a usable adapter name: use up to 64 letters, digits, '.', '_' or '-'."
        )
    return name


@cache
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, computed once per (path, size, mtime) in this process."""
    stat = path.stat()
    return _sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)


class Adapter:
    """One adapter folder."""

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        self.folder = folder
        self.manifest = manifest

    @property
    def name(self) -> str:
        """The adapter's name (its folder's name)."""
        return self.manifest.name

    @property
    def path(self) -> Path:
        """The GGUF LoRA file llama.cpp loads."""
        return self.folder / ADAPTER_FILE

    def check_base(self, model_path: Path) -> None:
        """Refuse, in one sentence, an adapter trained on another base model than `model_path`."""
        if file_sha256(model_path) != self.manifest.base_model_sha256:
            raise AdapterError(
                f"Adapter {self.name} was trained on {self.manifest.base_model_file} "
                f"(sha256 {self.manifest.base_model_sha256[:12]}…), not on the served model "
                f"{model_path.name}; train it again on this model."
            )


class AdapterRegistry:
    """The adapters directory (RAGTUNE_ADAPTERS_DIR)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, name: str) -> Path:
        """Where the adapter called `name` lives (or would)."""
        return self.root / check_name(name)

    def get(self, name: str) -> Adapter:
        """The adapter called `name`, its manifest read and its file present."""
        folder = self.folder(name)
        manifest_path = folder / MANIFEST_FILE
        if not manifest_path.is_file():
            raise AdapterError(f"There is no adapter called {name}; `ragtune adapters list`.")
        try:
            manifest = Manifest.model_validate_json(manifest_path.read_bytes())
        except (OSError, ValidationError) as exc:
            raise AdapterError(
                f"The manifest of adapter {name} cannot be read ({type(exc).__name__}); "
                "remove the adapter and train it again."
            ) from None
        if not (folder / ADAPTER_FILE).is_file():
            raise AdapterError(f"Adapter {name} has no {ADAPTER_FILE}; train it again.")
        return Adapter(folder, manifest)

    def list(self) -> list[Adapter]:
        """Every readable adapter, by name."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in sorted(self.root.iterdir()):
            if (folder / MANIFEST_FILE).is_file() and NAME_PATTERN.fullmatch(folder.name):
                try:
                    found.append(self.get(folder.name))
                except AdapterError:
                    continue  # half-written or damaged: `adapters show NAME` says why
        return found

    def remove(self, name: str) -> None:
        """Delete an adapter's folder."""
        adapter = self.get(name)
        shutil.rmtree(adapter.folder)
