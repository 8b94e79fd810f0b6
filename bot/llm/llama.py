"""In-process llama.cpp engine (llama-cpp-python). Not thread-safe: one worker owns it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from bot.llm.engine import GenerationLimits, Message, ModelError

GGUF_MAGIC = b"GGUF"


def check_gguf(path: Path, kind: str = "model") -> None:
    """Fail fast, with one sentence, on a missing, unreadable or non-GGUF model or adapter."""
    if not path.is_file():
        hint = (
            ": set RAGTUNE_MODEL_PATH to a GGUF file or install the default with "
            "`ragtune models install`"
            if kind == "model"
            else ""
        )
        raise ModelError(f"The {kind} file {path} does not exist{hint}.")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelError(f"The {kind} file {path} cannot be read ({exc.strerror}).") from None
    if magic != GGUF_MAGIC:
        raise ModelError(f"The {kind} file {path} is not a GGUF file (it may be corrupt).")


def default_threads() -> int:
    """llama.cpp threads when RAGTUNE_MODEL_THREADS is 0: half the cores this process may use
    (1 to 4). ggml's threads spin at every step and collapse when a core is taken: on 2 cores,
    2 threads gave 91 tokens/s idle and 11 with one core busy (5 with the embedder busy), 1
    thread 70 and 62 (60) (`python -m bench.threads`, README "Threads")."""
    return max(1, min(4, len(os.sched_getaffinity(0)) // 2))


class LlamaCppEngine:
    """A GGUF chat model loaded in this process through llama-cpp-python."""

    supports_lora = True
    concurrency = 1

    def __init__(
        self,
        model_path: Path,
        *,
        context_window: int = 2048,
        threads: int = 0,
        chat_template: str | None = None,
        seed: int = 0,
    ) -> None:
        check_gguf(model_path)
        import llama_cpp

        self.model_path = model_path
        self.model_id = model_path.name
        self.adapter: Path | None = None
        """The LoRA adapter applied now (None: the base model alone)."""
        # Loaded adapters by (path, size, mtime): switching back is a pointer swap, not a load.
        self._adapters: dict[tuple[Path, int, int], Any] = {}
        threads = threads or default_threads()
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(model_path),
                n_ctx=context_window,
                n_threads=threads,
                n_threads_batch=threads,
                seed=seed,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(
                f"The model file {model_path} could not be loaded by llama.cpp ({exc}); "
                "it may be corrupt or of an unsupported architecture."
            ) from None
        template = chat_template or self._llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelError(
                f"The model {model_path.name} has no chat template in its metadata: set "
                "RAGTUNE_CHAT_TEMPLATE to its Jinja chat template."
            )
        if chat_template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            llama = self._llama

            def special(token: int) -> str:
                return llama.detokenize([token], special=True).decode("utf-8", "ignore")

            formatter = Jinja2ChatFormatter(
                template=chat_template,
                eos_token=special(llama.token_eos()),
                bos_token=special(llama.token_bos()),
            )
            self._llama.chat_handler = formatter.to_chat_handler()

    @property
    def context_window(self) -> int:
        """Tokens of context the model was loaded with."""
        return int(self._llama.n_ctx())

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` (tokenizing reads the vocabulary only, so any thread may call it)."""
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def stream(
        self,
        messages: Sequence[Message],
        limits: GenerationLimits,
        should_stop: Callable[[], bool],
        adapter: Path | None = None,
    ) -> Iterator[str]:
        """Stream the reply with `adapter` applied (switched only when it differs from the one
        applied now); llama-cpp-python reuses the cached prompt prefix (the system prompt)."""
        if adapter != self.adapter:
            self.use_adapter(adapter)
        chunks = cast(
            Iterator[Any],
            self._llama.create_chat_completion(
                messages=list(messages),  # type: ignore[arg-type]
                max_tokens=limits.max_tokens,
                temperature=limits.temperature,
                stream=True,
            ),
        )
        try:
            for chunk in chunks:
                if should_stop():
                    return
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # stop llama.cpp's generator at once

    def use_adapter(self, path: Path | None) -> None:
        """Apply the GGUF LoRA adapter at `path` (None: none) without reloading the model.

        Only the worker thread may call this, between generations.
        """
        import ctypes

        import llama_cpp

        context = self._llama._ctx.ctx
        if path is None:
            status = llama_cpp.llama_set_adapters_lora(context, None, 0, None)
        else:
            handle = self._load_adapter(path)
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle)
            scales = (ctypes.c_float * 1)(1.0)
            status = llama_cpp.llama_set_adapters_lora(context, adapters, 1, scales)
        if status != 0:
            raise ModelError(f"llama.cpp could not switch to the adapter {path} (status {status}).")
        # The cached prompt was evaluated with the previous weights: start from scratch, or
        # answers come out as a stale mix of old and new.
        llama: Any = self._llama
        llama.reset()
        self.adapter = path

    def _load_adapter(self, path: Path) -> Any:
        import llama_cpp

        check_gguf(path, "adapter")
        stat = path.stat()
        key = (path.resolve(), stat.st_size, stat.st_mtime_ns)
        if key not in self._adapters:
            handle = llama_cpp.llama_adapter_lora_init(self._llama._model.model, str(path).encode())
            if not handle:
                raise ModelError(
                    f"llama.cpp could not load the adapter {path}: it may be corrupt or made "
                    f"for another model than {self.model_id}."
                )
            self._adapters[key] = handle
        return self._adapters[key]
