"""Collections: each document belongs to one, and a search sees only the collections it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.errors import CollectionError, DocumentNotFoundError
from knowledge.ingest import Ingestor, Outcome
from knowledge.migrations import GLOBAL_COLLECTION
from knowledge.reindex import reindex
from knowledge.search import HybridSearcher, SearchSettings
from knowledge.store import KnowledgeStore
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


def test_a_vector_moved_to_another_collections_partition_is_a_problem(
    store: KnowledgeStore,
) -> None:
    hr = store.create_collection("hr")
    _add(store, hr.id, HOLIDAYS_HR)
    # Moved by hand, without its vectors: global would not find it, hr's searches would.
    store.conn.execute("UPDATE documents SET collection_id = ?", (GLOBAL_COLLECTION,))
    assert store.problems() == ["1 vectors outside their collection's partitions"]
