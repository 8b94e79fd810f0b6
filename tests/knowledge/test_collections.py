"""Collections: each document belongs to one, and a search sees only the collections it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.errors import CollectionError, DocumentNotFoundError, EmbedderMismatchError
from knowledge.ingest import Ingestor, Outcome
from knowledge.migrations import GLOBAL_COLLECTION
from knowledge.reindex import reindex, reindex_collection
from knowledge.search import HybridSearcher, SearchSettings
from knowledge.store import EmbeddingModel, KnowledgeStore
from knowledge.vector_tables import exact_table
from tests.helpers import HashEmbedder
from tests.knowledge.old_schema import as_schema_version_1

HOLIDAYS_HR = "Staff holidays: every employee has 30 days of paid holiday a year."
HOLIDAYS_SHOP = "Shop holidays: the shop is closed on 24, 25 and 26 December."


def _add(store: KnowledgeStore, collection: int, text: str, key: str = "faq.md") -> Outcome:
    ingestor = Ingestor(store, HashEmbedder(), chunk_chars=200, collection=collection)
    return ingestor.add_text(text, title=key, external_id=key, source="test").outcome


def test_a_new_knowledge_base_has_the_global_collection_only(store: KnowledgeStore) -> None:
    (only,) = store.collections()
    assert (only.id, only.name, only.documents) == (GLOBAL_COLLECTION, "global", 0)


def test_two_collections_keep_a_document_of_the_same_name_apart(store: KnowledgeStore) -> None:
    hr = store.create_collection("hr")
    shop = store.create_collection("shop")
    assert _add(store, hr.id, HOLIDAYS_HR) is Outcome.ADDED
    assert _add(store, shop.id, HOLIDAYS_SHOP) is Outcome.ADDED  # not "replaced": its own faq.md
    assert [d.external_id for d in store.list_documents(hr.id)] == ["faq.md"]
    assert store.list_documents(GLOBAL_COLLECTION) == []
    assert len(store.list_documents(None)) == 2
    assert {c.name: c.documents for c in store.collections()} == {"global": 0, "hr": 1, "shop": 1}
    assert store.stats(hr.id).documents == 1 and store.stats().documents == 2
    shop_doc = store.find_document("faq.md", shop.id)
    assert shop_doc is not None and shop_doc.collection_id == shop.id
    with pytest.raises(DocumentNotFoundError):  # by number too: the other collection's is not found
        store.resolve_document(str(shop_doc.id), hr.id)
    assert store.problems() == []


@pytest.mark.parametrize("retriever", ["hybrid", "keyword", "vector"])
def test_a_search_never_returns_a_chunk_of_a_collection_it_was_not_given(
    store: KnowledgeStore, retriever: str
) -> None:
    hr, shop = store.create_collection("hr"), store.create_collection("shop")
    _add(store, hr.id, HOLIDAYS_HR)
    _add(store, shop.id, HOLIDAYS_SHOP)
    searcher = HybridSearcher(store, HashEmbedder(), SearchSettings(retriever=retriever))  # type: ignore[arg-type]
    for collection, text in ((hr, HOLIDAYS_HR), (shop, HOLIDAYS_SHOP)):
        hits = searcher.search("When are the holidays?", k=5, collections=[collection.id])
        assert [hit.chunk.text for hit in hits] == [text]
        assert hits[0].chunk.collection_id == collection.id
    assert searcher.search("When are the holidays?", k=5) == []  # global holds nothing
    both = searcher.search("When are the holidays?", k=5, collections=[hr.id, shop.id])
    assert {hit.chunk.text for hit in both} == {HOLIDAYS_HR, HOLIDAYS_SHOP}


def test_a_small_collection_is_not_crowded_out_by_a_big_one(store: KnowledgeStore) -> None:
    """The filter is inside the k-NN scan: 600 near copies elsewhere cannot take its places."""
    big = store.create_collection("big")
    ingestor = Ingestor(store, HashEmbedder(), chunk_chars=200, collection=big.id)
    for n in range(600):
        ingestor.add_text(
            f"{HOLIDAYS_SHOP} Branch {n}.", title=f"b{n}", external_id=f"b{n}", source="test"
        )
    small = store.create_collection("small")
    _add(store, small.id, "A note on parking behind the building.")
    vector_only = HybridSearcher(store, HashEmbedder(), SearchSettings(retriever="vector"))
    (hit,) = vector_only.search(HOLIDAYS_SHOP, k=3, collections=[small.id])
    assert hit.chunk.text.startswith("A note on parking")


def test_collection_names_are_checked(store: KnowledgeStore) -> None:
    store.create_collection("support-2")
    with pytest.raises(CollectionError, match="already a collection"):
        store.create_collection("support-2")
    for bad in ("", "Support", "a b", "-x", "x" * 33, "../etc"):
        with pytest.raises(CollectionError, match="not a collection name"):
            store.create_collection(bad)
    with pytest.raises(CollectionError, match="there are: global, support-2"):
        store.collection("nope")


def test_an_older_knowledge_base_moves_into_global_without_re_embedding(tmp_path: Path) -> None:
    db = tmp_path / "kb.db"
    with KnowledgeStore.open(db) as store:
        _add(store, GLOBAL_COLLECTION, HOLIDAYS_SHOP)
        vectors = store.count_rows()
    as_schema_version_1(db)
    with KnowledgeStore.open(db) as store:
        (doc,) = store.list_documents()
        assert doc.collection_id == GLOBAL_COLLECTION and store.problems() == []
        assert store.count_rows() == vectors
        embedder = HashEmbedder()
        (hit,) = HybridSearcher(store, embedder).search("shop holidays", k=3)
        assert hit.chunk.text == HOLIDAYS_SHOP and embedder.embedded == 1  # the query alone


def test_a_reindex_keeps_every_vector_in_its_collection(store: KnowledgeStore) -> None:
    hr = store.create_collection("hr")
    _add(store, hr.id, HOLIDAYS_HR)
    _add(store, GLOBAL_COLLECTION, HOLIDAYS_SHOP)
    other = HashEmbedder(dimension=32, model_id="test/other")
    reindex(store, other)
    assert store.problems() == []
    (hit,) = HybridSearcher(store, other).search("holidays", k=3, collections=[hr.id])
    assert hit.chunk.text == HOLIDAYS_HR


def _swap_float_vectors(store: KnowledgeStore, a: int, b: int) -> None:
    """Give chunks a and b each other's float vectors (a stand-in for vectors gone stale)."""
    table = exact_table(store.vector_table or "")
    store.conn.execute(
        f"UPDATE {table} SET chunk_id = CASE chunk_id WHEN ? THEN ? ELSE ? END "
        "WHERE chunk_id IN (?, ?)",
        (a, -1, -2, a, b),
    )
    store.conn.execute(f"UPDATE {table} SET chunk_id = ? WHERE chunk_id = -1", (b,))
    store.conn.execute(f"UPDATE {table} SET chunk_id = ? WHERE chunk_id = -2", (a,))


def test_reindexing_one_collection_re_embeds_its_chunks_in_place_and_no_others(
    store: KnowledgeStore,
) -> None:
    hr = store.create_collection("hr")
    _add(store, hr.id, HOLIDAYS_HR)
    _add(store, GLOBAL_COLLECTION, HOLIDAYS_SHOP)
    (hr_chunk,) = next(store.iter_chunks(collection=hr.id))
    (shop_chunk,) = next(store.iter_chunks(collection=GLOBAL_COLLECTION))
    _swap_float_vectors(store, hr_chunk.id, shop_chunk.id)
    table = store.vector_table
    embedder = HashEmbedder()
    hr_vector, shop_vector = embedder.embed([hr_chunk.embed_text, shop_chunk.embed_text])

    assert reindex_collection(store, embedder, hr.id) == 1
    assert embedder.calls[-1] == 1  # hr's one chunk, not the shop's
    assert store.vector_table == table  # in place: no new generation
    repaired = store.cosine_distances([hr_chunk.id], hr_vector)[hr_chunk.id]
    assert repaired == pytest.approx(0, abs=1e-6)
    assert store.cosine_distances([shop_chunk.id], shop_vector)[shop_chunk.id] > 0.1  # untouched
    assert store.problems() == []


def test_reindexing_one_collection_keeps_the_files_model_and_skips_replaced_chunks(
    store: KnowledgeStore,
) -> None:
    hr = store.create_collection("hr")
    _add(store, hr.id, HOLIDAYS_HR)
    other = HashEmbedder(dimension=32, model_id="test/other")
    with pytest.raises(EmbedderMismatchError, match="one collection cannot change model alone"):
        reindex_collection(store, other, hr.id)
    assert store.embedding_model is not None and store.embedding_model.dimension == 64

    (stale,) = next(store.iter_chunks(collection=hr.id))  # embedded, then replaced by a writer
    _add(store, hr.id, "Staff holidays: 32 days a year from 2027.")
    vectors = HashEmbedder().embed([stale.embed_text])
    assert store.embedding_model is not None
    assert store.replace_vectors([stale], vectors, store.embedding_model) == 0
    with pytest.raises(EmbedderMismatchError):  # switched by a whole-file reindex meanwhile
        store.replace_vectors([stale], vectors, EmbeddingModel("test/other", 64))
    assert store.problems() == []


def test_a_vector_moved_to_another_collections_partition_is_a_problem(
    store: KnowledgeStore,
) -> None:
    hr = store.create_collection("hr")
    _add(store, hr.id, HOLIDAYS_HR)
    # Moved by hand, without its vectors: global would not find it, hr's searches would.
    store.conn.execute("UPDATE documents SET collection_id = ?", (GLOBAL_COLLECTION,))
    assert store.problems() == ["1 vectors outside their collection's partitions"]
