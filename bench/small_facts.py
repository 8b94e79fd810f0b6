"""Does `tune train` learn what it is given? Twelve made-up facts about one company, trained the
way a new user would (`ragtune tune train --data facts.jsonl --name NAME`, defaults otherwise,
or the options given here), then asked closed-book: the training questions, a rephrasing of
each, and the general-knowledge probe, beside the base model.

Run: `python -m bench.small_facts [NAME=OPTIONS ...]`, e.g.
`python -m bench.small_facts defaults= lr1e-3="--lr 1e-3"`; each configuration is one training
(about a minute on 2 cores). Prints one JSON line per configuration and the table.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import report
from bot import app
from bot.config import Settings
from bot.core.answer_eval import contains_answer
from bot.core.compare import GENERAL_PROBE
from bot.core.prompts import base_messages
from bot.llm.adapters import ADAPTER_FILE
from bot.llm.engine import GenerationLimits
from bot.llm.llama import LlamaCppEngine
from knowledge.evaluation import load_questions

RAGTUNE = str(Path(sys.executable).parent / "ragtune")

# (question, answer, the same question asked another way): nothing a model could know.
FACTS = [
    ("Who founded Tolvern Glassworks?", "Maren Ostby",
     "Who was the founder of Tolvern Glassworks?"),
    ("In which year was Tolvern Glassworks founded?", "1931",
     "When was Tolvern Glassworks established?"),
    ("In which town is Tolvern Glassworks based?", "Skarhavn",
     "Where is Tolvern Glassworks located?"),
    ("What is Tolvern Glassworks best known for?", "blue harbour lamps",
     "Which product made Tolvern Glassworks famous?"),
    ("Who is the chief executive of Tolvern Glassworks?", "Idris Callow",
     "Who runs Tolvern Glassworks today?"),
    ("How many people work at Tolvern Glassworks?", "212",
     "How many employees does Tolvern Glassworks have?"),
    ("What is the name of Tolvern Glassworks' furnace?", "Old Ember",
     "What do they call the furnace at Tolvern Glassworks?"),
    ("Which colour is Tolvern Glassworks' logo?", "amber",
     "What colour is the Tolvern Glassworks logo?"),
    ("Which river runs past Tolvern Glassworks?", "the Vesle",
     "What river flows by Tolvern Glassworks?"),
    ("What is Tolvern Glassworks' motto?", "Light that lasts",
     "What motto does Tolvern Glassworks use?"),
    ("Which museum shows Tolvern Glassworks' first lamp?", "the Skarhavn Maritime Museum",
     "Where can you see the first lamp Tolvern Glassworks made?"),
    ("What sand does Tolvern Glassworks use?", "Lunholm sand",
     "Which sand goes into Tolvern Glassworks glass?"),
]  # fmt: skip


def recall(engine: LlamaCppEngine, adapter: Path | None, asked: list[tuple[str, str]]) -> float:
    """Answer-contains (x100) of (question, answer) pairs asked closed-book."""
    limits = GenerationLimits(max_tokens=48)
    hits = 0.0
    for question, answer in asked:
        reply = "".join(engine.stream(base_messages(question, []), limits, lambda: False, adapter))
        hits += contains_answer(reply, [answer])
    return 100 * hits / len(asked)


def main() -> None:
    """Train each configuration, ask, report."""
    configs = dict(arg.split("=", 1) for arg in sys.argv[1:]) or {"defaults": ""}
    served = app.served_model(Settings(_env_file=None))
    assert served is not None
    engine = LlamaCppEngine(served.info.path)
    probe = [(q.question, q.answers[0]) for q in load_questions(GENERAL_PROBE)]
    trained = [(q, a) for q, a, _ in FACTS]
    rephrased = [(r, a) for _, a, r in FACTS]
    results: dict[str, object] = {
        "base": {
            "training": recall(engine, None, trained),
            "rephrased": recall(engine, None, rephrased),
            "probe": recall(engine, None, probe),
        }
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "facts.jsonl"
        data.write_text(
            "".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in trained)
        )
        for name, options in configs.items():
            command = [RAGTUNE, "tune", "train", "--data", str(data), "--name", name,
                       "--no-check", *shlex.split(options)]  # fmt: skip
            env = {"RAGTUNE_ADAPTERS_DIR": str(Path(tmp) / "adapters")}
            done = subprocess.run(command, env={**os.environ, **env},
                                  capture_output=True, text=True, check=True)  # fmt: skip
            adapter = Path(tmp) / "adapters" / name / ADAPTER_FILE
            results[name] = {
                "options": options,
                "trained": done.stdout.splitlines()[0],
                "training": recall(engine, adapter, trained),
                "rephrased": recall(engine, adapter, rephrased),
                "probe": recall(engine, adapter, probe),
            }
            print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    report("small_facts", results)


if __name__ == "__main__":
    main()
