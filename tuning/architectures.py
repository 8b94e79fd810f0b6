"""Which model architectures ragtune can fine-tune: read before torch is even imported."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from tuning.errors import TuningError

# The architectures an adapter can be exported for, and whether their GGUF stores the q/k
# projection rows permuted for llama.cpp's rotary layout: llama.cpp's converter permutes llama's
# and leaves qwen2's as they are (qwen2 also has q/k/v biases, which LoRA leaves alone). Each is
# checked against peft's own logits in tests/tuning/test_export.py; anything else is refused
# rather than written wrong.
QK_PERMUTED: dict[str, bool] = {"llama": True, "qwen2": False}


def check_exportable(arch: str) -> None:
    """Refuse, in one sentence, an architecture ragtune has no checked tensor mapping for."""
    if arch not in QK_PERMUTED:
        known = " and ".join(sorted(QK_PERMUTED))
        raise TuningError(
            f"ragtune cannot export LoRA adapters for the {arch!r} architecture (only for "
            f"{known}), so it will not train one; nothing was trained."
        )


def architecture(path: Path) -> str:
    """The model's architecture as llama.cpp names it, read from the GGUF or config.json."""
    if path.is_file():
        from bot.llm.model_info import read_gguf_header

        try:
            fields, _ = read_gguf_header(path, {"general.architecture"}, "general.architecture")
        except (OSError, ValueError, struct.error, MemoryError, RecursionError) as exc:
            raise TuningError(f"{path} is not a readable GGUF file ({exc}).") from None
        if "general.architecture" not in fields:
            raise TuningError(f"{path} has no general.architecture; is it a model GGUF?")
        return str(fields["general.architecture"])
    config = path / "config.json"
    if not config.is_file():
        raise TuningError(
            f"{path} is neither a GGUF file nor a Hugging Face model folder (with config.json)."
        )
    return str(json.loads(config.read_text()).get("model_type", "unknown"))
