"""llama.cpp's llama-server for `ragtune serve`: where the binary is, how it is started, and the
settings a bot needs to use it.

The binary is built by `make llama-server` from the llama.cpp sources inside the installed
llama-cpp-python release (the GGUF and adapter formats the bot uses), into a folder named after
that release; a user's own build is taken from RAGTUNE_LLAMA_SERVER or PATH.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from bot.llm.adapters import Adapter, AdapterError, AdapterRegistry
from bot.llm.engine import ModelError


def built_llama_server() -> Path:
    """Where `make llama-server` puts the binary for the installed llama-cpp-python."""
    version = metadata.version("llama-cpp-python")
    return Path.home() / ".cache" / "ragtune" / "llama-server" / version / "llama-server"


def find_llama_server(configured: Path | None = None) -> Path:
    """RAGTUNE_LLAMA_SERVER, else `make llama-server`'s build, else llama-server on PATH."""
    if configured is not None:
        if not configured.is_file():
            raise ModelError(f"RAGTUNE_LLAMA_SERVER={configured} is not a file.")
        return configured
    built = built_llama_server()
    if built.is_file():
        return built
    on_path = shutil.which("llama-server")
    if on_path is not None:
        return Path(on_path)
    raise ModelError(
        "llama-server is not built: run `make llama-server` (about 6 minutes, once), or set "
        "RAGTUNE_LLAMA_SERVER to a llama-server binary."
    )


def server_threads(configured: int = 0) -> int:
    """llama-server threads: `configured` (RAGTUNE_SERVE_THREADS), else every core this process
    may use. A serving engine owns its machine; the in-process model leaves half to the bot's
    own work (bot.llm.llama.default_threads), which a server does not have."""
    return configured or len(os.sched_getaffinity(0))


def adapters_for(registry: AdapterRegistry, model: Path) -> list[Adapter]:
    """The registry's adapters made for `model` (checked by its sha256); others are left out."""
    fitting = []
    for adapter in registry.list():
        try:
            adapter.check_base(model)
        except AdapterError:
            continue
        fitting.append(adapter)
    return fitting


def llama_server_command(
    binary: Path,
    model: Path,
    *,
    host: str,
    port: int,
    slots: int,
    context_window: int,
    threads: int,
    adapters: Sequence[Path] = (),
    chat_template: str | None = None,
    cors_origins: str = "",
) -> list[str]:
    """The llama-server command line: `slots` parallel slots with continuous batching, each
    with `context_window` tokens, and `adapters` loaded at scale 0: a request that names none
    gets the base model (llama-server falls back to these scales), one that names an adapter
    gets it alone. Browsers may call it only from the origin `cors_origins` (default: its own
    address),
    never with credentials: llama-server's own default echoes any page's origin and allows them.
    The API key, if any, goes in through the environment (LLAMA_API_KEY), not here."""
    command = [
        str(binary), "--model", str(model), "--host", host, "--port", str(port),
        "--parallel", str(slots), "--cont-batching", "--ctx-size", str(context_window * slots),
        "--threads", str(threads), "--threads-batch", str(threads), "--no-webui",
        "--cors-origins", cors_origin(cors_origins, host, port), "--no-cors-credentials",
    ]  # fmt: skip
    if adapters:
        command.append("--lora-init-without-apply")
        command += ["--lora-scaled", ",".join(f"{adapter}:0" for adapter in adapters)]
    if chat_template:
        command += ["--jinja", "--chat-template", chat_template]
    return command


KEY_BYTES = 32
"""Random bytes of a key `ragtune serve` makes (43 URL-safe characters)."""


def serve_key(key_file: Path) -> str:
    """The API key kept in `key_file`, made (random, readable by its owner only) if there is
    none yet, so that a restarted server keeps the key the bots' .env files hold."""
    if key_file.is_file():
        key_file.chmod(0o600)  # a copy restored with looser rights is closed again
        key = key_file.read_text().strip()
        if key:
            return key
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(KEY_BYTES)
    partial = key_file.with_name(key_file.name + ".partial")
    partial.unlink(missing_ok=True)  # O_EXCL: never a file someone else made, with its rights
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
    partial.replace(key_file)
    return key


def cors_origin(configured: str, host: str, port: int) -> str:
    """The one origin browsers may call the server from: `configured`, else its own address.
    This llama-server writes the setting into Access-Control-Allow-Origin as it is, which holds
    one origin, so a list is refused in one sentence."""
    origin = configured.strip()
    if not origin:
        return f"http://{host}:{port}"
    if "," in origin or " " in origin or origin == "*":
        raise ModelError(
            f"RAGTUNE_SERVE_CORS_ORIGINS={configured!r}: give one origin (such as "
            "https://app.example.com); llama-server sends it as it is, and a list or * would "
            "let no page in or every page."
        )
    return origin


def bot_settings(host: str, port: int, context_window: int) -> list[str]:
    """The .env lines that point a bot at this server (from another machine too)."""
    reachable = socket.gethostname() if host in ("0.0.0.0", "::") else host
    return [
        "RAGTUNE_LLM_BACKEND=openai",
        f"RAGTUNE_OPENAI_BASE_URL=http://{reachable}:{port}/v1",
        "RAGTUNE_OPENAI_FLAVOR=llama-server",
        f"RAGTUNE_CONTEXT_WINDOW={context_window}",
    ]
