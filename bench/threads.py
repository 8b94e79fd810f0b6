"""llama.cpp threads with the cores shared: tokens/s idle, with a CPU hog, with the embedder busy.

    python -m bench.threads [--runs 3] [--tokens 48]

For each thread setting (n_threads for generation, n_threads_batch for the prompt) and each
load — idle; one other process spinning on one core; this process's embedder encoding in a
loop (what an ingest does beside an answer) — generates the same greedy answer `--runs` times
with the raw llama-cpp-python `Llama` and prints the median generation tokens/s and prompt
time. ggml's thread pool (its spin-wait "poll" setting) is not reachable from llama-cpp-python
0.3, so thread counts are the knob a user has (RAGTUNE_MODEL_THREADS).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.common import median, report
from bot.llm.llama import default_threads
from bot.llm.model_files import packaged_gguf_path

CORES = len(os.sched_getaffinity(0))
# (label, generation threads, prompt threads). The old default used every core (up to 4) for
# both; the new one half of them (bot.llm.llama.default_threads).
OLD, NEW = min(CORES, 4), default_threads()
SETTINGS = [
    (f"old default: {OLD} / {OLD}", OLD, OLD),
    (f"1 / {OLD}", 1, OLD),
    (f"new default: {NEW} / {NEW}", NEW, NEW),
]
PROMPT = [
    {"role": "system", "content": "You answer questions using only the numbered sources."},
    {"role": "user", "content": 'Sources:\n[1] Café: "The café is open from 8 am to 6 pm on '
     'weekdays and from 9 am to 4 pm on Saturdays. It is closed on Sundays."\n\nQuestion: '
     "When is the café open? Answer in three sentences."},
]  # fmt: skip


def _spin() -> None:
    while True:
        pass


@contextmanager
def cpu_hog() -> Iterator[None]:
    """Another process keeping one core busy."""
    hog = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
    hog.start()
    time.sleep(0.5)
    try:
        yield
    finally:
        hog.kill()
        hog.join()


@contextmanager
def embedder_busy() -> Iterator[None]:
    """This process's sentence-transformers embedder encoding in a loop, as an ingest does."""
    from bot import app
    from bot.config import Settings

    embedder = app.build_embedder(Settings(_env_file=None))
    texts = ["The café is open from 8 am to 6 pm on weekdays."] * 32
    embedder.embed(texts)
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            embedder.embed(texts)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join()


@contextmanager
def idle() -> Iterator[None]:
    """Nothing else running."""
    yield


LOADS = {"idle": idle, "one core busy": cpu_hog, "embedder busy": embedder_busy}


def generate(llama: object, tokens: int) -> tuple[float, float]:
    """(generation tokens/s, seconds to the first token) of one greedy answer."""
    llama.reset()  # type: ignore[attr-defined]  # evaluate the whole prompt every run
    started = time.perf_counter()
    first: float | None = None
    count = 0
    for _ in llama.create_chat_completion(  # type: ignore[attr-defined]
        PROMPT, max_tokens=tokens, temperature=0.0, stream=True
    ):
        count += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    assert first is not None
    return (count - 1) / (end - first) if end > first else 0.0, first - started


def main() -> None:
    """Every thread setting under every load, medians of several runs."""
    import llama_cpp

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    model = os.environ.get("RAGTUNE_MODEL_PATH") or str(packaged_gguf_path())
    results: dict[str, dict[str, dict[str, float]]] = {}
    for label, threads, batch in SETTINGS:
        llama = llama_cpp.Llama(model_path=model, n_ctx=1024, n_threads=threads,
                                n_threads_batch=batch, seed=0, verbose=False)  # fmt: skip
        generate(llama, 8)  # warm-up
        results[label] = {}
        for load, make in LOADS.items():
            with make():
                runs = [generate(llama, args.tokens) for _ in range(args.runs)]
            results[label][load] = {
                "tokens_per_s": round(median([r[0] for r in runs]), 1),
                "first_token_s": round(median([r[1] for r in runs]), 3),
                "worst_tokens_per_s": round(min(r[0] for r in runs), 1),
            }
            print(f"{label:22} {load:14} {results[label][load]}", flush=True)
        del llama
    report("threads", {"cores": CORES, "runs": args.runs, "results": results})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
