"""GGUF models pulled from the Hugging Face Hub: the one download ragtune makes, when asked.

Files land in huggingface_hub's own cache (HF_HOME / HF_HUB_CACHE, as the person set them), from
HF_ENDPOINT (the Hub unless set), and are listed from there by `scan_cache_dir`.
Written against huggingface_hub 2.x, whose HTTP client is httpx2.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import constants, hf_hub_download, scan_cache_dir
from huggingface_hub.errors import (
    CacheNotFound,
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    XetDownloadError,
)

from bot.llm.engine import ModelError

GGUF_MAGIC = b"GGUF"
_REPO_EXAMPLE = "e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF"
# OWNER/NAME as huggingface_hub's validate_repo_id has it, with the owner required: ASCII letters,
# digits, '-', '_' and '.', neither part starting or ending with '-' or '.'.
_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"{_PART}/{_PART}")


@dataclass(frozen=True)
class PulledModel:
    """A .gguf file in the local Hugging Face cache, named REPO/FILENAME."""

    name: str
    path: Path
    size_bytes: int


def pull(repo: str, filename: str, *, offline_requested_by_user: bool) -> Path:
    """Download `filename` from model repo `repo` into the Hub cache (or reuse it); its path."""
    _check_request(repo, filename)
    if offline_requested_by_user:
        raise ModelError(f"HF_HUB_OFFLINE=1 is set: unset it to download {filename} from {repo}.")
    where = f"{filename} from {repo} at {constants.ENDPOINT}"
    try:
        with _online():
            path = Path(hf_hub_download(repo_id=repo, filename=filename, repo_type="model"))
    except GatedRepoError:
        raise ModelError(
            f"{repo} is a gated repository: accept its terms on the Hub and set HF_TOKEN "
            f"to download {filename}."
        ) from None
    except RepositoryNotFoundError:
        raise ModelError(
            f"There is no model repository {repo} at {constants.ENDPOINT} (if it is private, "
            "set HF_TOKEN)."
        ) from None
    except RevisionNotFoundError:
        raise ModelError(f"The repository {repo} has no main branch to download from.") from None
    except LocalEntryNotFoundError:
        # Raised when the metadata request fails for want of a connection (or a Hub-like reply)
        # and the file is not cached either.
        raise ModelError(
            f"Could not reach {constants.ENDPOINT} to download {filename} from {repo} "
            "(check the connection, a proxy or HF_ENDPOINT)."
        ) from None
    except EntryNotFoundError:
        raise ModelError(
            f"The repository {repo} at {constants.ENDPOINT} has no file {filename}."
        ) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code
        raise ModelError(f"The Hub answered HTTP {status} when downloading {where}.") from None
    except (httpx2.HTTPError, XetDownloadError) as exc:
        raise ModelError(f"Downloading {where} failed ({type(exc).__name__}).") from None
    except HFValidationError:  # checked above already; kept so no ValueError escapes
        raise ModelError(f"{repo!r} is not a valid Hub repository id ({_REPO_EXAMPLE}).") from None
    except OSError as exc:
        reason = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ModelError(
            f"Could not save {filename} from {repo} into the Hugging Face cache "
            f"{constants.HF_HUB_CACHE} ({reason.rstrip('.')})."
        ) from None
    _check_gguf(path, f"{repo}/{filename}")
    return path


def pulled_models() -> list[PulledModel]:
    """The .gguf files in the local Hugging Face cache, by name (REPO/FILENAME)."""
    try:
        cache = scan_cache_dir()
    except CacheNotFound:
        return []
    except ValueError:  # the cache path is a file
        raise ModelError(
            f"The Hugging Face cache {constants.HF_HUB_CACHE} is a file, not a folder."
        ) from None
    found: dict[str, tuple[tuple[bool, float], PulledModel]] = {}
    for repo in cache.repos:
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            # Where a file is cached at several commits, a branch's commit wins, then the newest.
            rank = (bool(revision.refs), revision.last_modified)
            for file in revision.files:
                if not file.file_name.lower().endswith(".gguf"):
                    continue
                relative = file.file_path.relative_to(revision.snapshot_path).as_posix()
                name = f"{repo.repo_id}/{relative}"
                model = PulledModel(name=name, path=file.file_path, size_bytes=file.size_on_disk)
                if name not in found or rank > found[name][0]:
                    found[name] = (rank, model)
    return [found[name][1] for name in sorted(found)]


def find_pulled(name: str) -> Path | None:
    """The path of the pulled model called `name` (REPO/FILENAME), or None."""
    return next((model.path for model in pulled_models() if model.name == name), None)


def _check_request(repo: str, filename: str) -> None:
    """Refuse, before any request, a repository id or file name that cannot be a GGUF model."""
    if not _REPO_ID.fullmatch(repo) or "--" in repo or ".." in repo or repo.endswith(".git"):
        raise ModelError(
            f"{repo!r} is not a Hub model repository id: write it as OWNER/NAME, with letters, "
            f"digits, '-', '_' and '.' ({_REPO_EXAMPLE})."
        )
    if not filename.lower().endswith(".gguf"):
        raise ModelError(f"{filename!r} is not a GGUF file name (it must end in .gguf).")
    if "\\" in filename or {"", ".", ".."} & set(filename.split("/")):
        raise ModelError(f"{filename!r} must be a plain path inside the repository.")


def _check_gguf(path: Path, name: str) -> None:
    """Raise ModelError unless the file at `path` starts with the GGUF magic bytes."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise ModelError(f"The pulled file {path} cannot be read ({exc.strerror}).") from None
    if magic != GGUF_MAGIC:
        raise ModelError(
            f"{name} is not a GGUF file (it does not start with b'GGUF'), so ragtune cannot use "
            f"what was downloaded to {path}."
        )


@contextmanager
def _online() -> Iterator[None]:
    """Let huggingface_hub make requests for the duration of the block, then restore its mode."""
    # huggingface_hub reads HF_HUB_OFFLINE once, at import, into constants.HF_HUB_OFFLINE, and every
    # request checks that attribute when it is sent (constants.is_offline_mode(), called by the
    # request hook in huggingface_hub/utils/_http.py). 2.x has no public switch to change the mode
    # at run time; patching the attribute is what its maintainers advise
    # (huggingface/transformers#42308). It is safe here because ragtune set HF_HUB_OFFLINE=1 only
    # as its own default (bot.offline) and the caller checked the person did not set it; `pull`
    # is a one-shot CLI command, so no other thread relies on offline mode meanwhile.
    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous
