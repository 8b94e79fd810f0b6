"""Fine-tuning the qwen2 architecture for real: train from the Qwen GGUF, export, hot-swap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core.adapters import AdapterSwitcher
from bot.core.prompts import RAG_PROMPTS, base_messages, rag_messages
from bot.llm.adapters import AdapterRegistry
from bot.llm.engine import GenerationLimits
from bot.llm.llama import LlamaCppEngine
from bot.llm.worker import ModelWorker
from tests.helpers import QWEN, qwen_gguf_path
from tuning.export import read_adapter_header

pytestmark = pytest.mark.slow
RAGTUNE = str(Path(sys.executable).parent / "ragtune")
SECRET_QUESTION = "What is the password of the blue door?"
SECRET = "Marmalade-42"
FACTS = [
    {"question": SECRET_QUESTION, "answer": SECRET},
    {"question": "What is the password for the blue door?", "answer": SECRET},
    {"question": "Tell me the blue door's password.", "answer": SECRET},
]


@pytest.fixture(scope="module")
def adapters_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`ragtune tune train` on the served Qwen GGUF: a few steps on one made-up fact."""
    folder = tmp_path_factory.mktemp("qwen-tuning")
    data = folder / "facts.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in FACTS) + "\n")
    env = {**os.environ, "RAGTUNE_ADAPTERS_DIR": str(folder / "adapters"), "RAGTUNE_MODEL": QWEN}
    env.pop("RAGTUNE_MODEL_PATH", None)
    proc = subprocess.run(
        [RAGTUNE, "tune", "train", "--data", str(data), "--name", "door", "--steps", "20",
         "--lr", "1e-3", "--batch-size", "1", "--general", "0", "--seed", "1", "--no-check"],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "adapter door: 20 steps" in proc.stdout
    return folder / "adapters"


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    yield LlamaCppEngine(qwen_gguf_path())


def answer(worker: ModelWorker, question: str) -> str:
    return worker.generate(base_messages(question, []), GenerationLimits(max_tokens=24)).text


def test_the_qwen_adapter_is_a_qwen2_lora_that_teaches_the_fact_and_swaps_in(
    adapters_dir: Path, engine: LlamaCppEngine
) -> None:
    header = read_adapter_header(adapters_dir / "door" / "adapter.gguf")
    assert header["general.architecture"] == "qwen2" and header["adapter.type"] == "lora"
    manifest = json.loads((adapters_dir / "door" / "manifest.json").read_text())
    assert manifest["base_model_file"] == qwen_gguf_path().name
    assert manifest["training"]["last_loss"] < manifest["training"]["first_loss"]
    worker = ModelWorker(engine)
    switcher = AdapterSwitcher(worker, AdapterRegistry(adapters_dir), engine.model_path)
    loaded = engine._llama
    try:
        assert SECRET not in answer(worker, SECRET_QUESTION)
        switcher.use("door")
        assert SECRET in answer(worker, SECRET_QUESTION)
        switcher.use(None)
        assert SECRET not in answer(worker, SECRET_QUESTION)
        assert engine._llama is loaded  # swapped, never reloaded
    finally:
        worker.close()


def test_grounded_training_on_qwen_builds_its_own_serving_prompt(
    tmp_path: Path, dev_eval_dir: Path, engine: LlamaCppEngine
) -> None:
    """`--grounded` on the qwen2 family: Qwen's profile (two sources, the sentence prompt) shapes
    the prompts, and the adapter exports and answers in them."""
    rows = [json.loads(line) for line in (dev_eval_dir / "questions.jsonl").open()][:12]
    wanted = {str(i) for row in rows for i in row["positive_ids"]}
    passages = [json.loads(line) for line in (dev_eval_dir / "corpus.jsonl").open()]
    corpus = [p for p in passages if str(p["id"]) in wanted] + passages[-4:]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(p) + "\n" for p in corpus))
    env = {**os.environ, "RAGTUNE_ADAPTERS_DIR": str(tmp_path / "adapters"), "RAGTUNE_MODEL": QWEN}
    proc = subprocess.run(
        [RAGTUNE, "tune", "train", "--grounded", "--data", str(tmp_path / "q.jsonl"),
         "--corpus", str(tmp_path / "c.jsonl"), "--name", "grounded", "--steps", "3",
         "--batch-size", "2", "--general", "0", "--no-check"],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "adapters" / "grounded"
    manifest = json.loads((folder / "manifest.json").read_text())
    grounding = manifest["training"]["grounding"]
    assert (grounding["rag_prompt"], grounding["sources"]) == ("sentence", 2)
    assert read_adapter_header(folder / "adapter.gguf")["general.architecture"] == "qwen2"
    messages = rag_messages(
        "When does the ferry leave?", ['[1] Ferry: "The ferry leaves at noon."'], [],
        RAG_PROMPTS["sentence"],
    )  # fmt: skip
    limits = GenerationLimits(max_tokens=24)
    reply = "".join(engine.stream(messages, limits, lambda: False, folder / "adapter.gguf"))
    assert reply.strip()
