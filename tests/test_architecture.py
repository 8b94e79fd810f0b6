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


# The layers of the house, lowest first. A module may import from its own layer and the layers
# below, never from one above ("no import runs back up"). The first prefix that matches wins.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("knowledge",),
    ("bot.llm", "bot.offline", "bot.logs"),
    ("bot.config", "bot.state", "bot.state_migrations"),
    ("bot.core",),
    ("tuning",),
    ("bot.tg",),
    ("bot.app",),
    ("bot.local",),
    ("bot.cli", "bot.models_cli", "bot.reader_cli", "bot.reranker_cli"),
    ("bench",),
)
PROJECT = ("bot", "knowledge", "tuning", "bench")
TELEGRAM_MAY_IMPORT = ("bot.tg", "bot.core", "bot.config")


def module_name(path: Path) -> str:
    """`bot/tg/handlers.py` -> `bot.tg.handlers` (a package's __init__ is the package)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    """The layer of a project module (its index in LAYERS)."""
    for number, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(f"{p}.") for p in prefixes):
            return number
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _type_checking_only(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name | ast.Attribute) and "TYPE_CHECKING" in ast.unparse(
        node.test
    )


def project_imports(path: Path, *, at_run_time: bool = False) -> set[str]:
    """Project modules `path` imports, at any depth (in functions too); `at_run_time` leaves
    out the imports under `if TYPE_CHECKING:`, which never run."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if at_run_time and isinstance(node, ast.If) and _type_checking_only(node)
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from bot.tg import handlers` imports the module bot.tg.handlers
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    known = project_modules()
    # A package's own __init__ (a docstring) is no layer's: its submodules are what is imported.
    return {name for name in found if name in known and known[name].name != "__init__.py"}


def project_modules() -> dict[str, Path]:
    """Every module of the product and the benchmarks, by dotted name."""
    return {module_name(p): p for package in PROJECT for p in modules(package)}


def test_no_import_runs_back_up() -> None:
    upward = [
        f"{name} (layer {layer(name)}) imports {imported} (layer {layer(imported)})"
        for name, path in project_modules().items()
        for imported in sorted(project_imports(path))
        if layer(imported) > layer(name)
    ]
    assert upward == []


def test_telegram_code_reaches_only_the_core_and_the_settings() -> None:
    """bot.tg renders what bot.core decides: never the model, the state or the knowledge base."""
    reached = [
        f"{name} imports {imported}"
        for name, path in project_modules().items()
        if name.startswith("bot.tg")
        for imported in sorted(project_imports(path))
        if not imported.startswith(TELEGRAM_MAY_IMPORT)
    ]
    assert reached == []


def test_telegram_code_takes_from_the_core_only_what_the_core_defines() -> None:
    """No dodging the rule above by a re-export: a name bot.tg imports from bot.core is defined
    there, except the error tree, which bot.core.errors lists on purpose (its `__all__`)."""
    import importlib

    borrowed = []
    for name, path in project_modules().items():
        if not name.startswith("bot.tg"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bot.core")
            ):
                continue
            module = importlib.import_module(node.module or "")
            listed = (
                set(getattr(module, "__all__", ())) if node.module == "bot.core.errors" else set()
            )
            for alias in node.names:
                origin = getattr(getattr(module, alias.name), "__module__", node.module) or ""
                if alias.name not in listed and not origin.startswith("bot.core"):
                    borrowed.append(f"{name} takes {alias.name} ({origin}) from {node.module}")
    assert borrowed == []


def test_imports_are_absolute() -> None:
    """Relative imports would slip past the rules above: there are none."""
    relative = [
        f"{name}:{node.lineno}"
        for name, path in project_modules().items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert relative == []


def test_the_core_never_reaches_through_the_worker_into_the_engine() -> None:
    """The core asks the worker (count_tokens, context_window...), never for its `.engine`."""
    reaching = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in modules("bot/core")
        for node in ast.walk(ast.parse(path.read_text()))
        if (isinstance(node, ast.Attribute) and node.attr == "engine")
        or (isinstance(node, ast.Constant) and node.value == "engine")  # getattr(w, "engine")
    ]
    assert reaching == []


def test_no_import_circles() -> None:
    """Imports that run (in functions too) form no circle, also within one layer."""
    graph = {
        name: project_imports(path, at_run_time=True) for name, path in project_modules().items()
    }
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            circle = [*path[path.index(name) :], name]
            raise AssertionError("import circle: " + " -> ".join(circle))
        if name in done:
            return
        for imported in sorted(graph.get(name, ())):
            if imported != name:
                visit(imported, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_emulator_does_not_import_telegram() -> None:
    """The local Bot API emulator speaks HTTP only: it must not share code with what it tests."""
    names = imports(ROOT / "bot" / "local" / "emulator.py")
    assert not {n.split(".")[0] for n in names} & {"telegram", "bot"}


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
        # The commands that train import tuning/ inside their functions.
        if path.name not in ("cli.py", "reader_cli.py", "reranker_cli.py"):
            assert not any(n.split(".")[0] == "tuning" for n in imports(path)), path
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, bot.app, bot.cli, bot.tg.register, "
         "bot.local.chat; print(sorted(m for m in sys.modules "
         "if m.split('.')[0] in {'tuning', 'peft'}))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout.strip()  # fmt: skip
    assert loaded == "[]"
