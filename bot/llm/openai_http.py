"""OpenAI-compatible HTTP engine: llama.cpp's llama-server, vLLM, or any server speaking the
OpenAI API (Ollama, llama-cpp-python's server...). The HTTP client is injected.

The API has no word for LoRA adapters or tokens, so each server's own is used where it has one:
- llama-server: `"lora": [{"id": N, "scale": 1}]` per request (ids from GET /lora-adapters,
  loaded at start with `--lora-init-without-apply` by `ragtune serve`), POST /tokenize,
  GET /props for its parallel slots;
- vLLM: the adapter's name as `"model"`, loaded from its peft folder with
  POST /v1/load_lora_adapter, POST /tokenize (as vLLM documents them; vLLM itself was not run
  here);
- any other server: no adapters, tokens estimated.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import httpx

from bot.llm.adapters import PEFT_FOLDER
from bot.llm.engine import GenerationLimits, Message, ModelError

log = logging.getLogger(__name__)
Flavor = Literal["llama-server", "vllm", "openai"]
FLAVORS: tuple[str, ...] = ("auto", "llama-server", "vllm", "openai")
RETRIES = 2
"""Extra tries of a request that failed (5xx, no connection) before its first token."""
RETRY_WAIT_S = 0.5
VLLM_CONCURRENCY = 8
"""Generations kept in flight with vLLM, which batches on its own and reports no slots."""


class ServerError(ModelError):
    """The server failed a request (a 5xx or no answer); a retry may succeed."""


class OpenAIEngine:
    """Streams chat completions from a server speaking the OpenAI API."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        client: httpx.Client | None = None,
        api_key: str | None = None,
        context_window: int = 2048,
        flavor: str = "auto",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.root = self.base_url.removesuffix("/v1")
        """The server itself, where llama-server and vLLM keep /tokenize and the rest."""
        self.model_id = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.Client(timeout=httpx.Timeout(120, connect=5))
        self._headers = headers
        self._context_window = context_window
        self._flavor: Flavor | None = None if flavor == "auto" else _flavor(flavor)
        self._slots = 1
        self._detected = False
        self._lora_ids: dict[Path, int] = {}
        self._lora_loaded: dict[Path, int] | None = None
        self._loaded: set[str] = set()  # vLLM adapters loaded by name
        self._lock = threading.Lock()
        self._estimate_tokens = False
        self._count = lru_cache(maxsize=4096)(self._count_tokens)

    # --- what the server is -------------------------------------------------------------------

    def connect(self) -> None:
        """Reach the server and learn what it is (called at start: an unreachable server is one
        sentence naming its URL before anything else happens)."""
        self._detect()

    @property
    def flavor(self) -> Flavor:
        """Which server this is: llama-server, vLLM, or another OpenAI-compatible one."""
        return self._detect()

    @property
    def supports_lora(self) -> bool:
        """Adapters per request: llama-server and vLLM have them."""
        return self.flavor != "openai"

    @property
    def concurrency(self) -> int:
        """Generations the server runs at once: llama-server's slots (vLLM: VLLM_CONCURRENCY)."""
        self._detect()
        return self._slots

    @property
    def context_window(self) -> int:
        """The context size configured for the server's model (per slot)."""
        return self._context_window

    def _detect(self) -> Flavor:
        """Ask the server once what it is (RAGTUNE_OPENAI_FLAVOR, when set, wins)."""
        with self._lock:
            if not self._detected:
                props = self._get(f"{self.root}/props", optional=True)
                if isinstance(props, dict) and "total_slots" in props:  # llama-server
                    self._flavor = self._flavor or "llama-server"
                    self._slots = max(1, int(props["total_slots"]))
                elif self._flavor is None:
                    models = self._get(f"{self.base_url}/models", optional=True)
                    owners = {m.get("owned_by") for m in (models or {}).get("data", [])}
                    self._flavor = "vllm" if "vllm" in owners else "openai"
                if self._flavor == "vllm":
                    self._slots = VLLM_CONCURRENCY
                self._detected = True
            assert self._flavor is not None
            return self._flavor

    def _get(self, url: str, *, optional: bool = False) -> Any:
        """GET `url` as JSON; None for a 404 when `optional`."""
        try:
            response = self._client.get(url, headers=self._headers)
        except httpx.HTTPError as exc:
            raise ModelError(self._unreachable(exc)) from None
        if optional and response.status_code in (400, 404, 405):
            return None
        if response.status_code != 200:
            raise ModelError(f"The model server answered {response.status_code} at {url}.")
        return response.json()

    def _unreachable(self, error: BaseException) -> str:
        return (
            f"The model server at {self.base_url} cannot be reached ({error}): start it "
            "(`ragtune serve`) or check RAGTUNE_OPENAI_BASE_URL."
        )

    # --- tokens ---------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the server's own tokenizer (cached per text); an estimate of
        about 4 characters a token only where the server has no /tokenize."""
        if self._estimate_tokens or self.flavor == "openai":
            return len(text) // 4 + 1
        return self._count(text)

    def _count_tokens(self, text: str) -> int:
        if self.flavor == "vllm":
            body: dict[str, Any] = {"model": self.model_id, "prompt": text}
            body["add_special_tokens"] = False
        else:
            body = {"content": text, "add_special": False}
        try:
            response = self._client.post(f"{self.root}/tokenize", json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise ModelError(self._unreachable(exc)) from None
        if response.status_code in (404, 405, 501):
            log.warning("%s has no /tokenize: token counts are estimated", self.root)
            self._estimate_tokens = True
            return len(text) // 4 + 1
        if response.status_code != 200:
            raise ModelError(f"The model server answered {response.status_code} at /tokenize.")
        return len(response.json()["tokens"])

    # --- adapters -------------------------------------------------------------------------------

    def use_adapter(self, path: Path | None) -> None:
        """Check that the server can apply `path` per request (vLLM: load its peft folder);
        nothing changes on the server for anyone else."""
        if path is None:
            return
        match self.flavor:
            case "llama-server":
                self._lora_id(path)
            case "vllm":
                self._load_into_vllm(path)
            case "openai":
                raise ModelError(
                    "LoRA adapters need the in-process model, llama-server or vLLM; this "
                    f"OpenAI-compatible server at {self.base_url} cannot apply them per request."
                )

    def _server_adapters(self) -> dict[Path, int]:
        """The adapters llama-server loaded at start, by path (asked once)."""
        if self._lora_loaded is None:
            loaded = self._get(f"{self.root}/lora-adapters")
            self._lora_loaded = {Path(str(a["path"])): int(a["id"]) for a in loaded}
        return self._lora_loaded

    def _lora_id(self, path: Path) -> int:
        """llama-server's id of the adapter at `path`: the same file, or on another machine an
        adapter in a folder of the same name (`ragtune serve` loads `<name>/adapter.gguf`)."""
        if path not in self._lora_ids:
            by_path = self._server_adapters()
            by_name = {p.parent.name: i for p, i in by_path.items()}
            found = by_path.get(path, by_name.get(path.parent.name))
            if found is None:
                raise ModelError(
                    f"The model server at {self.base_url} has no adapter {path.parent.name}: "
                    "restart it with `ragtune serve`, which loads every adapter made for its "
                    "model."
                )
            self._lora_ids[path] = found
        return self._lora_ids[path]

    def _load_into_vllm(self, path: Path) -> None:
        """POST /v1/load_lora_adapter with the adapter's peft folder (once per name)."""
        name = path.parent.name
        if name in self._loaded:
            return
        body = {"lora_name": name, "lora_path": str(path.parent / PEFT_FOLDER)}
        try:
            response = self._client.post(
                f"{self.base_url}/load_lora_adapter", json=body, headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise ModelError(self._unreachable(exc)) from None
        if response.status_code != 200 and "already" not in response.text:
            raise ModelError(
                f"vLLM at {self.base_url} could not load the adapter {name} "
                f"({response.status_code}: {response.text[:200]})."
            )
        self._loaded.add(name)

    def _adapter_fields(self, adapter: Path | None) -> dict[str, Any]:
        """What a chat request carries to run with `adapter` (None: the base model)."""
        match self.flavor:
            case "llama-server":
                # Every adapter the server holds is named, at 0 but the chosen one: an empty
                # list would fall back to the scales it was started with.
                chosen = self._lora_id(adapter) if adapter is not None else None
                scales = [
                    {"id": i, "scale": 1.0 if i == chosen else 0.0}
                    for i in sorted(self._server_adapters().values())
                ]
                return {"lora": scales}
            case "vllm" if adapter is not None:
                self._load_into_vllm(adapter)
                return {"model": adapter.parent.name}
        if adapter is not None:
            self.use_adapter(adapter)  # says why it cannot
        return {}

    # --- generation -----------------------------------------------------------------------------

    def stream(
        self,
        messages: Sequence[Message],
        limits: GenerationLimits,
        should_stop: Callable[[], bool],
        adapter: Path | None = None,
    ) -> Iterator[str]:
        """POST /chat/completions with stream=true and yield the content deltas; a 5xx or a
        lost connection before the first token is retried, after it the answer fails."""
        body = {
            "model": self.model_id,
            "messages": list(messages),
            "max_tokens": limits.max_tokens,
            "temperature": limits.temperature,
            "stream": True,
            **self._adapter_fields(adapter),
        }
        for attempt in range(RETRIES + 1):
            started = False
            try:
                for piece in self._completion(body, should_stop, limits.timeout_s):
                    started = True
                    yield piece
                return
            except ServerError as exc:
                if started or attempt == RETRIES or should_stop():
                    raise ModelError(str(exc)) from None
                log.warning("%s; trying again (%d of %d)", exc, attempt + 1, RETRIES)
                time.sleep(RETRY_WAIT_S * (attempt + 1))

    def _completion(
        self, body: dict[str, Any], should_stop: Callable[[], bool], timeout_s: float
    ) -> Iterator[str]:
        url = f"{self.base_url}/chat/completions"
        # A server that sends nothing for the whole generation time is slow, not down: no retry.
        timeout = httpx.Timeout(timeout_s, connect=5)
        try:
            with self._client.stream(
                "POST", url, json=body, headers=self._headers, timeout=timeout
            ) as response:
                if response.status_code >= 500:
                    response.read()
                    raise ServerError(
                        f"The model server answered {response.status_code} at {url}: "
                        f"{response.text[:200]}"
                    )
                if response.status_code != 200:
                    response.read()
                    raise ModelError(
                        f"The model server answered {response.status_code} at {url}: "
                        f"{response.text[:200]}"
                    )
                finished = False  # a finish_reason was sent; [DONE] ends the stream
                for line in response.iter_lines():
                    if should_stop():
                        return
                    if not line.startswith("data:"):
                        continue
                    data = line.removeprefix("data:").strip()
                    if data == "[DONE]":
                        return
                    choices = json.loads(data).get("choices") or [{}]
                    finished = finished or choices[0].get("finish_reason") is not None
                    if piece := (choices[0].get("delta") or {}).get("content"):
                        yield piece
                if not finished and not should_stop():
                    # The connection closed mid-answer (a server killed, a proxy's timeout):
                    # what arrived is a fragment, never to be shown as the answer.
                    raise ServerError(
                        f"The model server at {self.base_url} ended its answer before it was "
                        "finished (no finish_reason, no [DONE])."
                    )
        except httpx.ConnectTimeout as exc:
            raise ServerError(self._unreachable(exc)) from None
        except httpx.TimeoutException:
            raise ModelError(
                f"The model server at {self.base_url} sent nothing for {timeout_s:.0f} s "
                "(RAGTUNE_GENERATION_TIMEOUT_S)."
            ) from None
        except httpx.HTTPError as exc:
            raise ServerError(self._unreachable(exc)) from None


def _flavor(name: str) -> Flavor:
    if name == "llama-server":
        return "llama-server"
    if name == "vllm":
        return "vllm"
    if name == "openai":
        return "openai"
    raise ModelError(f"RAGTUNE_OPENAI_FLAVOR must be one of {', '.join(FLAVORS)}, not {name}.")
