"""OpenAI-compatible HTTP engine (llama-server, vLLM, Ollama...); the HTTP client is injected."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

from bot.llm.engine import GenerationLimits, Message, ModelError


class OpenAIEngine:
    """Streams chat completions from a server speaking the OpenAI API."""

    supports_lora = False

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        client: httpx.Client | None = None,
        api_key: str | None = None,
        context_window: int = 2048,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model_id = model
        self.adapter: Path | None = None
        """Always None: the OpenAI API cannot switch adapters."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.Client(timeout=httpx.Timeout(120, connect=5))
        self._headers = headers
        self._context_window = context_window

    @property
    def context_window(self) -> int:
        """The context size configured for the server's model."""
        return self._context_window

    def count_tokens(self, text: str) -> int:
        """An estimate (about 4 characters a token): the OpenAI API has no tokenizer endpoint."""
        return len(text) // 4 + 1

    def stream(
        self,
        messages: Sequence[Message],
        limits: GenerationLimits,
        should_stop: Callable[[], bool],
    ) -> Iterator[str]:
        """POST /chat/completions with stream=true and yield the content deltas."""
        body = {
            "model": self.model_id,
            "messages": list(messages),
            "max_tokens": limits.max_tokens,
            "temperature": limits.temperature,
            "stream": True,
        }
        url = f"{self.base_url}/chat/completions"
        try:
            with self._client.stream("POST", url, json=body, headers=self._headers) as response:
                if response.status_code != 200:
                    response.read()
                    raise ModelError(
                        f"The model server answered {response.status_code} at {url}: "
                        f"{response.text[:200]}"
                    )
                for line in response.iter_lines():
                    if should_stop():
                        return
                    if not line.startswith("data:"):
                        continue
                    data = line.removeprefix("data:").strip()
                    if data == "[DONE]":
                        return
                    delta = json.loads(data)["choices"][0].get("delta", {})
                    if piece := delta.get("content"):
                        yield piece
        except httpx.HTTPError as exc:
            raise ModelError(
                f"The model server at {self.base_url} cannot be reached ({exc})."
            ) from None

    def use_adapter(self, path: Path | None, scale: float = 1.0) -> None:
        """Adapters are the server's business: the OpenAI API cannot switch them."""
        if path is not None:
            raise ModelError(
                "LoRA adapters need the in-process model (RAGTUNE_LLM_BACKEND=llama); an "
                "OpenAI-compatible server loads its own."
            )
