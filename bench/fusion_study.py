"""The fusion study behind the search defaults: rank fusion rules scored on both dev sets.

Each set is ingested once (real store, real embedder); for every question the vector and keyword
candidate lists, with their scores and the exact cosine of every candidate, are taken through the
store's own queries. The rules below then re-rank the same candidates, so they differ only in how
they fuse. `product` is what `HybridSearcher` does. Also reported per embedder: ingest time and
the median time to embed one question (the cost side of a stronger embedder).

Run: `python -m bench.fusion_study [--embedder FOLDER] [--sets dev,dev-finance,dev/zh]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import DEV_EVAL_DIR, median, report
from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.evaluation import load_questions, ranked_documents, score_rankings
from knowledge.ingest import Ingestor
from knowledge.keywords import match_query
from knowledge.search import fuse_scores
from knowledge.store import KnowledgeStore

DEPTH = 20
EVAL_ROOT = DEV_EVAL_DIR.parent


@dataclass
class Candidates:
    """One question's candidates: ranked lists and the exact cosine of every candidate."""

    positives: tuple[str, ...]
    by_vector: list[int]
    by_keyword: list[tuple[int, float]]
    """(chunk id, BM25 as a positive score), best first."""
    cosine: dict[int, float]
    documents: dict[int, str]
    """Chunk id -> passage id (shared by every question of a set)."""


Rule = Callable[[Candidates], list[int]]


def _rrf(k: int, keyword_weight: float) -> Rule:
    def rank(c: Candidates) -> list[int]:
        scores: dict[int, float] = {}
        for weight, ids in ((1.0, c.by_vector), (keyword_weight, [i for i, _ in c.by_keyword])):
            for position, chunk_id in enumerate(ids, start=1):
                scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + position)
        return sorted(scores, key=lambda i: (-scores[i], i))

    return rank


def _normalised(how: str, vector_weight: float, absent: str) -> Rule:
    """Scores scaled per query by `how` (max, minmax, z); absent BM25 = 0 or the list's bound."""

    def scale(values: np.ndarray) -> np.ndarray:
        if how == "z":
            return np.asarray((values - values.mean()) / (values.std() + 1e-9), dtype=float)
        spread = values.max() - values.min()  # min-max
        return np.asarray((values - values.min()) / spread if spread > 0 else 0 * values)

    def rank(c: Candidates) -> list[int]:
        ids = list(dict.fromkeys([*c.by_vector, *(i for i, _ in c.by_keyword)]))
        bm25 = dict(c.by_keyword)
        full = len(c.by_keyword) == DEPTH
        bound = c.by_keyword[-1][1] if absent == "bound" and full else 0.0
        if how == "max":
            fused = fuse_scores(
                [c.cosine[i] for i in ids], [bm25.get(i, bound) for i in ids], vector_weight
            )
        else:
            cos = scale(np.clip([c.cosine[i] for i in ids], 0, None))
            kw = scale(np.array([bm25.get(i, bound) for i in ids]))
            fused = vector_weight * cos + (1 - vector_weight) * kw
        return [ids[j] for j in np.lexsort((np.array(ids), -fused))]

    return rank


RULES: dict[str, Rule] = {
    "vector only": lambda c: c.by_vector,
    "keyword only": lambda c: [i for i, _ in c.by_keyword],
    "RRF k=60 (the old rule)": _rrf(60, 1.0),
    "RRF k=1": _rrf(1, 1.0),
    "RRF k=1, keywords x2": _rrf(1, 2.0),
    "min-max, w_vec 0.4": _normalised("minmax", 0.4, "zero"),
    "z-score, w_vec 0.4": _normalised("z", 0.4, "zero"),
    "max, absent = 0, w_vec 0.4": _normalised("max", 0.4, "zero"),
    **{
        f"max, bound, w_vec {w}{' (product)' if w == 0.4 else ''}": _normalised("max", w, "bound")
        for w in (0.3, 0.4, 0.5, 0.6)
    },
}


def collect(
    folder: Path, embedder: SentenceTransformerEmbedder
) -> tuple[list[Candidates], dict[str, float]]:
    """Ingest one set into a temporary store and take every question's candidates."""
    with tempfile.TemporaryDirectory() as tmp, KnowledgeStore.open(Path(tmp) / "kb.db") as store:
        started = time.perf_counter()
        Ingestor(store, embedder).add_paths([folder / "corpus.jsonl"])
        ingest_s = time.perf_counter() - started
        questions = load_questions(folder / "questions.jsonl")
        embed_ms = []
        for question in questions[:50]:
            t0 = time.perf_counter()
            embedder.embed([question.question])
            embed_ms.append((time.perf_counter() - t0) * 1000)
        vectors = embedder.embed([q.question for q in questions])
        external: dict[int, str] = dict(
            store.conn.execute(
                "SELECT c.id, d.external_id FROM chunks c JOIN documents d ON d.id = c.document_id"
            ).fetchall()
        )
        found = []
        for question, vector in zip(questions, vectors, strict=True):
            by_vector = store.nearest_chunks(vector, DEPTH, candidates=400)
            match = match_query(question.question)
            by_keyword = [(i, -s) for i, s in store.keyword_chunks(match, DEPTH)] if match else []
            ids = list(dict.fromkeys([*(i for i, _ in by_vector), *(i for i, _ in by_keyword)]))
            cosine = {i: 1.0 - d for i, d in store.cosine_distances(ids, vector).items()}
            found.append(
                Candidates(
                    question.positive_ids, [i for i, _ in by_vector], by_keyword, cosine, external
                )
            )
        cost: dict[str, float] = {
            "chunks": len(external),
            "ingest_s": round(ingest_s, 1),
            "question_embedding_p50_ms": round(median(embed_ms), 1),
        }
        return found, cost


def score(candidates: list[Candidates], rule: Rule) -> dict[str, float]:
    """recall@1/5 and MRR@10 of a rule over one set's candidates."""
    rankings = [ranked_documents((c.documents[i] for i in rule(c)), 10) for c in candidates]
    recall, mrr = score_rankings(rankings, [c.positives for c in candidates])
    return {
        "recall@1": round(recall[1], 3),
        "recall@5": round(recall[5], 3),
        "mrr@10": round(mrr, 3),
    }


def main() -> None:
    """Score every rule on every set and print one table row per rule."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", type=Path, help="sentence-transformers folder")
    parser.add_argument("--sets", default="dev,dev-finance,dev/zh")
    args = parser.parse_args()
    embedder = SentenceTransformerEmbedder(args.embedder)
    results: dict[str, dict[str, dict[str, float]]] = {}
    costs: dict[str, dict[str, float]] = {}
    for name in args.sets.split(","):
        candidates, costs[name] = collect(EVAL_ROOT / name, embedder)
        results[name] = {label: score(candidates, rule) for label, rule in RULES.items()}
    names = list(results)
    print("| rule | " + " | ".join(f"{n} R@1 / R@5 / MRR@10" for n in names) + " |")
    print("| --- |" + " --- |" * len(names))
    for label in RULES:
        cells = [" / ".join(f"{v:.3f}" for v in results[n][label].values()) for n in names]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("cost:", costs)
    report("fusion_study", {"embedder": embedder.model_id, "sets": results, "cost": costs})


if __name__ == "__main__":
    main()
