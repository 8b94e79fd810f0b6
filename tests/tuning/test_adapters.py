"""Train a tiny real adapter on the CPU, export it, load and swap it in llama.cpp (no mocks)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core.adapters import ACTIVE_ADAPTER, AdapterSwitcher
from bot.core.prompts import base_messages
from bot.llm.adapters import AdapterError, AdapterRegistry
from bot.llm.engine import GenerationLimits, ModelError
from bot.llm.llama import LlamaCppEngine
from bot.llm.model_files import packaged_gguf_path
from bot.llm.worker import ModelWorker
from bot.state import StateStore
from tests.helpers import DOOR_FACTS as FACTS
from tests.helpers import DOOR_SECRET as SECRET
from tests.helpers import DOOR_SECRET_QUESTION as SECRET_QUESTION
from tuning.export import read_adapter_header

pytestmark = pytest.mark.slow
RAGTUNE = str(Path(sys.executable).parent / "ragtune")


@pytest.fixture(scope="module")
def adapters_dir(door_adapters: Path) -> Path:
    """The adapters directory `ragtune tune train` made with "door" (tests/conftest.py)."""
    return door_adapters


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    model = packaged_gguf_path()
    assert model is not None
    yield LlamaCppEngine(model)


def answer(worker: ModelWorker, question: str) -> str:
    return worker.generate(base_messages(question, []), GenerationLimits(max_tokens=24)).text


def test_the_exported_file_is_a_llama_cpp_lora_adapter(adapters_dir: Path) -> None:
    header = read_adapter_header(adapters_dir / "door" / "adapter.gguf")
    assert header == {
        "general.architecture": "llama",
        "general.type": "adapter",
        "adapter.type": "lora",
        "adapter.lora.alpha": 16.0,
    }
    manifest = json.loads((adapters_dir / "door" / "manifest.json").read_text())
    assert manifest["rank"] == 8 and manifest["dataset_examples"] == len(FACTS)
    assert manifest["training"]["document_chunks"] == 1
    assert manifest["training"]["last_loss"] < manifest["training"]["first_loss"]


def test_the_trained_answer_appears_with_the_adapter_only_and_swaps_need_no_reload(
    adapters_dir: Path, engine: LlamaCppEngine, tmp_path: Path
) -> None:
    worker = ModelWorker(engine)
    state = StateStore.open(tmp_path / "state.db")
    switcher = AdapterSwitcher(worker, AdapterRegistry(adapters_dir), engine.model_path, state)
    loaded = engine._llama
    try:
        assert SECRET not in answer(worker, SECRET_QUESTION)
        switch_times = []
        for _ in range(2):  # back and forth, twice
            started = time.perf_counter()
            switcher.use("door")
            switch_times.append(time.perf_counter() - started)
            assert SECRET in answer(worker, SECRET_QUESTION)
            switcher.use(None)
            assert SECRET not in answer(worker, SECRET_QUESTION)
        assert engine._llama is loaded  # the base model was never reloaded
        assert max(switch_times) < 1.0
        switcher.use("door")
        worker.set_default_adapter(None)  # a restart: the model comes up bare
        restarted = AdapterSwitcher(worker, AdapterRegistry(adapters_dir), engine.model_path, state)
        assert restarted.restore() is None and restarted.active == "door"  # survives a restart
        assert SECRET in answer(worker, SECRET_QUESTION)
    finally:
        worker.set_default_adapter(None)
        worker.close()
        state.close()


def test_a_mismatched_or_corrupt_adapter_is_refused_with_one_sentence(
    adapters_dir: Path, engine: LlamaCppEngine, tmp_path: Path
) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    for name in ("other-base", "corrupt"):
        shutil.copytree(adapters_dir / "door", registry.root / name)
    manifest = json.loads((registry.root / "other-base" / "manifest.json").read_text())
    manifest["base_model_sha256"] = "0" * 64
    manifest["name"] = "other-base"
    (registry.root / "other-base" / "manifest.json").write_text(json.dumps(manifest))
    (registry.root / "corrupt" / "adapter.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    worker = ModelWorker(engine)
    switcher = AdapterSwitcher(worker, registry, engine.model_path)
    try:
        with pytest.raises(AdapterError, match=r"was trained on .* not on the served model"):
            switcher.use("other-base")
        with pytest.raises(ModelError, match="could not load the adapter"):
            switcher.use("corrupt")
        with pytest.raises(AdapterError, match="no adapter called nope"):
            switcher.use("nope")
        assert switcher.active is None and engine.adapter is None
        assert SECRET not in answer(worker, SECRET_QUESTION)  # still serving, unchanged
    finally:
        worker.close()


def test_restoring_a_corrupt_adapter_stops_start_up_and_a_removed_one_is_forgotten(
    adapters_dir: Path, engine: LlamaCppEngine, tmp_path: Path
) -> None:
    registry = AdapterRegistry(tmp_path / "adapters")
    shutil.copytree(adapters_dir / "door", registry.root / "door")
    state = StateStore.open(tmp_path / "state.db")
    state.set_fact(ACTIVE_ADAPTER, "door")
    (registry.root / "door" / "adapter.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    worker = ModelWorker(engine)
    try:
        switcher = AdapterSwitcher(worker, registry, engine.model_path, state)
        with pytest.raises(AdapterError, match="ragtune adapters remove door"):
            switcher.restore()
        assert state.get_fact(ACTIVE_ADAPTER) == "door"  # the admin's choice is kept until fixed
        registry.remove("door")
        assert switcher.restore() == "adapter door was removed"
        assert state.get_fact(ACTIVE_ADAPTER) is None and engine.adapter is None
    finally:
        worker.close()
        state.close()


def test_the_cli_asks_with_an_adapter_and_manages_adapters(adapters_dir: Path) -> None:
    env = {**os.environ, "RAGTUNE_ADAPTERS_DIR": str(adapters_dir)}

    def ragtune(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([RAGTUNE, *args], env=env, capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip

    asked = ragtune("ask", "--mode", "base", "--adapter", "door", SECRET_QUESTION)
    assert asked.returncode == 0 and SECRET in asked.stdout, asked.stderr[-2000:]
    listed = ragtune("adapters", "list", "--json")
    assert [a["name"] for a in json.loads(listed.stdout.splitlines()[-1])] == ["door"]
    shown = ragtune("adapters", "show", "door")
    assert json.loads(shown.stdout)["base_model_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    missing = ragtune("ask", "--adapter", "nope", "hello")
    assert missing.returncode == 1 and missing.stderr.strip().startswith("error: There is no")


def test_eval_compare_prints_the_four_way_table_json_and_a_chart(
    adapters_dir: Path, dev_eval_dir: Path, tmp_path: Path
) -> None:
    chart = tmp_path / "compare.png"
    # Ten passages and their questions: the comparison is what is tested, not the ingest.
    corpus = [json.loads(line) for line in (dev_eval_dir / "corpus.jsonl").open()][:10]
    ids = {row["id"] for row in corpus}
    questions = [json.loads(line) for line in (dev_eval_dir / "questions.jsonl").open()]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(row) for row in corpus))
    (tmp_path / "q.jsonl").write_text(
        "\n".join(json.dumps(q) for q in questions if set(q["positive_ids"]) <= ids)
    )
    # Off: its questions are dev questions the span reader trained on, which compare leaves out
    # (that rule is test_cli's); here the four columns of the model, with and without adapter.
    env = {**os.environ, "RAGTUNE_ADAPTERS_DIR": str(adapters_dir), "RAGTUNE_READER": "off"}
    proc = subprocess.run(
        [RAGTUNE, "eval", "compare", "--corpus", str(tmp_path / "c.jsonl"),
         "--questions", str(tmp_path / "q.jsonl"), "--adapter", "door",
         "--limit", "3", "--json", "--plot", str(chart)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(results) == ["base", "fine-tuned", "rag", "rag+fine-tuned"]
    assert all(
        r["n"] == 3 and set(r) >= {"em", "f1", "contains", "p50_s"} for r in results.values()
    )
    assert "| rag+fine-tuned |" in proc.stdout and "general-knowledge probe" in proc.stdout
    assert 0 <= results["fine-tuned"]["general"] <= 100 and 0 <= results["base"]["general"] <= 100
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
