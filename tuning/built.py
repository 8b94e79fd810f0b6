"""Folders of models built once per machine (the span reader, the reranker): written whole."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any


def publish(out: Path, model: Any, tokenizer: Any, manifest_name: str, manifest: Any) -> Path:
    """Save `model`, `tokenizer` and the manifest beside `out`, then move them into its place:
    a build cut short never looks built, and an older build is replaced only by a whole one."""
    partial = out.with_name(out.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / manifest_name).write_text(json.dumps(manifest, indent=1))
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return out
