"""Imports point one way (DESIGN.md): read them with ast and keep it so."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SQLITE_DRIVERS = {"sqlite3", "pysqlite3", "sqlean", "apsw"}


def imports(path: Path) -> set[str]:
    """Top-level module names imported anywhere in `path`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_knowledge_never_imports_bot() -> None:
    for path in modules("knowledge"):
        assert not any(n == "bot" or n.startswith("bot.") for n in imports(path)), path


def test_sqlite_driver_is_chosen_in_one_place() -> None:
    for package in ("bot", "knowledge", "bench"):
        for path in modules(package):
            drivers = {n.split(".")[0] for n in imports(path)} & SQLITE_DRIVERS
            if path != ROOT / "knowledge" / "connection.py":
                assert not drivers, f"{path} imports {drivers}"


def test_core_never_touches_telegram_llama_http_or_sqlite_drivers() -> None:
    forbidden = {"telegram", "llama_cpp", "httpx", *SQLITE_DRIVERS}
    core = modules("bot/core")
    assert core, "bot/core exists"
    for path in core:
        assert not {n.split(".")[0] for n in imports(path)} & forbidden, path


def test_the_network_guard_refuses_non_loopback_addresses() -> None:
    with socket.socket() as sock, pytest.raises(RuntimeError, match="reach the network"):
        sock.connect(("192.0.2.1", 443))  # TEST-NET-1: never routable


def test_the_running_bot_never_imports_tuning() -> None:
    """tuning/ (torch training, peft) is for `ragtune tune` only: imported lazily by the CLI."""
    for path in modules("bot"):
        tree = ast.parse(path.read_text())
        top_level = {
            alias.name if isinstance(node, ast.Import) else node.module or ""
            for node in tree.body
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        }
        assert not any(n.split(".")[0] == "tuning" for n in top_level), path
        if path.name != "cli.py":
            assert not any(n.split(".")[0] == "tuning" for n in imports(path)), path
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, bot.app, bot.cli, bot.tg.handlers, "
         "bot.tg.admin_handlers; print(sorted(m for m in sys.modules "
         "if m.split('.')[0] in {'tuning', 'peft'}))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout.strip()  # fmt: skip
    assert loaded == "[]"
