"""Search latency at 10k and 100k chunks (384-d): hybrid search vs numpy brute-force cosine.

Chunk texts are dev-set passages' chunks with variant suffixes; vectors are real all-MiniLM-L6-v2
chunk vectors mixed and perturbed into distinct unit vectors, so the binary coarse pass sees the
real distribution. Queries are real dev questions embedded by the real model (embedding time is
reported on its own). Run: `make bench` or `python -m bench.search_latency [SIZES...]
[--collections N]`: with N, the chunks are spread over N collections of uneven size (the i-th
holds a share proportional to 1/i, as chats' knowledge tends to be) and each query searches one
collection, round robin, against numpy over that collection's vectors alone.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import DEV_EVAL_DIR, median, percentiles_ms, read_jsonl, report
from knowledge.chunking import Chunk, chunk_document
from knowledge.embeddings import SentenceTransformerEmbedder, Vectors
from knowledge.migrations import GLOBAL_COLLECTION
from knowledge.parsers import parse_bytes
from knowledge.search import HybridSearcher
from knowledge.store import DocumentWrite, EmbeddingModel, KnowledgeStore

SIZES = (10_000, 100_000)
QUERIES = 200
PASSES = 3
K = 5
PER_DOCUMENT = 100


class FixedEmbedder:
    """Stands in for the model at search time: the bench hands over query vectors itself."""

    model_id = "bench/perturbed-minilm"
    dimension = 384

    def embed(self, texts: object) -> np.ndarray:
        """Never called: the bench searches with precomputed vectors."""
        raise NotImplementedError


def base_chunks() -> list[Chunk]:
    """The dev corpus chunked as `kb add` would."""
    data = (DEV_EVAL_DIR / "corpus.jsonl").read_bytes()
    return [c for doc in parse_bytes(data, "corpus.jsonl") for c in chunk_document(doc)]


def collection_of_documents(documents: int, collections: int) -> np.ndarray:
    """The collection (0..collections-1) of each document: shares proportional to 1/i."""
    if collections <= 1:
        return np.zeros(documents, dtype=int)
    shares = 1.0 / np.arange(1, collections + 1)
    bounds = np.cumsum(shares / shares.sum()) * documents
    return np.searchsorted(bounds, np.arange(documents), side="right")


def build(
    path: Path, size: int, chunks: list[Chunk], vectors: np.ndarray, collections: int = 1
) -> tuple[Vectors, np.ndarray, list[int]]:
    """Write `size` chunks in documents of PER_DOCUMENT, over `collections` collections; return
    the matrix of their vectors, each chunk's collection index and the collections' ids."""
    rng = np.random.default_rng(size)
    n = len(chunks)
    first, second = np.arange(size) % n, rng.integers(0, n, size)
    mixed = vectors[first] + 0.5 * vectors[second] + rng.normal(0, 0.02, (size, 384))
    matrix: Vectors = (mixed / np.linalg.norm(mixed, axis=1, keepdims=True)).astype(np.float32)
    owner = collection_of_documents(-(-size // PER_DOCUMENT), collections)
    with KnowledgeStore.open(path) as store:
        store.bind_embedder(FixedEmbedder.model_id, FixedEmbedder.dimension)
        ids = (
            [store.create_collection(f"c{i}").id for i in range(collections)]
            if collections > 1
            else [GLOBAL_COLLECTION]
        )
        for start in range(0, size, PER_DOCUMENT):
            rows = range(start, min(start + PER_DOCUMENT, size))
            new = [
                Chunk(i - start, chunks[first[i]].heading, f"{chunks[first[i]].text} (v{i})")
                for i in rows
            ]
            store.save_document(
                DocumentWrite(
                    external_id=f"doc-{start}", source="bench", title="bench", content_hash="",
                    size=0, added_by=None, keep=(), remove=(), new=new,
                    vectors=matrix[start : start + len(new)],
                    model=EmbeddingModel(FixedEmbedder.model_id, FixedEmbedder.dimension),
                    collection=ids[owner[start // PER_DOCUMENT]],
                )
            )  # fmt: skip
    return matrix, owner[np.arange(size) // PER_DOCUMENT], ids


def measure(size: int, chunks: list[Chunk], vectors: np.ndarray, questions: list[str],
            query_vectors: np.ndarray, collections: int = 1) -> dict[str, object]:  # fmt: skip
    """Latency percentiles of hybrid search and numpy brute force, medians over PASSES."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        full, owner, collection_ids = build(Path(tmp) / "kb.db", size, chunks, vectors, collections)
        # Query n searches collection n % collections; numpy gets that collection's vectors only.
        asked = [n % len(collection_ids) for n in range(len(questions))]
        matrices = [full[owner == c] for c in range(len(collection_ids))]
        build_s = time.perf_counter() - started
        with KnowledgeStore.open(Path(tmp) / "kb.db") as store:
            searcher = HybridSearcher(store, FixedEmbedder())
            ids = np.array([c.id for batch in store.iter_chunks(10_000) for c in batch])
            hybrid: list[list[float]] = [[], []]
            brute: list[list[float]] = [[], []]
            found = 0
            for _ in range(PASSES):
                # Not interleaved: BLAS threads spin for a while after a matmul and would steal
                # the core that the keyword query runs on.
                hybrid_s, brute_s = [], []
                for question, vector, c in zip(questions, query_vectors, asked, strict=True):
                    t0 = time.perf_counter()
                    searcher.search_with_vector(question, vector, K, [collection_ids[c]])
                    hybrid_s.append(time.perf_counter() - t0)
                time.sleep(0.5)
                for vector, c in zip(query_vectors, asked, strict=True):
                    matrix = matrices[c]
                    t0 = time.perf_counter()
                    scores = matrix @ vector
                    top = np.argpartition(-scores, K)[:K]
                    top = top[np.argsort(-scores[top])]
                    brute_s.append(time.perf_counter() - t0)
                for into, values in ((hybrid, hybrid_s), (brute, brute_s)):
                    p50, p95 = percentiles_ms(values)
                    into[0].append(p50)
                    into[1].append(p95)
            for vector, c in zip(query_vectors, asked, strict=True):  # does the 1-bit pass
                inside = ids[owner == c]  # lose true neighbours?
                exact = set(inside[np.argsort(-(matrices[c] @ vector))[:10]])
                coarse = searcher.settings.coarse_candidates
                nearest = store.nearest_chunks(
                    vector, 10, candidates=coarse, collections=[collection_ids[c]]
                )
                found += len(exact & {i for i, _ in nearest})
    return {
        "chunks": size,
        "collections": len(collection_ids),
        "collection_chunks": [int((owner == c).sum()) for c in range(len(collection_ids))],
        "build_s": round(build_s, 1),
        "hybrid_p50_ms": round(median(hybrid[0]), 2),
        "hybrid_p95_ms": round(median(hybrid[1]), 2),
        "numpy_p50_ms": round(median(brute[0]), 2),
        "numpy_p95_ms": round(median(brute[1]), 2),
        "p50_ratio": round(median(hybrid[0]) / median(brute[0]), 2),
        "vector_recall@10_vs_exact": round(found / (10 * len(query_vectors)), 4),
    }


def main() -> None:
    """Measure each size and report."""
    args = sys.argv[1:]
    collections = 1
    if "--collections" in args:
        at = args.index("--collections")
        collections = int(args[at + 1])
        del args[at : at + 2]
    sizes = tuple(int(a) for a in args) or SIZES
    embedder = SentenceTransformerEmbedder()
    chunks = base_chunks()
    vectors = embedder.embed([c.embed_text for c in chunks])
    rows = read_jsonl(DEV_EVAL_DIR / "questions.jsonl")[:: max(1, 1190 // QUERIES)][:QUERIES]
    questions = [str(r["question"]) for r in rows]
    embed_s = []
    for q in questions:
        started = time.perf_counter()
        embedder.embed([q])
        embed_s.append(time.perf_counter() - started)
    query_vectors = embedder.embed(questions)
    results = [
        measure(size, chunks, vectors, questions, query_vectors, collections) for size in sizes
    ]
    for r in results:
        print(r)
    report(
        "search_latency",
        {
            "k": K,
            "queries": len(questions),
            "passes": PASSES,
            "query_embedding_p50_ms": round(percentiles_ms(embed_s)[0], 2),
            "sizes": results,
        },
    )


if __name__ == "__main__":
    main()
