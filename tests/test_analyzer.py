"""Analyzer: case folding, stopwords, stemming, tokenization and settings round trip."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascade.core.errors import CascadeError
from cascade.text.analyzer import DEFAULT_TOKEN_PATTERN, Analyzer
from cascade.text.stopwords import LUCENE_ENGLISH, SNOWBALL_ENGLISH, stopword_set

PLAIN = dict(stopwords=None, stemmer=None)


def test_default_pipeline_lowercases_drops_stopwords_and_stems() -> None:
    assert Analyzer().terms("The Runners were RUNNING quickly to their generous houses") == [
        "runner", "were", "run", "quick", "generous", "hous"]


def test_lowercase_on_and_off() -> None:
    assert Analyzer(**PLAIN).terms("Hello WORLD MiXeD") == ["hello", "world", "mixed"]
    assert Analyzer(lowercase=False, **PLAIN).terms("Hello WORLD MiXeD") == ["Hello", "WORLD", "MiXeD"]


def test_stopwords_are_matched_after_lowercasing_only_when_lowercasing() -> None:
    # "The" is removed only once folded to "the"
    assert Analyzer(stemmer=None).terms("The cat") == ["cat"]
    assert Analyzer(lowercase=False, stemmer=None).terms("The cat the") == ["The", "cat"]


def test_english_stopwords_are_lucenes_33() -> None:
    lucene = {
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
        "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
        "they", "this", "to", "was", "will", "with",
    }
    assert len(lucene) == 33
    assert LUCENE_ENGLISH == lucene
    for name in ("english", "en", "lucene", "English"):
        assert stopword_set(name) == lucene
    # "were" is not a Lucene stopword, so it survives the default analyzer
    assert Analyzer(stemmer=None).terms("they were at the zoo") == ["were", "zoo"]


def test_snowball_stopwords_are_a_larger_superset() -> None:
    assert LUCENE_ENGLISH < SNOWBALL_ENGLISH
    assert len(SNOWBALL_ENGLISH) > 100
    assert {"were", "himself", "because", "doesn"} <= SNOWBALL_ENGLISH
    assert Analyzer(stopwords="snowball", stemmer=None).terms("they were at the zoo") == ["zoo"]


def test_no_stopwords_keeps_everything() -> None:
    text = "the cat and the hat"
    assert Analyzer(stopwords=None, stemmer=None).terms(text) == ["the", "cat", "and", "the", "hat"]
    assert Analyzer(stopwords="none", stemmer=None).terms(text) == ["the", "cat", "and", "the", "hat"]
    assert stopword_set(None) == frozenset() == stopword_set("none")


def test_english_stemmer_is_snowball() -> None:
    a = Analyzer(stopwords=None)
    assert a.terms("running runs runner") == ["run", "run", "runner"]
    assert a.terms("connection connected connecting") == ["connect"] * 3
    # Snowball English (Porter2) keeps "generous"; the original Porter stemmer cuts it to "gener"
    assert a.terms("generously") == ["generous"]
    assert Analyzer(stopwords=None, stemmer="porter").terms("generously") == ["gener"]


def test_stemmer_none_keeps_surface_forms() -> None:
    assert Analyzer(stopwords=None, stemmer=None).terms("running connections") == ["running", "connections"]


def test_stem_cache_gives_same_answers_on_repeat() -> None:
    a = Analyzer()
    first = a.terms("cats running cats")
    assert a.terms("cats running cats") == first == ["cat", "run", "cat"]


def test_default_token_pattern_drops_single_characters_and_splits_punctuation() -> None:
    a = Analyzer(**PLAIN)
    assert a.terms("a b cd e-mail x1 3.14 don't") == ["cd", "mail", "x1", "14", "don"]
    assert a.terms("Café naïve") == ["café", "naïve"]  # unicode word characters
    assert a.terms("") == []
    assert a.token_pattern == DEFAULT_TOKEN_PATTERN


def test_custom_token_pattern() -> None:
    a = Analyzer(token_pattern=r"\S+", **PLAIN)
    assert a.terms("e-mail x a.b") == ["e-mail", "x", "a.b"]


def test_tokens_are_before_stemming() -> None:
    a = Analyzer()
    assert a.tokens("The running dogs") == ["running", "dogs"]
    assert a.terms("The running dogs") == ["run", "dog"]


@pytest.mark.parametrize("analyzer", [
    Analyzer(),
    Analyzer(lowercase=False, stopwords="snowball", stemmer="porter", token_pattern=r"\w+"),
    Analyzer(stopwords=None, stemmer=None),
])
def test_to_dict_from_dict_round_trip(analyzer: Analyzer) -> None:
    data = analyzer.to_dict()
    assert set(data) == {"lowercase", "stopwords", "stemmer", "token_pattern"}
    back = Analyzer.from_dict(data)
    assert back == analyzer
    assert back.to_dict() == data
    assert back.terms("The Running DOGS of e-mail") == analyzer.terms("The Running DOGS of e-mail")


def test_to_dict_values() -> None:
    assert Analyzer().to_dict() == {"lowercase": True, "stopwords": "english", "stemmer": "english",
                                    "token_pattern": DEFAULT_TOKEN_PATTERN}


def test_unknown_stopword_list_names_the_known_ones() -> None:
    with pytest.raises(CascadeError) as info:
        Analyzer(stopwords="klingon")
    msg = str(info.value)
    assert "klingon" in msg and "english" in msg and "snowball" in msg and "none" in msg


def test_unknown_stemmer_lists_pystemmer_languages() -> None:
    with pytest.raises(CascadeError) as info:
        Analyzer(stemmer="klingon")
    msg = str(info.value)
    assert "klingon" in msg and "english" in msg and "porter" in msg


def test_bad_token_pattern() -> None:
    with pytest.raises(CascadeError, match=r"bad token_pattern '\('"):
        Analyzer(token_pattern="(")


def test_unknown_settings_key() -> None:
    with pytest.raises(CascadeError, match="unknown analyzer settings: stemer"):
        Analyzer.from_dict({"lowercase": True, "stemer": "english"})


def test_from_dict_validates_values_too() -> None:
    with pytest.raises(CascadeError, match="unknown stemmer"):
        Analyzer.from_dict({"stemmer": "nope"})


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aB1_ é-.,'\n\t") + ["ß", "٣", "日", "\u0301"]), max_size=40))
def test_the_fast_default_pattern_finds_the_same_tokens(text: str) -> None:
    """Analyzer swaps the default pattern for an unanchored one: the tokens must not change."""
    assert Analyzer(**PLAIN).raw_tokens(text) == re.findall(DEFAULT_TOKEN_PATTERN, text.lower())
    assert Analyzer(lowercase=False, **PLAIN).raw_tokens(text) == re.findall(DEFAULT_TOKEN_PATTERN, text)


def test_raw_tokens_and_term_of_compose_to_terms() -> None:
    analyzer = Analyzer()
    text = "The Runners were RUNNING quickly, and the cat's whiskers twitched"
    assert [t for t in map(analyzer.term_of, analyzer.raw_tokens(text)) if t is not None] == analyzer.terms(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60), st.booleans())
def test_ascii_words_longer_than_one_character_are_the_raw_tokens(text: str, lowercase: bool) -> None:
    analyzer = Analyzer(lowercase=lowercase, **PLAIN)
    words = analyzer.ascii_words(text)
    assert words is not None
    assert [w.decode() for w in words if len(w) > 1] == analyzer.raw_tokens(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(max_codepoint=300), max_size=30), max_size=6), st.booleans())
def test_the_batch_split_is_each_texts_ascii_words_between_breaks(texts: list[str], lowercase: bool) -> None:
    from cascade.text.analyzer import QUERY_BREAK

    analyzer = Analyzer(lowercase=lowercase, **PLAIN)
    batch = analyzer.ascii_words_batch(texts)
    if any(QUERY_BREAK.decode() in text for text in texts if text.isascii()):
        assert batch is None  # the break character inside a text would split it: no batch split
        return
    assert batch is not None
    expected: list[bytes] = []
    for i, text in enumerate(texts):
        expected += ([QUERY_BREAK] if i else []) + (analyzer.ascii_words(text) or [])
    assert batch == (expected, [i for i, text in enumerate(texts) if not text.isascii()])


def test_the_batch_split_leaves_unicode_texts_out_and_needs_the_default_pattern() -> None:
    assert Analyzer().ascii_words_batch(["plain", "café", "x"]) == ([b"plain", b"\x01", b"\x01", b"x"], [1])
    assert Analyzer(token_pattern=r"\w+").ascii_words_batch(["plain text"]) is None
    assert Analyzer().ascii_words_batch([]) == ([], [])


def test_ascii_words_only_for_ascii_text_and_the_default_pattern() -> None:
    assert Analyzer().ascii_words("café au lait") is None
    assert Analyzer(token_pattern=r"\w+").ascii_words("plain text") is None
    assert Analyzer().ascii_words("Hello, A-b c_d") == [b"hello", b"a", b"b", b"c_d"]
