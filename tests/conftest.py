"""Shared fixtures: real SQLite databases on tmp_path, the real packaged embedder, no network."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.ingest import Ingestor
from knowledge.store import KnowledgeStore
from tests.helpers import DOOR_FACTS, HashEmbedder, SmallDisk, secrets_in, train_adapter
from tests.web_site import Site, serving

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEV_EVAL_DIR = Path(
    os.environ.get("RAGTUNE_EVAL_DIR", REPO_ROOT.parent / "shared" / "eval" / "dev")
)


def _is_loopback(address: Any) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths
        return True
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if a test reaches past 127.0.0.1 (after PTB's tests/auxil/networking.py)."""
    real_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if not _is_loopback(address):
            raise RuntimeError(f"test tried to reach the network: {address!r}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


@pytest.fixture(autouse=True)
def _no_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see the defaults a user gets plus what they set themselves: a developer's own
    RAGTUNE_* variables (another model, other limits) never leak into them. (Knobs that tests
    read when they are imported, such as RAGTUNE_EVAL_DIR, were read before this runs.)"""
    for name in list(os.environ):
        if name.startswith("RAGTUNE_") or name == "TELEGRAM_BOT_TOKEN":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def real_embedder() -> SentenceTransformerEmbedder:
    """The packaged all-MiniLM-L6-v2, loaded once per test session."""
    embedder = SentenceTransformerEmbedder()
    assert embedder.dimension == 384
    return embedder


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    """A fresh deterministic embedder that records what it embedded."""
    return HashEmbedder()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KnowledgeStore]:
    """An empty knowledge base file on tmp_path."""
    with KnowledgeStore.open(tmp_path / "kb.db") as opened:
        yield opened


def _eval_set(folder: Path, name: str) -> Path:
    """`folder` if it holds an eval set; else fail under CI, skip elsewhere."""
    if not (folder / "corpus.jsonl").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the {name} evaluation set at {folder}")
        pytest.skip(f"{name} evaluation set not found at {folder}")
    return folder


def _ingested(
    factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder, folder: Path, docs: int
) -> Iterator[KnowledgeStore]:
    """An eval corpus ingested once into a fresh store of its own."""
    with KnowledgeStore.open(factory.mktemp(folder.name) / "kb.db") as store:
        report = Ingestor(store, embedder).add_paths([folder / "corpus.jsonl"])
        assert len(report.results) == docs and not report.failures
        yield store


@pytest.fixture(scope="session")
def dev_eval_dir() -> Path:
    """The XQuAD dev set beside the repository (../shared/eval/dev)."""
    return _eval_set(DEV_EVAL_DIR, "dev")


@pytest.fixture(scope="session")
def finance_eval_dir() -> Path:
    """The TAT-QA finance dev set beside the repository (../shared/eval/dev-finance)."""
    return _eval_set(DEV_EVAL_DIR.parent / "dev-finance", "finance")


@pytest.fixture(scope="session")
def finance_store(
    tmp_path_factory: pytest.TempPathFactory,
    real_embedder: SentenceTransformerEmbedder,
    finance_eval_dir: Path,
) -> Iterator[KnowledgeStore]:
    """The finance corpus ingested once with the real embedder (tests must not write to it)."""
    yield from _ingested(tmp_path_factory, real_embedder, finance_eval_dir, 1356)


@pytest.fixture(scope="session")
def dev_store(
    tmp_path_factory: pytest.TempPathFactory,
    real_embedder: SentenceTransformerEmbedder,
    dev_eval_dir: Path,
) -> Iterator[KnowledgeStore]:
    """The dev corpus ingested once with the real embedder (tests must not write to it)."""
    yield from _ingested(tmp_path_factory, real_embedder, dev_eval_dir, 240)


@pytest.fixture(scope="session")
def door_adapters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapters directory holding "door", made by `ragtune tune train` for real: a few steps
    on a handful of made-up facts, with a document for continued pre-training."""
    folder = tmp_path_factory.mktemp("tuning")
    with KnowledgeStore.open(folder / "kb.db") as store:
        Ingestor(store, HashEmbedder()).add_text(
            "The blue door stands at the end of the harbour wall.", title="door",
            external_id="door", source="test",
        )  # fmt: skip
    proc = train_adapter(folder, "door", DOOR_FACTS, "--documents", str(folder / "kb.db"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "adapter door: 25 steps" in proc.stdout
    # The check after training ran for real: the door's facts were asked with the adapter.
    assert re.search(
        r"recall on 4 training questions: \d+ %; general-knowledge probe \(20 ", proc.stdout
    ), proc.stdout
    return folder / "adapters"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """An 8 MB tmpfs (needs root, as on the CI machines); the test fills it when it wants."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"a full disk needs a tmpfs mount here: {mounted.stderr.strip()}")
    try:
        yield SmallDisk(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(scope="session")
def hostile() -> dict[str, bytes]:
    """Hostile documents, built once (the bombs take ~1.5 s each)."""
    from tests import hostile_files as build

    return {
        "docx zip bomb": build.docx_zip_bomb(),
        "pdf decompression bomb": build.pdf_decompression_bomb(),
        "pdf 5000 pages": build.pdf(5000, text="Page"),
        "pdf password": build.pdf_with_password("The ferry leaves at noon."),
        "pdf broken xref": build.pdf_with_broken_xref("The ferry leaves at noon."),
    }


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Fail any test whose logs (INFO and up) or output hold one of the suite's known secrets.

    Every bot in the suite runs with tests.helpers.KNOWN_TOKEN; tests that run `ragtune` as a
    process print its output, so it is grepped here too.
    """
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    phase = [content for title, content in report.sections if title.endswith(f" {report.when}")]
    captured = "\n".join(phase)
    if leaked := secrets_in(captured):
        report.outcome = "failed"
        report.longrepr = (
            f"{len(leaked)} known secret(s) appeared in the {report.when} phase's logs or output "
            "(not shown here, so as not to print them again)"
        )


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker gets its own share of the cores (inherited by the
    processes it starts): models, embedders and trainings size their threads by the cores they
    may use, and threads of two workers on one core slow both down many times over."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cores = sorted(os.sched_getaffinity(0))
    if worker.startswith("gw") and 1 < count <= len(cores):
        os.sched_setaffinity(0, cores[int(worker[2:]) :: count])


SHARED_FIXTURES = {
    "dev_store": "eval_stores",
    "finance_store": "eval_stores",
    "door_adapters": "door_adapters",
}
"""Session fixtures worth building once: the xdist group of the files that use them."""


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups off the items
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order and group the tests for pytest-xdist (`make test` runs two workers).

    A file's tests stay on one worker, so its module fixtures are built once; files that use the
    same costly session fixture (an ingested eval corpus, a trained adapter) share a worker too.
    Files with slow tests go first, so that no long test starts last while the other worker has
    nothing left to do.
    """
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: file order is kept
    if not config.pluginmanager.hasplugin("xdist"):  # `-p no:xdist`: no groups to mark
        return
    shared: dict[Path, set[str]] = {}
    for item in items:
        used = SHARED_FIXTURES.keys() & set(getattr(item, "fixturenames", ()))
        shared.setdefault(item.path, set()).update(used)
    for item in items:
        group = SHARED_FIXTURES[min(shared[item.path])] if shared[item.path] else None
        item.add_marker(pytest.mark.xdist_group(group or str(item.path.relative_to(REPO_ROOT))))


@pytest.fixture
def site() -> Iterator[Site]:
    """A web site on 127.0.0.1 whose pages a test sets (tests/web_site.py)."""
    with serving() as served:
        yield served
