"""Scaling out, measured: people asking at once through the bot's core, the in-process engine
against llama.cpp's llama-server with parallel slots: same model, same questions, same run.

Each asker is a thread that asks its questions one after another through `Answerer.ask` (the
core every front end uses), over one knowledge base of the dev corpus; the in-process engine
answers one at a time, llama-server `SLOTS` at a time with continuous batching. Each uses its
default threads: the in-process model half the cores (`bot.llm.llama.default_threads`), the
server all of them (`bot.llm.server.server_threads`; `RAGTUNE_SERVE_THREADS=1` in the
environment measures batching alone). The order of the two alternates per round.

Run: `python -m bench.serve_throughput [ASKERS] [QUESTIONS_EACH] [ROUNDS]` (needs
`make llama-server`); the ratio is the median of the rounds' aggregate tokens/s ratios.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from pydantic import SecretStr

from bench.common import DEV_EVAL_DIR, median, percentiles_ms, report
from bot import app
from bot.config import Settings
from bot.core.answer import Answerer
from bot.llm.llama import default_threads
from bot.llm.server import server_threads
from knowledge.evaluation import load_questions

ASKERS = 8
QUESTIONS_EACH = 4
ROUNDS = 3
SLOTS = 4
KEY = secrets.token_urlsafe(32)
"""The API key this run's server asks for (`ragtune serve` takes it from the environment)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    """`ragtune serve` with SLOTS slots, waited for until it answers /health."""
    env = {**os.environ, "RAGTUNE_SERVE_SLOTS": str(SLOTS), "RAGTUNE_OPENAI_API_KEY": KEY}
    ragtune = str(Path(sys.executable).parent / "ragtune")
    proc = subprocess.Popen([ragtune, "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("llama-server did not come up")


def ask_together(answerer: Answerer, batches: list[list[str]]) -> tuple[float, int, list[float]]:
    """Every asker's questions at once: (wall seconds, answer tokens, seconds per answer)."""
    latencies: list[float] = []
    tokens = [0]
    lock = threading.Lock()

    def asker(questions: list[str]) -> None:
        for question in questions:
            started = time.perf_counter()
            answer = answerer.ask(question)
            took = time.perf_counter() - started
            with lock:
                latencies.append(took)
                tokens[0] += answer.completion.tokens if answer.completion else 0

    threads = [threading.Thread(target=asker, args=(batch,)) for batch in batches]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, tokens[0], latencies


def main() -> None:
    """Measure and report."""
    askers = int(sys.argv[1]) if len(sys.argv) > 1 else ASKERS
    each = int(sys.argv[2]) if len(sys.argv) > 2 else QUESTIONS_EACH
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else ROUNDS
    asked = [q.question for q in load_questions(DEV_EVAL_DIR / "questions.jsonl")[::7]]
    per_round = askers * each
    if len(asked) < per_round * rounds + SLOTS:
        enough = (len(asked) - SLOTS) // per_round
        raise SystemExit(f"the dev set has questions for {enough} rounds")

    def batches(number: int) -> list[list[str]]:
        """Round `number`'s questions, none asked before: no answer comes from a warm cache."""
        start = number * per_round
        return [asked[start + n * each : start + (n + 1) * each] for n in range(askers)]

    port = _free_port()
    server = start_server(port)
    results: dict[str, list[tuple[float, int, list[float]]]] = {"in-process": [], "server": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Settings(_env_file=None).model_copy(update={"db": Path(tmp) / "kb.db"})
            store = app.open_store(base)
            embedder = app.build_embedder(base)
            app.build_ingestor(base, store, embedder).add_paths([DEV_EVAL_DIR / "corpus.jsonl"])
            searcher = app.build_searcher(base, store, embedder)
            served = base.model_copy(
                update={
                    "llm_backend": "openai",
                    "openai_base_url": f"http://127.0.0.1:{port}/v1",
                    "openai_api_key": SecretStr(KEY),
                }
            )
            for number in range(rounds):
                order = ["in-process", "server"] if number % 2 == 0 else ["server", "in-process"]
                for side in order:
                    settings = base if side == "in-process" else served
                    worker = app.build_worker(settings, app.build_engine(settings))
                    try:
                        answerer = Answerer(
                            worker, searcher, settings=app.answer_settings(base)
                        )  # the same prompt budget on both sides: the served model's profile
                        ask_together(answerer, [[q] for q in asked[-SLOTS:]])  # warm, untimed
                        results[side].append(ask_together(answerer, batches(number)))
                    finally:
                        worker.close()
            store.close()
    finally:
        server.terminate()
        server.wait(timeout=30)

    def rate(run: tuple[float, int, list[float]]) -> float:
        return run[1] / run[0]

    base = Settings(_env_file=None)
    summary: dict[str, object] = {"askers": askers, "questions_each": each, "rounds": rounds,
                                  "slots": SLOTS,
                                  "in-process_threads": base.model_threads or default_threads(),
                                  "server_threads": server_threads(base.serve_threads)}  # fmt: skip
    for side, runs in results.items():
        p50, p95 = percentiles_ms([t for run in runs for t in run[2]])
        summary[f"{side}_tokens_per_s"] = round(median([rate(r) for r in runs]), 1)
        summary[f"{side}_answers_per_s"] = round(median([len(r[2]) / r[0] for r in runs]), 2)
        summary[f"{side}_answer_p50_s"] = round(p50 / 1000, 2)
        summary[f"{side}_answer_p95_s"] = round(p95 / 1000, 2)
    pairs = zip(results["server"], results["in-process"], strict=True)
    ratios = [rate(s) / rate(i) for s, i in pairs]
    summary["throughput_ratio"] = round(median(ratios), 2)
    summary["throughput_ratio_per_round"] = [round(r, 2) for r in ratios]
    report("serve_throughput", summary)


if __name__ == "__main__":
    main()
