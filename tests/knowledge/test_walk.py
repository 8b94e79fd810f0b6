"""Walking a folder that changes under the walk, links followed on purpose, odd names, and a
sync that would forget most of a folder."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from knowledge.errors import BadDocumentError
from knowledge.ingest import Ingestor
from knowledge.parsers import path_text
from knowledge.store import KnowledgeStore
from knowledge.sync import sync_folder
from knowledge.walk import FileEntry, iter_files, read_entry
from tests.helpers import HashEmbedder

SECRET = "TELEGRAM_BOT_TOKEN=123:secret-of-the-bot"
SWAPS = 20_000
WALKS = 3_000
RAGTUNE = str(Path(sys.executable).parent / "ragtune")


def _ingestor(store: KnowledgeStore) -> Ingestor:
    return Ingestor(store, HashEmbedder(), chunk_chars=200, overlap_chars=0)


def test_a_file_swapped_for_a_link_to_a_secret_during_the_walk_is_never_read(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "share"
    folder.mkdir()
    secret = tmp_path / ".env"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    notes = folder / "notes.md"
    notes.write_text("The ferry leaves at noon.")
    swapping = threading.Event()
    swapped = 0

    def swap() -> None:  # what a writer of a synced share can do, as fast as it can
        nonlocal swapped
        spare = folder / ".spare"
        while swapped < SWAPS and not swapping.is_set():
            spare.unlink(missing_ok=True)
            spare.symlink_to(secret)
            spare.replace(notes)  # notes.md is now a link out of the folder...
            spare.write_text("The ferry leaves at noon.")
            spare.replace(notes)  # ...and a file again
            swapped += 1

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    read, refused, leaked = 0, 0, 0
    try:
        for _ in range(WALKS):
            for entry in iter_files([folder]):
                if not isinstance(entry, FileEntry):
                    continue  # the walk saw a link and skipped it: fine
                try:
                    data = read_entry(entry, 1_000_000)
                except FileNotFoundError:  # between two renames: nothing to read
                    continue
                except BadDocumentError as exc:  # the link out was opened, seen and refused
                    assert "links outside" in str(exc), exc
                    refused += 1
                    continue
                read += 1
                leaked += SECRET.encode() in data
    finally:
        swapping.set()
        thread.join()
    assert swapped >= 20, "the swapping thread barely ran: the race was not tried"
    assert leaked == 0 and read > 0
    print(f"{WALKS} walks during {swapped} swaps: {read} reads, {refused} refused, 0 leaked")


def test_the_ingestor_refuses_a_file_that_became_a_link_out_between_walk_and_read(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    folder = tmp_path / "share"
    folder.mkdir()
    secret = tmp_path / "private.txt"
    secret.write_text(SECRET)
    (folder / "notes.txt").write_text("The ferry leaves at noon.")
    (entry,) = (e for e in iter_files([folder]) if isinstance(e, FileEntry))
    (folder / "notes.txt").unlink()
    (folder / "notes.txt").symlink_to(secret)  # after the walk looked, before the read
    with pytest.raises(
        BadDocumentError, match=r"links outside .* \(--follow-links includes such files\)\."
    ):
        read_entry(entry, 1_000_000)
    (folder / "notes.txt").unlink()
    os.mkfifo(folder / "notes.txt")  # a pipe, which a plain read would wait on for ever
    with pytest.raises(BadDocumentError, match="is not a regular file"):
        read_entry(entry, 1_000_000)
    (folder / "notes.txt").unlink()
    (folder / "notes.txt").symlink_to(secret)
    report = _ingestor(store).add_paths([folder])
    (failure,) = report.failures  # the walk itself sees this link, skips it and says so
    assert "links outside" in (failure.error or "")
    assert all(SECRET not in c.text for batch in store.iter_chunks() for c in batch)


def test_files_a_followed_link_leads_to_are_stored_under_the_link_and_forgotten_with_it(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    folder = tmp_path / "share"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "menu.md").write_text("# Menu\n\nEspresso costs two euros.")
    (folder / "menu.md").symlink_to(elsewhere / "menu.md")
    (folder / "tea.txt").write_text("Green tea steeps for two minutes.")
    (folder / "cake.txt").write_text("The cake of the day is lemon.")
    sync_folder(_ingestor(store), folder, follow_links=True)
    sources = sorted(d.source for d in store.list_documents())
    assert str(folder.resolve() / "menu.md") in sources  # where the link is, not its target
    assert str(elsewhere / "menu.md") not in sources
    (folder / "menu.md").unlink()
    report = sync_folder(_ingestor(store), folder, follow_links=True)
    assert [d.title for d in report.forgotten] == ["Menu"]


def test_a_stray_file_in_an_unmounted_share_forgets_nothing_unless_told(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    folder = tmp_path / "share"
    folder.mkdir()
    for number in range(50):
        (folder / f"page{number}.txt").write_text(f"Page {number} says the rule number {number}.")
    sync_folder(_ingestor(store), folder)
    for path in folder.iterdir():
        path.unlink()
    (folder / "README.txt").write_text("Mount point of the handbook share.")  # left behind
    report = sync_folder(_ingestor(store), folder)
    assert report.forgotten == [] and len(store.list_documents()) == 51
    (guard,) = report.ingest.failures
    assert guard.error is not None and guard.error.startswith(
        f"50 of the 50 documents from {folder.resolve()} are no longer there, more than half"
    )
    for number in range(40):  # the share is back, but 10 files were deleted on purpose
        (folder / f"page{number}.txt").write_text(f"Page {number} says the rule number {number}.")
    report = sync_folder(_ingestor(store), folder)
    assert sorted(d.title for d in report.forgotten) == sorted(
        f"page{number}" for number in range(40, 50)
    )
    for number in range(40):  # most of the rest deleted on purpose, and said so
        (folder / f"page{number}.txt").unlink()
    assert sync_folder(_ingestor(store), folder).forgotten == []
    assert len(sync_folder(_ingestor(store), folder, forget_many=True).forgotten) == 40
    assert [d.title for d in store.list_documents()] == ["README"]


def test_in_a_small_folder_a_rename_or_a_deletion_goes_on_as_usual(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    folder = tmp_path / "share"
    folder.mkdir()
    (folder / "only.txt").write_text("The only rule: be kind.")
    sync_folder(_ingestor(store), folder)
    (folder / "only.txt").rename(folder / "rule.txt")
    report = sync_folder(_ingestor(store), folder)
    assert [d.title for d in report.forgotten] == ["only"] and report.ingest.failures == []
    assert [d.title for d in store.list_documents()] == ["rule"]


def test_a_name_holding_a_backslash_escape_and_a_name_holding_the_byte_stay_two_documents(
    store: KnowledgeStore, tmp_path: Path
) -> None:
    folder = tmp_path / "share"
    folder.mkdir()
    (folder / os.fsdecode(b"caf\xe9.txt")).write_text("Latin-1 name: the cafe opens at eight.")
    (folder / "caf\\xe9.txt").write_text("Backslash name: the cafe closes at six.")
    report = _ingestor(store).add_paths([folder])
    assert [r.outcome.value for r in report.results] == ["added", "added"]
    sources = sorted(d.source for d in store.list_documents())
    assert sources == sorted([str(folder / "caf\\xe9.txt"), str(folder / "caf\\\\xe9.txt")])
    assert len(set(sources)) == 2
    assert path_text("a\nforgotten: b") == "a\\u000aforgotten: b"


def test_kb_sync_prints_each_name_on_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "share"
    folder.mkdir()
    (folder / "ok.txt").write_text("Nothing odd here at all.")
    (folder / "x\nforgotten: payroll.md.txt").write_text("A name that holds a newline.")
    db = str(tmp_path / "kb.db")
    synced = subprocess.run([RAGTUNE, "kb", "sync", str(folder), "--db", db],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert synced.returncode == 0, synced.stderr
    lines = synced.stderr.splitlines()
    assert not any(line.startswith("forgotten:") for line in lines), lines
    assert any(line.endswith("x\\u000aforgotten: payroll.md.txt") for line in lines), lines
