"""The base model to tune: the served GGUF itself (dequantized by transformers) or an HF folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuning.architectures import architecture, check_exportable
from tuning.errors import TuningError
from tuning.export import BaseShape


@dataclass
class BaseModel:
    """A causal LM in float32 with its tokenizer and the shape the export needs."""

    model: Any
    tokenizer: Any
    shape: BaseShape


def load_base(path: Path) -> BaseModel:
    """Load a GGUF file (the one the bot serves) or a Hugging Face checkpoint folder, on the CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_exportable(architecture(path))  # before any time is spent loading
    if path.is_file():
        folder, extra = path.parent, {"gguf_file": path.name}
    elif (path / "config.json").is_file():
        folder, extra = path, {}
    else:
        raise TuningError(
            f"{path} is neither a GGUF file nor a Hugging Face model folder (with config.json)."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **extra)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **extra)
    except (OSError, ValueError, RuntimeError) as exc:
        raise TuningError(f"transformers could not load {path} ({exc}).") from None
    if not tokenizer.chat_template:
        raise TuningError(f"{path} has no chat template; ragtune trains on chat-formatted data.")
    config = model.config
    shape = BaseShape(
        arch=architecture(path),
        layers=int(config.num_hidden_layers),
        heads=int(config.num_attention_heads),
        kv_heads=int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads),
    )
    return BaseModel(model, tokenizer, shape)
