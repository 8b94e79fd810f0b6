from __future__ import annotations

import pytest

from knowledge.keywords import match_query, segment_for_index
from knowledge.store import KnowledgeStore


def test_cjk_characters_are_indexed_one_by_one() -> None:
    assert segment_for_index("巴黎是法国首都").split() == list("巴黎是法国首都")
    assert segment_for_index("Paris 2024") == "Paris 2024"


def test_query_drops_stop_words_and_quotes_every_term() -> None:
    assert match_query("What is the capital of France?") == '"capital" OR "france"'


def test_adjacent_content_words_also_count_as_a_phrase() -> None:
    assert match_query("What was the operating income in 2019?") == (
        '"operating" OR "income" OR "2019" OR "operating income"'
    )  # "income in 2019": a stop word between, so no pair


def test_query_of_only_stop_words_keeps_them() -> None:
    assert match_query("who is it") == '"who" OR "is" OR "it"'


def test_chinese_query_becomes_bigram_phrases() -> None:
    assert match_query("法国首都") == '"法 国" OR "国 首" OR "首 都"'


def test_empty_query_has_no_terms() -> None:
    assert match_query("?!  ") is None


@pytest.mark.parametrize(
    "hostile",
    ['"unbalanced', "NEAR(a b)", "a* OR -b", "col:value", "^start", "AND OR NOT", "'); DROP"],
)
def test_fts_syntax_in_questions_is_never_interpreted(store: KnowledgeStore, hostile: str) -> None:
    match = match_query(hostile)
    assert match is not None
    assert store.keyword_chunks(match, 5) == []  # a real FTS5 query that parses and runs
