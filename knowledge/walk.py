"""Which files `kb add DIR` and `kb sync DIR` read, and reading each without being tricked.

A folder can change while it is walked: whoever can write to a synced share can swap a file for
a link to anything the bot may read (its `.env`, say) between the walk's look and the read. So
each file is opened once, and what was opened is checked, not what the name led to a moment
before: a regular file, inside the folder unless links are followed, within the size limit.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from knowledge.errors import BadDocumentError
from knowledge.parsers import SUPPORTED_SUFFIXES, path_text, too_big

_PROC_FDS = Path("/proc/self/fd")
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class FileEntry:
    """A file to read: as walked, and the folder it was found in."""

    path: Path
    """The file as the walk found it (under `folder`), or as it was named."""
    folder: Path | None = None
    """The folder as given (None: the file itself was named)."""
    root: Path | None = None
    """That folder, resolved."""

    @property
    def source(self) -> str:
        """The name its documents are stored under: where the file really is, or, for a file a
        followed link leads out to, the link's place in the folder (so that a sync of the
        folder forgets it when the link goes)."""
        real = resolved(self.path) or self.path
        if self.root is None or self.folder is None or real.is_relative_to(self.root):
            return path_text(str(real))
        return path_text(str(self.root / self.path.relative_to(self.folder)))


@dataclass(frozen=True)
class Skipped:
    """A path the walk could not or would not read: `source` names it, `reason` says why."""

    source: str
    reason: str


def iter_files(
    paths: Iterable[Path], *, follow_links: bool = False
) -> Iterator[FileEntry | Skipped]:
    """Expand folders (recursively, sorted, supported types only, hidden files skipped).

    Links that lead out of a folder are not followed unless `follow_links`: a Skipped saying
    so is yielded in their place (someone's link must not pull in files they did not mean).
    A folder that is missing or cannot be listed is yielded as Skipped with its resolved path
    as the source, so a sync keeps the documents it holds instead of forgetting them.
    """
    for path in paths:
        try:
            is_folder = path.is_dir()
        except OSError as exc:  # EACCES on a folder above it: say so, do not crash the walk
            yield _unreadable(path, exc)
            continue
        if not is_folder:
            if path.exists() or path.is_symlink():
                yield FileEntry(path)
            else:
                yield Skipped(path_text(str(resolved(path) or path)), _missing(path))
            continue
        root = path.resolve()
        seen = {root}
        unlisted: list[OSError] = []  # os.walk reports a folder it cannot list here, then skips it
        for folder, folders, files in os.walk(
            path, followlinks=follow_links, onerror=unlisted.append
        ):
            yield from _unlisted(unlisted)
            here = Path(folder)
            try:
                yield from _folder_entries(here, folders, files, path, root, seen, follow_links)
            except OSError as exc:  # listed but not searchable (r without x): keep it whole
                folders.clear()
                yield _unreadable(here, exc)
        yield from _unlisted(unlisted)


def _folder_entries(
    here: Path,
    folders: list[str],
    files: list[str],
    path: Path,
    root: Path,
    seen: set[Path],
    follow_links: bool,
) -> Iterator[FileEntry | Skipped]:
    """The files of one folder os.walk listed (`path` as given, `root` resolved), pruning
    `folders` to those it should walk."""
    for name in sorted(folders):
        child = here / name
        target = resolved(child)
        linked = child.is_symlink()
        if target is None:
            yield link_loop(child)
            folders.remove(name)
            continue
        if linked and not (follow_links or target.is_relative_to(root)):
            yield _link_out(child, path)
        # Not walked: hidden folders, links (unless followed), a folder seen already.
        if name.startswith(".") or (linked and not follow_links) or target in seen:
            folders.remove(name)
        seen.add(target)
    folders.sort()
    for name in sorted(files):
        child = here / name
        if name.startswith(".") or child.suffix.lower() not in SUPPORTED_SUFFIXES:
            continue
        target = resolved(child)
        if target is None:
            yield link_loop(child)
        elif child.is_symlink() and not (follow_links or target.is_relative_to(root)):
            yield _link_out(child, path)
        elif child.is_file():
            yield FileEntry(child, path, root)


def _unreadable(folder: Path, error: OSError, action: str = "read") -> Skipped:
    """A folder that could not be listed or examined (its documents are kept by a sync)."""
    source = path_text(str(resolved(folder) or folder))
    return Skipped(source, path_text(f"{source}: cannot {action} this folder ({error.strerror})."))


def _unlisted(errors: list[OSError]) -> Iterator[Skipped]:
    """The folders os.walk could not list since the last call (and forget them)."""
    for error in errors:
        yield _unreadable(Path(os.fsdecode(error.filename or "?")), error, "list")
    errors.clear()


def _missing(path: Path) -> str:
    return f"{path_text(str(path))} does not exist."


def resolved(path: Path) -> Path | None:
    """Where `path` really is, or None for a link loop (Python 3.11 raises on those)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return None


def link_loop(link: Path) -> Skipped:
    message = f"{path_text(str(link))} is a link that leads back to itself."
    return Skipped(message, message)


def _link_out(link: Path, root: Path) -> Skipped:
    message = (
        f"{path_text(str(link))} links outside {path_text(str(root))} "
        "(--follow-links includes such files)."
    )
    return Skipped(message, message)


def read_entry(entry: FileEntry, max_bytes: int, *, follow_links: bool = False) -> bytes:
    """The bytes of the file `entry` names, opened once and checked as opened: a regular file,
    inside its folder unless `follow_links`, at most `max_bytes` (else BadDocumentError).
    OSError when it cannot be opened or read."""
    name = path_text(str(entry.path))
    # O_NONBLOCK: a FIFO swapped in must not hang the walk; it is refused below.
    fd = os.open(entry.path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadDocumentError(f"{name} is not a regular file (it changed while it was read).")
        if entry.root is not None and not follow_links:
            opened = _opened_path(fd, entry.path, info)
            if opened is None or not opened.is_relative_to(entry.root):
                raise BadDocumentError(
                    f"{name} links outside {path_text(str(entry.folder))} "
                    "(--follow-links includes such files)."
                )
        if info.st_size > max_bytes:
            raise too_big(path_text(entry.path.name), info.st_size, max_bytes)
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read(max_bytes + 1)
        if len(data) > max_bytes:  # it grew while it was read
            raise too_big(path_text(entry.path.name), len(data), max_bytes)
        return data
    finally:
        os.close(fd)


def _opened_path(fd: int, path: Path, info: os.stat_result) -> Path | None:
    """Where the open file `fd` really is: the kernel's word on Linux; elsewhere the resolved
    name, if it is still the same file (device and inode) as the one opened."""
    if _PROC_FDS.is_dir():
        return (_PROC_FDS / str(fd)).readlink()
    real = resolved(path)
    if real is None:
        return None
    try:
        now = real.stat()
    except OSError:
        return None
    return real if (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino) else None
