"""Answering: overhead vs raw llama-cpp-python, time to first token, resident memory.

- Overhead: `Answerer.ask` (retrieval + prompt + worker queue + generation) vs a raw
  `Llama.create_chat_completion` of the same final prompt on the same Llama object, the prompt
  cache cleared before each side so both evaluate the whole prompt. Same greedy output.
- Time to first token: with default settings, in steady state (the fixed system prompt is
  already evaluated, as in a running bot), vs the raw prompt-evaluation time of the same prompt.
- Resident memory with the default model and embedder loaded, after answering.

Run: `make bench` or `python -m bench.answer_latency [QUESTIONS]`.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import DEV_EVAL_DIR, median, percentiles_ms, report
from bot import app
from bot.config import Settings
from bot.core.answer import Answerer
from bot.llm.llama import LlamaCppEngine
from knowledge.evaluation import load_questions

QUESTIONS = 40


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; falls back to the peak)."""
    statm = Path("/proc/self/statm")
    if statm.exists():
        pages = int(statm.read_text().split()[1])
        return pages * resource.getpagesize() / 1e6
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def raw_generation(llama: Any, messages: list[Any], max_tokens: int) -> tuple[float, float]:
    """(seconds to first token, seconds to last token) of the raw library call."""
    started = time.perf_counter()
    first = None
    for chunk in llama.create_chat_completion(
        messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True
    ):
        if first is None and chunk["choices"][0]["delta"].get("content"):
            first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


def main() -> None:
    """Measure and report."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else QUESTIONS
    settings = Settings(_env_file=None)
    questions = load_questions(DEV_EVAL_DIR / "questions.jsonl")[::7][:count]
    with tempfile.TemporaryDirectory() as tmp:
        store = app.open_store(settings, Path(tmp) / "kb.db")
        embedder = app.build_embedder(settings)
        app.build_ingestor(settings, store, embedder).add_paths([DEV_EVAL_DIR / "corpus.jsonl"])
        engine = app.build_engine(settings)
        assert isinstance(engine, LlamaCppEngine)
        llama: Any = engine._llama  # the raw library object, used only while the worker is idle
        worker = app.build_worker(settings, engine)
        answering = app.answer_settings(settings)
        answerer = Answerer(
            worker, app.build_searcher(settings, store, embedder), settings=answering
        )
        max_tokens = answering.limits.max_tokens
        ours, raw, ttft, prompt_eval = [], [], [], []
        for question in questions:
            # Steady-state time to first token: the previous answer left the system prompt cached.
            started = time.perf_counter()
            run = answerer.begin(question.question)
            if run.job is None:
                continue
            next(run.pieces())
            ttft.append(time.perf_counter() - started)
            run.answer()
            prepared = run.prepared
            llama.reset()  # raw prompt evaluation starts from an empty cache
            prompt_eval.append(raw_generation(llama, prepared.messages, 1)[0])
            # Overhead: both sides evaluate the whole prompt from an empty cache.
            llama.reset()
            started = time.perf_counter()
            answer = answerer.ask(question.question)
            ours.append(time.perf_counter() - started)
            llama.reset()
            _, raw_total = raw_generation(llama, prepared.messages, max_tokens)
            raw.append(raw_total)
            assert answer.completion is not None
        memory = rss_mb()
        worker.close()
        store.close()
    ttft_p50, ttft_p95 = percentiles_ms(ttft)
    report(
        "answer_latency",
        {
            "questions": len(ours),
            "ask_to_last_token_p50_s": round(median(ours), 3),
            "raw_chat_completion_p50_s": round(median(raw), 3),
            "overhead_ratio": round(median(ours) / median(raw), 3),
            "first_token_p50_ms": round(ttft_p50),
            "first_token_p95_ms": round(ttft_p95),
            "raw_prompt_eval_p50_ms": round(percentiles_ms(prompt_eval)[0]),
            "rss_mb": round(memory),
        },
    )


if __name__ == "__main__":
    main()
