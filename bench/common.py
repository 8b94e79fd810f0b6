"""Shared helpers for the benchmarks: the dev set, timing and reporting."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bot import app
from bot.config import Settings
from bot.core.answer import Answerer
from bot.core.answer_eval import held_out
from bot.llm.worker import ModelWorker
from knowledge.embeddings import Embedder
from knowledge.evaluation import EvalQuestion, load_questions
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore

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


@contextmanager
def answering_on(
    folder: Path, settings: Settings, embedder: Embedder, worker: ModelWorker, per_set: int
) -> Iterator[tuple[Answerer, list[EvalQuestion]]]:
    """An Answerer over a fresh knowledge base of `folder`'s corpus, and `per_set` of its
    questions spread over the whole set (default profile of the served model)."""
    with tempfile.TemporaryDirectory() as scratch:
        store = KnowledgeStore.open(Path(scratch) / "kb.db")
        try:
            Ingestor(store, embedder).add_paths([folder / "corpus.jsonl"])
            answerer = Answerer(worker, app.build_searcher(settings, store, embedder),
                                settings=app.answer_settings(settings),
                                reader=app.build_reader(settings))  # fmt: skip
            # Never scored on what the span reader trained on.
            questions, _ = held_out(
                load_questions(folder / "questions.jsonl"), answerer.trained_question_ids
            )
            step = max(1, len(questions) // per_set)
            yield answerer, questions[::step][:per_set]
        finally:
            store.close()


ANSWER_SETS = {"xquad": DEV_EVAL_DIR, "tatqa": DEV_EVAL_DIR.parent / "dev-finance"}
"""The two dev sets answers are measured on: Wikipedia and annual reports."""


def per_set_option(description: str | None) -> int:
    """`--per-set N` from the command line (default 60): questions answered per dev set."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--per-set", type=int, default=60)
    return int(parser.parse_args().per_set)


def each_answer_set(per_set: int) -> Iterator[tuple[str, Answerer, list[EvalQuestion]]]:
    """For each dev set: its name, an Answerer with the served model and default settings over a
    fresh knowledge base of its corpus, and `per_set` of its questions spread over the set."""
    settings = Settings(_env_file=None)
    embedder = app.build_embedder(settings)
    worker = app.build_worker(settings, app.build_engine(settings))
    try:
        for name, folder in ANSWER_SETS.items():
            with answering_on(folder, settings, embedder, worker, per_set) as (answerer, asked):
                yield name, answerer, asked
    finally:
        worker.close()
