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
    """A chat model. Only the model worker's threads call `stream`: one generation at a time,
    or up to `concurrency` at once for an engine that batches them (a server's slots)."""

    model_id: str

    @property
    def supports_lora(self) -> bool:
        """Whether `stream` can apply LoRA adapters."""
        ...

    @property
    def concurrency(self) -> int:
        """Generations the engine runs at once (1 in process; a server's parallel slots)."""
        ...

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
        adapter: Path | None = None,
    ) -> Iterator[str]:
        """Yield text pieces until done, the token limit, or `should_stop()` turns true, with
        the LoRA adapter `adapter` applied to this generation (None: the base model alone)."""
        ...

    def use_adapter(self, path: Path | None) -> None:
        """Make `path` ready for the generations that name it (None: the base model): loaded
        and checked, and in process applied now; raises ModelError where it cannot be used."""
        ...
