"""What grounded training's knobs do at the size CI trains (issue 17): each configuration trains
`ragtune tune train --grounded` on the first 120 dev questions (their passages and 20 others as
the corpus, 40 steps), then the adapter is asked, beside RAG alone:

- four café questions whose one source does not answer them ("I don't know." is right), and ten
  dev questions it never trained on, each with another article's passage (`dev_abstained`);
- ten café questions with the café FAQ as the knowledge base (a domain it never trained on);
- dev questions it never trained on (other passages, same Wikipedia domain) and TAT-QA questions
  (annual reports: another domain), each over its whole corpus, scored as `eval compare` does.

Run: `python -m bench.grounded_knobs [--per-set N] [NAME=OPTIONS ...]`, e.g.
`python -m bench.grounded_knobs ci= gold95="--gold-share 0.95"`; the options are added to the
CI fixture's (later ones win); `NAME=@PATH` asks an adapter file trained elsewhere (e.g. by
`bench.rag_vs_ft`) instead. About 5 minutes per configuration on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import ANSWER_SETS, DEV_EVAL_DIR, read_jsonl, report
from bot import app
from bot.config import Settings
from bot.core.answer import Answerer, Mode
from bot.core.answer_eval import evaluate_answers
from bot.llm.adapters import ADAPTER_FILE
from bot.llm.llama import LlamaCppEngine
from knowledge.evaluation import EvalQuestion, load_questions
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore
from tests.bot.cafe_questions import CAFE_FAQ, NEW_CAFE_QUESTIONS, UNANSWERABLE, is_right
from tests.tuning.held_out import one_source_reply, other_article_prompts
from tuning.grounded import DONT_KNOW

RAGTUNE = str(Path(sys.executable).parent / "ragtune")
TRAIN_QUESTIONS = 120
CI_OPTIONS = ("--steps 40 --lr 1e-3 --batch-size 4 --general 0 --gold-share 0.9 --seed 1 "
              "--no-check")  # fmt: skip
"""What tests/tuning/test_grounded_adapter.py trains with."""


def training_files(folder: Path, count: int = TRAIN_QUESTIONS) -> tuple[Path, Path]:
    """The CI fixture's questions and corpus (its first `count` dev questions)."""
    rows = read_jsonl(DEV_EVAL_DIR / "questions.jsonl")[:count]
    wanted = {str(i) for row in rows for i in row["positive_ids"]}  # type: ignore[attr-defined]
    passages = read_jsonl(DEV_EVAL_DIR / "corpus.jsonl")
    corpus = [p for p in passages if str(p["id"]) in wanted] + passages[-20:]
    questions, corpus_file = folder / "q.jsonl", folder / "c.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    corpus_file.write_text("".join(json.dumps(p) + "\n" for p in corpus))
    return questions, corpus_file


def abstentions(
    engine: LlamaCppEngine,
    adapter: Path | None,
    rag_prompt: str,
    prompts: list[tuple[str, str, str]] = UNANSWERABLE,
) -> int:
    """How many of `prompts` (question, title, a source without the answer) get "I don't know."
    in the served prompt style: the café's by default."""
    said = 0
    for prompt in prompts:
        reply = one_source_reply(engine, adapter, prompt, rag_prompt, 300)
        said += DONT_KNOW.lower() in reply.lower()
    return said


def scores(
    answerers: dict[str, tuple[Answerer, list[EvalQuestion]]], adapter: Path | None
) -> dict[str, object]:
    """Café questions right, and EM/F1/contains on each dev set, with `adapter` (None: RAG)."""
    cafe_answerer, _ = answerers["cafe"]
    replies = [(cafe_answerer.ask(q, mode=Mode.RAG, adapter=adapter).text, check)
               for q, check in NEW_CAFE_QUESTIONS]  # fmt: skip
    result: dict[str, object] = {
        "cafe_right": sum(is_right(reply, check) for reply, check in replies),
        "cafe_wrong": [reply[:80] for reply, check in replies if not is_right(reply, check)],
    }
    for name, (answerer, questions) in answerers.items():
        if name != "cafe" and questions:
            got = evaluate_answers(answerer, questions, mode=Mode.RAG, adapter=adapter)
            result[name] = {"em": round(got.em, 1), "f1": round(got.f1, 1),
                            "contains": round(got.contains, 1)}  # fmt: skip
    return result


def train(
    name: str, options: str, adapters: Path, questions: Path, corpus: Path
) -> tuple[Path, dict[str, object]]:
    """Train one configuration grounded on the CI fixture's files: its adapter file and log."""
    command = [RAGTUNE, "tune", "train", "--grounded", "--data", str(questions),
               "--corpus", str(corpus), "--name", name, "--replace",
               *shlex.split(CI_OPTIONS), *shlex.split(options)]  # fmt: skip
    env = {**os.environ, "RAGTUNE_ADAPTERS_DIR": str(adapters)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    grounding = [line for line in done.stderr.splitlines() if "prompts hold" in line]
    return adapters / name / ADAPTER_FILE, {
        "options": options,
        "trained": done.stdout.splitlines()[0],
        "grounding": grounding[-1].strip() if grounding else "",
    }


def main() -> None:
    """Train each configuration, ask, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-set", type=int, default=40, help="0: café questions only.")
    parser.add_argument("--train-questions", type=int, default=TRAIN_QUESTIONS)
    parser.add_argument("--adapters", type=Path, help="Keep the adapters here (default: not).")
    parser.add_argument("configs", nargs="*", default=["ci="])
    args = parser.parse_args()
    configs = dict(arg.split("=", 1) for arg in args.configs)
    settings = Settings(_env_file=None)
    rag_prompt = app.answer_settings(settings).rag_prompt
    held_out = other_article_prompts(DEV_EVAL_DIR, args.train_questions)
    embedder = app.build_embedder(settings)
    engine = app.build_engine(settings)
    assert isinstance(engine, LlamaCppEngine)
    worker = app.build_worker(settings, engine)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        answerers: dict[str, tuple[Answerer, list[EvalQuestion]]] = {}
        stores = []
        sets = [("cafe", CAFE_FAQ)]
        if args.per_set:
            sets += [(name, where / "corpus.jsonl") for name, where in ANSWER_SETS.items()]
        for name, corpus in sets:
            store = KnowledgeStore.open(folder / f"{name}.db")
            stores.append(store)
            Ingestor(store, embedder).add_paths([corpus])
            answerer = Answerer(worker, app.build_searcher(settings, store, embedder),
                                settings=app.answer_settings(settings))  # fmt: skip
            questions: list[EvalQuestion] = []
            if name != "cafe":
                asked = load_questions(corpus.parent / "questions.jsonl")
                if name == "xquad":  # only questions the adapters never trained on
                    asked = asked[args.train_questions :]
                step = max(1, len(asked) // args.per_set)
                questions = asked[::step][: args.per_set]
            answerers[name] = (answerer, questions)
        results: dict[str, object] = {
            "rag": {
                "abstained": abstentions(engine, None, rag_prompt),
                "dev_abstained": abstentions(engine, None, rag_prompt, held_out),
                **scores(answerers, None),
            }
        }
        print(json.dumps({"rag": results["rag"]}), file=sys.stderr, flush=True)
        questions_file, corpus_file = training_files(folder, args.train_questions)
        for name, options in configs.items():
            if options.startswith("@"):  # an adapter trained elsewhere, e.g. by bench.rag_vs_ft
                adapter, trained = Path(options[1:]), {"options": options}
            else:
                adapter, trained = train(name, options, args.adapters or folder / "adapters",
                                         questions_file, corpus_file)  # fmt: skip
            results[name] = {
                **trained,
                "abstained": abstentions(engine, adapter, rag_prompt),
                "dev_abstained": abstentions(engine, adapter, rag_prompt, held_out),
                **scores(answerers, adapter),
            }
            print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
        for store in stores:
            store.close()
    worker.close()
    report("grounded_knobs", results)


if __name__ == "__main__":
    main()
