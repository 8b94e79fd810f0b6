"""Shared helpers for the benchmarks: the dev set, timing and reporting."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEV_EVAL_DIR = Path(
    os.environ.get("RAGTUNE_EVAL_DIR", REPO_ROOT.parent / "shared" / "eval" / "dev")
)


def read_jsonl(path: Path) -> list[dict[str, object]]:
    """Rows of a JSONL file."""
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    """p50 and p95 of durations, in milliseconds."""
    values = np.asarray(seconds) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def median(values: list[float]) -> float:
    """Median of several runs."""
    return float(statistics.median(values))


def report(name: str, result: dict[str, object]) -> None:
    """Print the result as one JSON line (the README quotes it) and keep a copy."""
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
