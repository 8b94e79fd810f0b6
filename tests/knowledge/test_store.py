from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from knowledge.connection import connect
from knowledge.errors import BadDocumentError, EmbedderMismatchError, NewerSchemaError
from knowledge.ingest import Ingestor, Outcome
from knowledge.reindex import reindex
from knowledge.search import HybridSearcher
from knowledge.store import KnowledgeStore
from tests.helpers import HashEmbedder, consistent_chunk_count

PARAGRAPHS = [
    f"Paragraph {i} explains rule {i}. It says that widget {i} must be oiled weekly. "
    f"Failure to oil widget {i} voids the warranty for part {i}."
    for i in range(12)
]


def _write(path: Path, paragraphs: list[str]) -> Path:
    path.write_text("\n\n".join(paragraphs))
    return path


def _ingestor(store: KnowledgeStore, embedder: HashEmbedder) -> Ingestor:
    return Ingestor(store, embedder, chunk_chars=200, overlap_chars=0)


def snapshot(store: KnowledgeStore) -> tuple[object, ...]:
    """Everything a user could observe about the knowledge base."""
    chunks = [store.document_chunks(d.id) for d in store.list_documents()]
    return (store.list_documents(), chunks, store.count_rows(), store.embedding_model)


def test_add_then_list_with_chunk_counts(store: KnowledgeStore, tmp_path: Path) -> None:
    embedder = HashEmbedder()
    report = _ingestor(store, embedder).add_paths([_write(tmp_path / "rules.txt", PARAGRAPHS)])
    (result,) = report.results
    assert result.outcome is Outcome.ADDED
    (doc,) = store.list_documents()
    assert doc.title == "rules" and doc.source == str((tmp_path / "rules.txt").resolve())
    assert doc.chunks == result.chunks_embedded == embedder.embedded > 1
    assert consistent_chunk_count(store) == doc.chunks


def test_unchanged_document_embeds_nothing(store: KnowledgeStore, tmp_path: Path) -> None:
    path = _write(tmp_path / "rules.txt", PARAGRAPHS)
    _ingestor(store, HashEmbedder()).add_paths([path])
    before = snapshot(store)
    again = HashEmbedder()
    report = _ingestor(store, again).add_paths([path])
    assert report.results[0].outcome is Outcome.UNCHANGED
    assert again.embedded == 0
    assert snapshot(store) == before


def test_changed_document_is_replaced_in_place_reembedding_only_changed_chunks(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    path = _write(tmp_path / "rules.txt", PARAGRAPHS)
    _ingestor(store, HashEmbedder()).add_paths([path])
    (old,) = store.list_documents()
    old_chunks = {c.hash: c.id for c in store.document_chunks(old.id)}

    edited = [*PARAGRAPHS]
    edited[5] = "Paragraph 5 was rewritten: widgets now need grease, not oil."
    _write(path, edited)
    embedder = HashEmbedder()
    (result,) = _ingestor(store, embedder).add_paths([path]).results

    (new,) = store.list_documents()
    assert result.outcome is Outcome.REPLACED and new.id == old.id
    assert 0 < embedder.embedded == result.chunks_embedded < new.chunks
    kept = [c for c in store.document_chunks(new.id) if c.hash in old_chunks]
    assert len(kept) == result.chunks_reused == new.chunks - result.chunks_embedded
    assert all(old_chunks[c.hash] == c.id for c in kept)  # same rows, same vectors
    assert [c.position for c in store.document_chunks(new.id)] == list(range(new.chunks))
    assert consistent_chunk_count(store) == new.chunks


def test_forget_removes_chunks_vectors_and_keywords(store: KnowledgeStore, tmp_path: Path) -> None:
    embedder = HashEmbedder()
    ingestor = _ingestor(store, embedder)
    ingestor.add_paths([_write(tmp_path / "a.txt", PARAGRAPHS[:6])])
    ingestor.add_paths([_write(tmp_path / "b.txt", PARAGRAPHS[6:])])
    first, second = store.list_documents()
    store.delete_document(first.id)
    assert store.list_documents() == [second]
    assert consistent_chunk_count(store) == second.chunks
    hits = HybridSearcher(store, embedder).search("widget 1 oiled weekly", k=20)
    assert {h.document_id for h in hits} == {second.id}


def test_a_different_embedder_is_refused_until_reindex(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    _ingestor(store, HashEmbedder()).add_paths([_write(tmp_path / "a.txt", PARAGRAPHS)])
    other = HashEmbedder(dimension=32, model_id="test/other")
    with pytest.raises(EmbedderMismatchError, match="ragtune kb reindex"):
        HybridSearcher(store, other)
    with pytest.raises(EmbedderMismatchError):
        _ingestor(store, other)

    assert reindex(store, other) == store.stats().chunks
    assert store.embedding_model is not None
    assert store.embedding_model.model_id == "test/other"
    hits = HybridSearcher(store, other).search("widget 3 warranty", k=3)
    assert hits and hits[0].similarity > 0.3
    consistent_chunk_count(store)
    assert store.vector_tables() == [store.vector_table]  # the old table is gone


def test_half_built_vector_table_from_a_killed_reindex_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "kb.db"
    with KnowledgeStore.open(path) as store:
        _ingestor(store, HashEmbedder()).add_paths([_write(tmp_path / "a.txt", PARAGRAPHS)])
        live = store.vector_table
        with store.reindexing():
            orphan = store.begin_reindex(32)
    with KnowledgeStore.open(path) as store:
        assert store.vector_tables() == [live]
        assert orphan != live


def test_database_from_a_newer_ragtune_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kb.db"
    KnowledgeStore.open(path).close()
    conn = connect(path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(NewerSchemaError, match="upgrade ragtune"):
        KnowledgeStore.open(path)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("virus.exe", b"MZ"),
        ("empty.md", b""),
        ("broken.pdf", b"%PDF-1.4 garbage"),
        ("broken.docx", b"PK\x03\x04garbage"),
        ("huge.txt", b"big " * 3_000),
    ],
)
def test_bad_input_changes_nothing(
    store: KnowledgeStore, tmp_path: Path, name: str, data: bytes
) -> None:
    embedder = HashEmbedder()
    ingestor = Ingestor(store, embedder, chunk_chars=200, overlap_chars=0, max_bytes=10_000)
    ingestor.add_paths([_write(tmp_path / "good.txt", PARAGRAPHS)])
    before = snapshot(store)
    bad = tmp_path / name
    bad.write_bytes(data)
    report = ingestor.add_paths([bad])
    (failure,) = report.failures
    assert failure.error and name in failure.error
    assert snapshot(store) == before
    with pytest.raises(BadDocumentError):
        ingestor.add_bytes(data, name=name, external_id="upload", source="upload")
    assert snapshot(store) == before


def test_one_bad_file_in_a_folder_does_not_stop_the_others(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    _write(folder / "a.txt", PARAGRAPHS[:3])
    (folder / "b.pdf").write_bytes(b"%PDF-1.4 garbage")
    _write(folder / "c.md", PARAGRAPHS[3:6])
    (folder / ".hidden.txt").write_text("should be skipped")
    (folder / "image.png").write_bytes(b"\x89PNG")  # unsupported types in folders are skipped
    report = _ingestor(store, HashEmbedder()).add_paths([folder])
    assert [r.outcome for r in report.results] == [Outcome.ADDED, Outcome.FAILED, Outcome.ADDED]
    assert [d.title for d in store.list_documents()] == ["a", "c"]


def test_small_documents_are_embedded_in_shared_batches(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "\n".join(
            f'{{"id": "p{i}", "title": "T{i}", "text": "{p}"}}' for i, p in enumerate(PARAGRAPHS)
        )
    )
    embedder = HashEmbedder()
    Ingestor(store, embedder, embed_batch=1000).add_paths([corpus])
    assert len(embedder.calls) == 1  # twelve documents, one embedding call
    assert [d.external_id for d in store.list_documents()] == [f"p{i}" for i in range(12)]


def test_add_text_is_a_document_with_the_given_id(store: KnowledgeStore) -> None:
    ingestor = _ingestor(store, HashEmbedder())
    result = ingestor.add_text(
        "The office opens at 9.", title="Hours", external_id="tg:1", source="telegram"
    )
    assert result.outcome is Outcome.ADDED
    again = ingestor.add_text(
        "The office opens at 10.", title="Hours", external_id="tg:1", source="telegram"
    )
    assert again.outcome is Outcome.REPLACED and again.document_id == result.document_id
    (chunk,) = store.document_chunks(result.document_id or 0)
    assert chunk.text == "The office opens at 10."


def test_the_same_id_twice_in_one_batch_keeps_only_the_later_text(store: KnowledgeStore) -> None:
    corpus = [
        '{"id": "p1", "title": "T", "text": "Widgets are blue."}',
        '{"id": "p1", "title": "T", "text": "Widgets are red."}',
    ]
    Ingestor(store, HashEmbedder(), embed_batch=1000).add_bytes(
        "\n".join(corpus).encode(), name="c.jsonl", external_id="c", source="c.jsonl"
    )
    (doc,) = store.list_documents()
    assert [c.text for c in store.document_chunks(doc.id)] == ["Widgets are red."]
    assert consistent_chunk_count(store) == 1


def test_a_document_over_the_chunk_limit_is_refused_before_any_embedding(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    embedder = HashEmbedder()
    ingestor = Ingestor(store, embedder, chunk_chars=200, overlap_chars=0, max_chunks=10)
    ingestor.add_paths([_write(tmp_path / "small.txt", PARAGRAPHS[:2])])
    before, embedded = snapshot(store), embedder.embedded
    report = ingestor.add_paths([_write(tmp_path / "big.txt", PARAGRAPHS * 3)])
    (failure,) = report.failures
    assert failure.error is not None
    assert "over the limit of 10 per document (RAGTUNE_MAX_CHUNKS_PER_DOCUMENT)" in failure.error
    assert snapshot(store) == before and embedder.embedded == embedded


def test_a_folder_of_small_files_is_parsed_many_files_to_a_child(
    store: KnowledgeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    for n in range(100):
        (folder / f"note-{n:03}.md").write_text(f"# Note {n}\n\nWidget {n} is oiled on day {n}.")
    children: list[list[str]] = []
    real_run = subprocess.run

    def counted(command: list[str], **options: Any) -> Any:
        children.append(command)
        return real_run(command, **options)

    monkeypatch.setattr(subprocess, "run", counted)  # the module knowledge.sandbox calls
    report = _ingestor(store, HashEmbedder()).add_paths([folder])
    assert report.count(Outcome.ADDED) == 100 and not report.failures
    assert len(children) == 2  # 64 + 36 files, not 100 children
    assert [d.title for d in store.list_documents()][:2] == ["Note 0", "Note 1"]  # in order
