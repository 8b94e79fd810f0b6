"""A grounded adapter for real (issue 17): `ragtune tune train --grounded` on dev-set questions,
a few steps with the packaged SmolLM2-135M. Given a source that does not hold the answer to a
dev question it never trained on, it says so where the base model makes one up; on a domain it
never saw (the café FAQ, ten questions written for this test) it answers no worse than RAG alone.

Café questions whose one café-like source does not answer them are still made up: a strict
expected failure (a pass fails the run, so the mark comes off when it works).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import app
from bot.config import Settings
from bot.core.answer import Answerer, Mode
from bot.llm.adapters import ADAPTER_FILE
from bot.llm.llama import LlamaCppEngine
from bot.llm.worker import ModelWorker
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore
from tests.bot.cafe_questions import CAFE_FAQ, NEW_CAFE_QUESTIONS, UNANSWERABLE, is_right
from tests.tuning.held_out import one_source_reply, other_article_prompts
from tuning.grounded import DONT_KNOW

pytestmark = pytest.mark.slow
RAGTUNE = str(Path(sys.executable).parent / "ragtune")
TRAIN_QUESTIONS = 120


@pytest.fixture(scope="module")
def grounded(tmp_path_factory: pytest.TempPathFactory, dev_eval_dir: Path) -> Path:
    """The adapter file of `ragtune tune train --grounded`, trained on dev-set questions with
    their passages (and others, for distractors) as the corpus."""
    folder = tmp_path_factory.mktemp("grounded")
    rows = [json.loads(line) for line in (dev_eval_dir / "questions.jsonl").open()]
    rows = rows[:TRAIN_QUESTIONS]
    wanted = {str(i) for row in rows for i in row["positive_ids"]}
    passages = [json.loads(line) for line in (dev_eval_dir / "corpus.jsonl").open()]
    corpus = [p for p in passages if str(p["id"]) in wanted] + passages[-20:]
    (folder / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "c.jsonl").write_text("".join(json.dumps(p) + "\n" for p in corpus))
    env = {**os.environ, "RAGTUNE_ADAPTERS_DIR": str(folder / "adapters")}
    proc = subprocess.run(
        [RAGTUNE, "tune", "train", "--grounded", "--data", str(folder / "q.jsonl"),
         "--corpus", str(folder / "c.jsonl"), "--name", "grounded", "--steps", "40",
         "--lr", "1e-3", "--batch-size", "4", "--general", "0", "--gold-share", "0.9",
         "--seed", "1", "--no-check"],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "prompts hold the answer" in proc.stderr and "adapter grounded: 40 steps" in proc.stdout
    return folder / "adapters" / "grounded" / ADAPTER_FILE


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    """The packaged default model, loaded once."""
    served = app.served_model(Settings(_env_file=None))
    assert served is not None
    yield LlamaCppEngine(served.info.path)


def test_given_another_articles_passage_it_says_so_where_the_base_model_makes_one_up(
    grounded: Path, engine: LlamaCppEngine, dev_eval_dir: Path
) -> None:
    base_made_up = tuned_said_so = 0
    served = app.answer_settings(Settings(_env_file=None))  # what the adapter was trained in
    asked = other_article_prompts(dev_eval_dir, TRAIN_QUESTIONS)
    for prompt in asked:
        style = (served.rag_prompt, served.context_tokens)
        base, tuned = (one_source_reply(engine, a, prompt, *style) for a in (None, grounded))
        print(f"{prompt[0]} [{prompt[1]}]\n  base: {base!r}\n  grounded: {tuned!r}")
        made_up = DONT_KNOW.lower() not in base.lower()
        base_made_up += made_up
        tuned_said_so += made_up and DONT_KNOW.lower() in tuned.lower()
    print(f"base made up {base_made_up} of {len(asked)}; grounded said so for {tuned_said_so}")
    assert base_made_up >= 8  # the base model answers anyway
    assert tuned_said_so >= base_made_up // 2  # the grounded adapter says the source lacks it


@pytest.mark.xfail(
    strict=True,
    reason="not yet achieved (beyond issue 17's done-when): this CI-size adapter says so for 1 "
    "of the 4 (the base model made up all 4); bench.grounded_knobs 2026-12-06: 0 or 1 of 4 "
    "with sentence replies at gold shares 0.9 to 0.7 (answer-removed negatives too), 4 of 4 "
    'only with unpaired negatives at 0.7, which then says "I don\'t know." to all ten café '
    "questions",
)
def test_with_cafe_sources_that_do_not_answer_it_says_so_where_the_base_model_makes_one_up(
    grounded: Path, engine: LlamaCppEngine
) -> None:
    base_made_up = tuned_said_so = 0
    for prompt in UNANSWERABLE:
        base, tuned = (one_source_reply(engine, adapter, prompt, "extractive", 300)
                       for adapter in (None, grounded))  # fmt: skip
        print(f"{prompt[0]}\n  base: {base!r}\n  grounded: {tuned!r}")
        base_made_up += DONT_KNOW.lower() not in base.lower()
        tuned_said_so += DONT_KNOW.lower() in tuned.lower()
    assert base_made_up >= 3  # the base model answers anyway
    assert tuned_said_so >= 3  # the grounded adapter says the sources do not hold it


def test_on_a_domain_it_never_saw_it_answers_no_worse_than_rag_alone(
    grounded: Path,
    engine: LlamaCppEngine,
    tmp_path: Path,
    real_embedder: SentenceTransformerEmbedder,
) -> None:
    settings = Settings(_env_file=None)
    with KnowledgeStore.open(tmp_path / "kb.db") as store:
        Ingestor(store, real_embedder).add_paths([CAFE_FAQ])
        searcher = app.build_searcher(settings, store, real_embedder)
        worker = ModelWorker(engine)
        try:
            answerer = Answerer(worker, searcher, settings=app.answer_settings(settings))
            right = {"rag": 0, "rag+grounded": 0}
            for question, check in NEW_CAFE_QUESTIONS:
                for name, adapter in (("rag", None), ("rag+grounded", grounded)):
                    answer = answerer.ask(question, mode=Mode.RAG, adapter=adapter)
                    print(f"{name}: {question} -> {answer.text!r}")
                    right[name] += is_right(answer.text, check)
        finally:
            worker.close()
    print(f"café, ten new questions: {right}")
    assert right["rag+grounded"] >= right["rag"]
    assert right["rag"] >= 5  # the comparison means something: RAG alone gets most of them
