"""The base model to tune: the served GGUF itself (dequantized by transformers) or an HF folder.

Dequantizing a GGUF is slow (Qwen2.5-0.5B: about 75 s here, most of it parsing a 151k-token
vocabulary), so the float32 result is kept in a cache folder keyed by the file's sha256 and the
transformers version; the next `tune train` on the same file loads it in seconds.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.llm.adapters import file_sha256
from tuning.architectures import architecture, check_exportable
from tuning.errors import TuningError
from tuning.export import BaseShape

log = logging.getLogger(__name__)
FREE_SPACE_FACTOR = 2  # leave the disk at least as much again as the copy takes


@dataclass
class BaseModel:
    """A causal LM in float32 with its tokenizer and the shape the export needs."""

    model: Any
    tokenizer: Any
    shape: BaseShape


def load_base(path: Path, cache_dir: Path | None = None) -> BaseModel:
    """Load a GGUF file (the one the bot serves) or a Hugging Face checkpoint folder, on the CPU.

    With `cache_dir`, a GGUF's dequantized copy is read from there, or written there after the
    first conversion; a cache that cannot be read or written only costs the conversion time.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
    arch = architecture(path)
    check_exportable(arch)  # before any time is spent loading
    if path.is_file():
        cached = _cached_copy(path, arch, cache_dir) if cache_dir else None
        if cached is not None and (loaded := _try_load_folder(cached)) is not None:
            model, tokenizer = loaded
        else:
            model, tokenizer = _load(path, path.parent, {"gguf_file": path.name})
            if cached is not None:
                _save_copy(model, tokenizer, cached)
    elif (path / "config.json").is_file():
        model, tokenizer = _load(path, path, {})
    else:
        raise TuningError(
            f"{path} is neither a GGUF file nor a Hugging Face model folder (with config.json)."
        )
    if not tokenizer.chat_template:
        raise TuningError(f"{path} has no chat template; ragtune trains on chat-formatted data.")
    config = model.config
    shape = BaseShape(
        arch=arch,
        layers=int(config.num_hidden_layers),
        heads=int(config.num_attention_heads),
        kv_heads=int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads),
    )
    return BaseModel(model, tokenizer, shape)


def _load(path: Path, folder: Path, extra: dict[str, str]) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **extra)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **extra)
    except (OSError, ValueError, RuntimeError) as exc:
        raise TuningError(f"transformers could not load {path} ({exc}).") from None
    return model, tokenizer


def _cached_copy(path: Path, arch: str, cache_dir: Path) -> Path:
    """Where the dequantized copy of this exact file, by this transformers, lives."""
    import transformers

    key = f"{arch}-{file_sha256(path)[:16]}-transformers-{transformers.__version__}"
    return cache_dir / key


def _try_load_folder(folder: Path) -> tuple[Any, Any] | None:
    if not (folder / "config.json").is_file():
        return None
    try:
        return _load(folder, folder, {})
    except TuningError as exc:  # a damaged copy: convert again, and replace it
        log.warning("ignoring the cached base model in %s: %s", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _save_copy(model: Any, tokenizer: Any, destination: Path) -> None:
    """Write the copy whole or not at all: into a scratch folder, renamed when complete."""
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        if shutil.disk_usage(destination.parent).free < FREE_SPACE_FACTOR * size:
            log.info("not caching the base model: too little free disk for %d MB", size >> 20)
            return
        scratch = Path(tempfile.mkdtemp(dir=destination.parent, prefix=".partial-"))
        try:
            _save_weights(model, scratch)
            tokenizer.save_pretrained(scratch)
            scratch.rename(destination)  # fails if another run got there first: theirs stays
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except OSError as exc:
        log.info("not caching the base model in %s (%s)", destination.parent, exc)


def _save_weights(model: Any, folder: Path) -> None:
    """A plain float32 checkpoint: transformers' save_pretrained refuses a GGUF-loaded model
    (it still carries the GGUF quantizer, though its weights are already dequantized)."""
    import copy

    from safetensors.torch import save_model

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(folder)
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})
