"""The span reader's cost: time to the first visible text and resident memory, with and without it.

    python -m bench.reader_latency [QUESTIONS_PER_SET]

Same process, same knowledge bases, same questions (held out from the reader's training, spread
over both dev sets): first with the chat model alone (today's answering: the first streamed
piece is the first visible text), then with the span reader (a confident span is the whole
answer; otherwise the chat model's first piece). RSS after each phase. The reader's own cost is
compared with the raw library in the same run: `SpanReader.read` against one bare transformers
forward of the same windows.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from bench.answer_latency import rss_mb
from bench.common import ANSWER_SETS, answering_on, median, percentiles_ms, report
from bot import app
from bot.config import Settings
from bot.core.answer import Answerer
from bot.llm.span_reader import WINDOW_STRIDE, WINDOW_TOKENS

PER_SET = 30


def first_text_s(answerer: Answerer, question: str) -> tuple[float, bool]:
    """(seconds from the question to the first text a user sees, whether the reader answered)."""
    started = time.perf_counter()
    run = answerer.begin(question)
    if run.job is None:
        run.answer()
        return time.perf_counter() - started, run.prepared.read is not None
    next(run.pieces(), None)
    elapsed = time.perf_counter() - started
    run.answer()
    return elapsed, False


def raw_forward_s(reader: Any, question: str, passages: list[str]) -> float:
    """One bare tokenizer + forward of the reader's model over the same windows."""
    import torch

    model, tokenizer = reader._load()
    started = time.perf_counter()
    encoded = tokenizer([question] * len(passages), passages, truncation="only_second",
                        max_length=WINDOW_TOKENS, stride=WINDOW_STRIDE,
                        return_overflowing_tokens=True, padding=True,
                        return_tensors="pt")  # fmt: skip
    encoded.pop("overflow_to_sample_mapping")
    torch.set_num_threads(reader.threads)
    with torch.inference_mode():
        model(**encoded)
    return time.perf_counter() - started


def main() -> None:
    """Measure and report."""
    per_set = int(sys.argv[1]) if len(sys.argv) > 1 else PER_SET
    settings = Settings(_env_file=None)
    reader = app.build_reader(settings)
    if reader is None:
        raise SystemExit("No span reader is built: run `make reader` first.")
    embedder = app.build_embedder(settings)
    worker = app.build_worker(settings, app.build_engine(settings))
    alone: list[float] = []
    with_reader: list[float] = []
    read_s: list[float] = []
    raw_s: list[float] = []
    answered_by_reader = 0
    rss: dict[str, float] = {}
    try:
        phases = (("model alone", None), ("with the reader", reader))
        for phase, used in phases:
            for _, folder in ANSWER_SETS.items():
                with answering_on(folder, settings, embedder, worker, per_set) as (answerer, asked):
                    answerer.reader = used
                    for question in asked:
                        seconds, by_reader = first_text_s(answerer, question.question)
                        (alone if used is None else with_reader).append(seconds)
                        answered_by_reader += by_reader
                        if used is not None:
                            hits = answerer.retriever.search(question.question, k=3)  # type: ignore[union-attr]
                            passages = [h.chunk.text for h in hits]
                            started = time.perf_counter()
                            reader.read(question.question, passages)
                            read_s.append(time.perf_counter() - started)
                            raw_s.append(raw_forward_s(reader, question.question, passages))
            rss[phase] = rss_mb()
    finally:
        worker.close()
    alone_p50, alone_p95 = percentiles_ms(alone)
    reader_p50, reader_p95 = percentiles_ms(with_reader)
    report(
        "reader_latency",
        {
            "questions": len(alone),
            "first_text_p50_ms_model_alone": round(alone_p50),
            "first_text_p95_ms_model_alone": round(alone_p95),
            "first_text_p50_ms_with_reader": round(reader_p50),
            "first_text_p95_ms_with_reader": round(reader_p95),
            "first_text_ratio": round(reader_p50 / alone_p50, 3),
            "answered_by_reader": answered_by_reader,
            "read_p50_ms": round(1000 * median(read_s)),
            "raw_forward_p50_ms": round(1000 * median(raw_s)),
            "read_overhead_ratio": round(median(read_s) / median(raw_s), 3),
            "rss_mb_model_alone": round(rss["model alone"]),
            "rss_mb_with_reader": round(rss["with the reader"]),
        },
    )


if __name__ == "__main__":
    main()
