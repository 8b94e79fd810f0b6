"""The ChatEngine interface: messages in, a stream of text out; capabilities are attributes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypedDict

from knowledge.errors import RagtuneError


class Message(TypedDict):
    """One chat turn."""

    role: str
    content: str


@dataclass(frozen=True)
class GenerationLimits:
    """How long and how much one generation may run."""

    max_tokens: int = 256
    temperature: float = 0.0
    timeout_s: float = 120.0


class ModelError(RagtuneError):
    """The model cannot be used; the message is one sentence for a person."""


class ChatEngine(Protocol):
    """A chat model. Only the model worker thread calls `stream`."""

    model_id: str
    supports_lora: bool
    adapter: Path | None
    """The LoRA adapter applied now (None: the base model alone); set by `use_adapter`."""

    @property
    def context_window(self) -> int:
        """Tokens the model attends to (prompt + answer)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in this model's vocabulary (safe from any thread)."""
        ...

    def stream(
        self,
        messages: Sequence[Message],
        limits: GenerationLimits,
        should_stop: Callable[[], bool],
    ) -> Iterator[str]:
        """Yield text pieces until done, the token limit, or `should_stop()` turns true."""
        ...

    def use_adapter(self, path: Path | None, scale: float = 1.0) -> None:
        """Apply a GGUF LoRA adapter (None: none); raises ModelError where unsupported."""
        ...
