"""`kb sync DIR`: a collection that holds what a folder holds, with counts."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from knowledge.ingest import Ingestor, content_hash
from knowledge.parsers import parse_bytes
from knowledge.store import KnowledgeStore
from knowledge.sync import sync_folder
from tests.helpers import HashEmbedder
from tests.knowledge.documents import make_pdf

REPO_ROOT = Path(__file__).resolve().parents[2]
PARAGRAPHS = [
    f"Rule {n}: widget {n} is oiled every {n + 2} days by the night shift." for n in range(8)
]


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "handbook"
    (folder / "sub").mkdir(parents=True)
    (folder / "rules.md").write_text("\n\n".join(PARAGRAPHS))
    (folder / "tea.txt").write_text("Green tea steeps for two minutes.")
    (folder / "sub" / "faq.jsonl").write_text(
        '{"id": "q1", "title": "Parking", "text": "Park behind the building."}\n'
        '{"id": "q2", "title": "Lunch", "text": "Lunch is at noon."}\n'
    )
    make_pdf(folder / "owls.pdf", ["Owls hunt mice at night."], title="Owls")
    return folder


def _ingestor(store: KnowledgeStore, embedder: HashEmbedder, collection: int = 0) -> Ingestor:
    return Ingestor(store, embedder, chunk_chars=120, overlap_chars=0, collection=collection)


def _titles(store: KnowledgeStore, collection: int | None = 0) -> list[str]:
    return sorted(d.title for d in store.list_documents(collection))


def test_a_second_sync_adds_replaces_and_forgets_and_embeds_only_what_changed(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    first = sync_folder(_ingestor(store, HashEmbedder()), folder).counts()
    assert (first["added"], first["forgotten"], first["failed"]) == (5, 0, 0)
    assert _titles(store) == ["Lunch", "Owls", "Parking", "rules", "tea"]

    edited = PARAGRAPHS.copy()
    edited[3] = "Rule 3: widget 3 is now oiled every day."
    (folder / "rules.md").write_text("\n\n".join(edited))  # one chunk's text changes
    (folder / "tea.txt").unlink()
    (folder / "sub" / "faq.jsonl").write_text(
        '{"id": "q1", "title": "Parking", "text": "Park behind the building."}\n'
    )
    (folder / "sub" / "new.md").write_text("The canteen opens at eight.")
    embedder = HashEmbedder()
    second = sync_folder(_ingestor(store, embedder), folder)
    counts = second.counts()
    assert {k: counts[k] for k in ("added", "replaced", "unchanged", "forgotten", "failed")} == {
        "added": 1, "replaced": 1, "unchanged": 2, "forgotten": 2, "failed": 0,
    }  # fmt: skip
    assert sorted(d.title for d in second.forgotten) == ["Lunch", "tea"]
    assert _titles(store) == ["Owls", "Parking", "new", "rules"]
    # The new file's one chunk and the changed chunk of rules.md, nothing else.
    assert embedder.embedded == counts["chunks_embedded"] == 2
    third = sync_folder(_ingestor(store, HashEmbedder()), folder).counts()
    assert (third["unchanged"], third["chunks_embedded"], third["forgotten"]) == (4, 0, 0)
    assert store.problems() == []


def test_a_dry_run_reports_the_same_counts_and_changes_nothing(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    sync_folder(_ingestor(store, HashEmbedder()), folder)
    (folder / "tea.txt").write_text("Black tea steeps for four minutes.")
    (folder / "owls.pdf").unlink()
    before = (store.list_documents(None), store.count_rows())
    embedder = HashEmbedder()
    dry = sync_folder(_ingestor(store, embedder), folder, dry_run=True)
    assert (store.list_documents(None), store.count_rows()) == before and embedder.embedded == 0
    real = sync_folder(_ingestor(store, HashEmbedder()), folder)
    assert dry.counts() == real.counts()
    assert (real.counts()["replaced"], real.counts()["forgotten"]) == (1, 1)


def test_a_file_that_became_unreadable_keeps_its_document_and_is_reported(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    sync_folder(_ingestor(store, HashEmbedder()), folder)
    (folder / "owls.pdf").write_bytes(b"%PDF-1.4 truncated by a bad copy")
    report = sync_folder(_ingestor(store, HashEmbedder()), folder)
    assert report.counts()["failed"] == 1 and report.forgotten == []
    assert "Owls" in _titles(store)


def test_a_folder_that_is_gone_or_empty_forgets_nothing(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    sync_folder(_ingestor(store, HashEmbedder()), folder)
    before = _titles(store)
    folder.rename(tmp_path / "unmounted")  # a share that is not mounted right now
    report = sync_folder(_ingestor(store, HashEmbedder()), folder)
    assert report.forgotten == [] and report.counts()["failed"] == 1
    assert "does not exist" in (report.ingest.failures[0].error or "")
    assert _titles(store) == before

    folder.mkdir()  # the empty mount point itself
    report = sync_folder(_ingestor(store, HashEmbedder()), folder)
    assert report.forgotten == [] and report.counts()["failed"] == 1
    assert "holds no files now, so its 5 document(s) are kept" in (
        report.ingest.failures[0].error or ""
    )
    assert _titles(store) == before


def test_a_subfolder_that_cannot_be_listed_keeps_its_documents(
    store: KnowledgeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path)
    sync_folder(_ingestor(store, HashEmbedder()), folder)
    (folder / "tea.txt").unlink()
    listing = os.scandir
    unlisted = folder / "sub"

    def scandir(path: str) -> object:  # what a non-root user meets in a folder without +r
        if Path(path) == unlisted:
            raise PermissionError(13, "Permission denied", path)
        return listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = sync_folder(_ingestor(store, HashEmbedder()), folder)
    monkeypatch.undo()
    assert [d.title for d in report.forgotten] == ["tea"]  # deleted files still go
    assert report.counts()["failed"] == 1
    assert "cannot list this folder (Permission denied)" in (report.ingest.failures[0].error or "")
    assert _titles(store) == ["Lunch", "Owls", "Parking", "rules"]


def test_a_subfolder_listed_but_not_searchable_keeps_its_documents(
    store: KnowledgeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path)
    sync_folder(_ingestor(store, HashEmbedder()), folder)
    is_symlink = Path.is_symlink

    def no_search(path: Path) -> bool:  # a folder with +r but no +x: names, but no stat
        if path.parent == folder / "sub":
            raise PermissionError(13, "Permission denied", str(path))
        return is_symlink(path)

    monkeypatch.setattr(Path, "is_symlink", no_search)
    report = sync_folder(_ingestor(store, HashEmbedder()), folder)
    monkeypatch.undo()
    assert report.forgotten == [] and report.counts()["failed"] == 1
    assert "sub: cannot read this folder (Permission denied)" in (
        report.ingest.failures[0].error or ""
    )
    assert _titles(store) == ["Lunch", "Owls", "Parking", "rules", "tea"]


def test_only_documents_of_that_folder_and_collection_are_forgotten(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    elsewhere = tmp_path / "handbook-old"  # a sibling whose name starts the same
    elsewhere.mkdir()
    (elsewhere / "old.md").write_text("An old rule.")
    other = store.create_collection("other")
    _ingestor(store, HashEmbedder()).add_paths([elsewhere / "old.md"])
    _ingestor(store, HashEmbedder(), other.id).add_paths([folder / "tea.txt"])
    (folder / "tea.txt").unlink()
    report = sync_folder(_ingestor(store, HashEmbedder()), folder)
    assert report.forgotten == []  # tea.txt was never synced into global
    assert "old" in _titles(store) and _titles(store, other.id) == ["tea"]


def _sync_child(db: Path, folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.knowledge.crash_child", "sync", str(db), str(folder)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_kill_minus_nine_during_a_sync_leaves_every_document_whole(tmp_path: Path) -> None:
    """Syncs that add, replace and forget are killed at random points; every document stays
    whole, and the next sync finishes the job."""
    random.seed(20261205)
    db, folder = tmp_path / "kb.db", tmp_path / "docs"
    folder.mkdir()
    killed = 0
    for round_number in range(12):
        for n in range(20):  # each round rewrites, drops or brings back files
            path = folder / f"doc-{n}.md"
            if (n + round_number) % 5 == 0:
                path.unlink(missing_ok=True)
            else:
                path.write_text("\n\n".join(
                    f"Document {n} rule {p} (edition {(round_number + p) % 3})." for p in range(10)
                ))  # fmt: skip
        child = _sync_child(db, folder)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for _ in range(random.randint(0, 25)):
            if child.stdout.readline().strip() in ("done", ""):
                break
        if child.poll() is None:
            child.kill()
            killed += 1
        child.wait()
        with KnowledgeStore.open(db) as store:
            assert store.problems() == []
    assert killed >= 6, "most syncs must really be killed mid-way"
    child = _sync_child(db, folder)
    assert child.stdout is not None
    lines = child.stdout.read().splitlines()
    assert child.wait() == 0 and lines[-1] == "done"
    with KnowledgeStore.open(db) as store:
        assert store.problems() == []
        stored = {Path(d.source).name: d for d in store.list_documents()}
        assert set(stored) == {p.name for p in folder.iterdir()}
        for name, document in stored.items():  # each holds its file's current text
            (parsed,) = parse_bytes((folder / name).read_bytes(), name)
            assert document.content_hash == content_hash(parsed)
    print(f"kill -9 during kb sync: {killed}/12 runs killed, 0 documents not whole; "
          f"report of the last run: {json.dumps(lines[-2])}")  # fmt: skip
