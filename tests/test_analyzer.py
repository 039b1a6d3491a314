"""Analyzer: case and accent folding, stopwords, stemming, tokenization, CJK bigrams, symbol
suffixes (c++, c#), the fast ASCII paths and settings round trip."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascade.core.errors import CascadeError
from cascade.text.analyzer import DEFAULT_TOKEN_PATTERN, QUERY_BREAK, Analyzer
from cascade.text.folding import fold_accents
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
    assert a.terms("Café naïve") == ["cafe", "naive"]  # unicode word characters, accents folded
    assert Analyzer(fold_accents=False, **PLAIN).terms("Café naïve") == ["café", "naïve"]
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
    Analyzer(fold_accents=False, cjk="bigrams", symbol_suffixes=True),
])
def test_to_dict_from_dict_round_trip(analyzer: Analyzer) -> None:
    data = analyzer.to_dict()
    assert set(data) == {"lowercase", "stopwords", "stemmer", "token_pattern", "fold_accents", "cjk",
                         "symbol_suffixes"}
    back = Analyzer.from_dict(data)
    assert back == analyzer
    assert back.to_dict() == data
    text = "The Running DOGS of e-mail, Café 東京都 C++"
    assert back.terms(text) == analyzer.terms(text)


def test_to_dict_values() -> None:
    assert Analyzer().to_dict() == {"lowercase": True, "stopwords": "english", "stemmer": "english",
                                    "token_pattern": DEFAULT_TOKEN_PATTERN, "fold_accents": True, "cjk": None,
                                    "symbol_suffixes": False}


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
    raw = dict(fold_accents=False, **PLAIN)
    assert Analyzer(**raw).raw_tokens(text) == re.findall(DEFAULT_TOKEN_PATTERN, text.lower())
    assert Analyzer(lowercase=False, **raw).raw_tokens(text) == re.findall(DEFAULT_TOKEN_PATTERN, text)
    assert Analyzer(**PLAIN).raw_tokens(text) == re.findall(DEFAULT_TOKEN_PATTERN, fold_accents(text).lower())


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


# --- accent folding ----------------------------------------------------------------------


@pytest.mark.parametrize("text,folded", [
    ("Café Zürich", "Cafe Zurich"),
    ("Straße STRAẞE", "Strasse STRASSE"),
    ("Øresund ø æ Æ œ Œ", "Oresund o ae AE oe OE"),
    ("đ Đ ł Ł þ Þ ð ı ħ ŧ ŋ", "d D l L th TH d i h t n"),
    ("naïve façade crème brûlée São Paulo Ångström", "naive facade creme brulee Sao Paulo Angstrom"),
    ("Nguyễn Đức", "Nguyen Duc"),
    ("Ελλάδα йод ёлка", "Ελλαδα иод елка"),  # Greek tonos, Cyrillic breve and diaeresis
    ("ﬁne ＡＢＣ １２ ①", "fine ABC 12 1"),  # compatibility forms (NFKD)
    ("İstanbul", "Istanbul"),
    ("한국어 ガギ が हिन्दी עִבְרִית", "한국어 ガギ が हिन्दी עִבְרִית"),  # script marks kept, Hangul whole
    ("ｶﾞｷﾞ", "ガギ"),  # half-width kana and voicing mark composed
])
def test_fold_accents_examples(text: str, folded: str) -> None:
    assert fold_accents(text) == folded


def test_fold_accents_leaves_ascii_alone() -> None:
    text = "plain ASCII, C++ & e-mail"
    assert fold_accents(text) is text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("aE ,ß") + ["é", "e\u0301", "Ø", "ﬁ", "가", "\u1100\u1161", "カ", "\u3099", "ｶ",
                                                  "ﾞ", "İ", "\u0301", "ẞ", "\u0958", "\u0915\u093c"]), max_size=30).map("".join))
def test_folding_is_idempotent_and_leaves_no_diacritic(text: str) -> None:
    from cascade.text.folding import MARKS

    once = fold_accents(text)
    assert fold_accents(once) == once
    assert not re.search(f"[{MARKS}]", once)
    assert Analyzer(**PLAIN).raw_tokens(text) == Analyzer(**PLAIN).raw_tokens(once)


def test_folding_is_on_by_default_for_documents_and_queries_alike() -> None:
    a = Analyzer(**PLAIN)
    assert a.fold_accents is True
    assert a.terms("Café Zürich") == a.terms("cafe zurich") == a.terms("CAFE ZÜRICH") == ["cafe", "zurich"]
    assert a.terms("Straße Øre Æsir") == ["strasse", "ore", "aesir"]
    # an accent written as a combining mark (NFD) folds the same as a precomposed letter
    assert a.terms("cafe\u0301s") == a.terms("cafés") == ["cafes"]
    assert Analyzer().terms("Les cafés de Zürich") == Analyzer().terms("les cafes de zurich")
    assert Analyzer(fold_accents=False, **PLAIN).terms("Café Zürich") == ["café", "zürich"]


def test_an_analyzer_dict_from_before_the_new_settings_keeps_the_old_behaviour() -> None:
    """Manifests written before folding existed have four keys: those indexes did not fold,
    so their queries must not fold either."""
    old = {"lowercase": True, "stopwords": "english", "stemmer": "english", "token_pattern": DEFAULT_TOKEN_PATTERN}
    a = Analyzer.from_dict(old)
    assert (a.fold_accents, a.cjk, a.symbol_suffixes) == (False, None, False)
    assert a.terms("Café Zürich C++ 東京都") == ["café", "zürich", "東京都"]
    assert a != Analyzer()  # a new index folds
    assert Analyzer.from_dict({}) == Analyzer(fold_accents=False)
    assert Analyzer.from_dict({**old, "fold_accents": True}) == Analyzer()


def test_bad_new_settings() -> None:
    with pytest.raises(CascadeError, match="unknown cjk mode 'unigrams'; known: bigrams, none"):
        Analyzer(cjk="unigrams")
    with pytest.raises(CascadeError, match="fold_accents must be true or false"):
        Analyzer.from_dict({"fold_accents": "yes"})
    assert Analyzer(cjk="none") == Analyzer() and Analyzer(cjk="none").cjk is None


# --- CJK bigrams -------------------------------------------------------------------------

CJK = dict(cjk="bigrams", **PLAIN)


def test_cjk_bigrams_on_chinese_and_japanese_sentences() -> None:
    a = Analyzer(**CJK)
    assert a.terms("我爱北京天安门") == ["我爱", "爱北", "北京", "京天", "天安", "安门"]
    # Han, Hiragana and Katakana alike, one run; punctuation ends a run
    assert a.terms("東京都に住んでいます。カタカナ") == [
        "東京", "京都", "都に", "に住", "住ん", "んで", "でい", "いま", "ます", "カタ", "タカ", "カナ"]
    assert a.terms("한국어 텍스트") == ["한국", "국어", "텍스", "스트"]
    # a lone character stays a unigram (the default pattern drops one-letter words of other scripts)
    assert a.terms("猫 と 犬 a") == ["猫", "と", "犬"]
    # without the option a run of CJK characters is one word
    assert Analyzer(**PLAIN).terms("我爱北京天安门") == ["我爱北京天安门"]


def test_cjk_bigrams_in_mixed_script_text() -> None:
    a = Analyzer(**CJK)
    # a change of script ends a word; the other scripts are tokenised by the token pattern
    assert a.terms("iPhone用ケース、価格は2万円 Café") == [
        "iphone", "用ケ", "ケー", "ース", "価格", "格は", "万円", "cafe"]
    assert a.terms("Python3で機械学習") == ["python3", "で機", "機械", "械学", "学習"]
    assert Analyzer(stopwords=None, cjk="bigrams").terms("Running 東京 runners") == ["run", "東京", "runner"]
    # half-width katakana is folded to full width first
    assert a.terms("ｶﾀｶﾅ") == a.terms("カタカナ") == ["カタ", "タカ", "カナ"]


def test_cjk_bigrams_leave_other_text_as_it_was() -> None:
    text = "The Café on Main St., naïve e-mail x1 Ελλάδα"
    assert Analyzer(cjk="bigrams").terms(text) == Analyzer().terms(text)


# --- symbol suffixes: c++, c# ------------------------------------------------------------

SYM = dict(symbol_suffixes=True, **PLAIN)


def test_symbol_suffixes_keep_c_plus_plus_and_c_sharp() -> None:
    a = Analyzer(**SYM)
    assert a.terms("C++ and C#, F#; g++ Notepad++ (J#)") == ["c++", "and", "c#", "f#", "g++", "notepad++", "j#"]
    # only a word of letters, only a run right after it, only when no word character follows
    assert a.terms("a+b x + y 1+1 issue#12 #tag C++11 x1++ c+++") == ["issue", "12", "tag", "11", "x1", "c+++"]
    assert a.terms(".NET ASP.NET") == ["net", "asp", "net"]  # a dot is a separator: ".NET" is "net"
    assert Analyzer(**PLAIN).terms("C++ C# g++ Notepad++") == ["notepad"]  # "c", "g": too short
    assert Analyzer(symbol_suffixes=True).terms("C++ is running") == ["c++", "run"]


def test_symbol_suffixes_with_a_custom_pattern_and_leading_flags() -> None:
    assert Analyzer(token_pattern=r"(?i)[a-z]+", **SYM).terms("C++ x1") == ["c++", "x"]
    assert Analyzer(token_pattern=r"\S+", **SYM).terms("c++, a") == ["c++", ",", "a"]


# --- the fast ASCII paths equal the regex path, under every option -----------------------

OPTIONS = [
    dict(PLAIN),
    dict(lowercase=False, **PLAIN),
    dict(fold_accents=False, **PLAIN),
    dict(cjk="bigrams", symbol_suffixes=True, **PLAIN),
    dict(symbol_suffixes=True, lowercase=False, **PLAIN),
    dict(cjk="bigrams", fold_accents=False, **PLAIN),
]


def batch_tokens(analyzer: Analyzer, texts: list[str]) -> list[list[str]] | None:
    """Each text's raw tokens as QueryTerms gets them through the batch split (bytes words of two
    characters or more, the regex for the texts the split leaves out)."""
    batch = analyzer.ascii_words_batch(texts)
    if batch is None:
        return None
    words, others = batch
    per_text: list[list[str]] = [[]]
    for word in words:
        if word == QUERY_BREAK:
            per_text.append([])
        elif len(word) > 1:
            per_text[-1].append(word.decode())
    if not texts:
        per_text = []
    for i in others:
        assert per_text[i] == []
        per_text[i] = analyzer.raw_tokens(texts[i])
    return per_text


TEXT = st.text(alphabet=st.sampled_from(list("aB1_ -.,+#\n") + ["é", "ß", "日", "本", "ガ", "한", "\u0301", "\x01"]),
               max_size=25)


@settings(max_examples=400, deadline=None)
@given(st.lists(TEXT, max_size=5), st.sampled_from(range(len(OPTIONS))))
def test_the_batch_split_gives_the_regex_tokens_under_every_option(texts: list[str], option: int) -> None:
    analyzer = Analyzer(**OPTIONS[option])
    got = batch_tokens(analyzer, texts)
    if got is None:  # only when a text to split holds the break character
        assert any(QUERY_BREAK.decode() in t for t in texts)
    else:
        assert got == [analyzer.raw_tokens(t) for t in texts]
    for text in texts:
        words = analyzer.ascii_words(text)
        if words is not None:
            assert [w.decode() for w in words if len(w) > 1] == analyzer.raw_tokens(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(max_codepoint=127), max_size=40), max_size=6))
def test_the_default_analyzer_splits_every_ascii_batch_fast(texts: list[str]) -> None:
    """The default analyzer (folding on) keeps the fast path for ASCII queries: nothing is left to
    the regex, and the tokens are the regex's."""
    analyzer = Analyzer()
    if any(QUERY_BREAK.decode() in t for t in texts):
        return
    batch = analyzer.ascii_words_batch(texts)
    assert batch is not None and batch[1] == []
    assert batch_tokens(analyzer, texts) == [analyzer.raw_tokens(t) for t in texts]
    assert all(analyzer.ascii_words(t) is not None for t in texts)


def test_symbol_suffixes_send_only_texts_with_plus_or_hash_to_the_regex() -> None:
    a = Analyzer(**SYM)
    assert a.ascii_words("c++ code") is None and a.ascii_words("c# code") is None
    assert a.ascii_words("c code") == [b"c", b"code"]
    assert a.ascii_words_batch(["c code", "c++", "café", "x#"]) == ([b"c", b"code", b"\x01", b"\x01", b"\x01"],
                                                                   [1, 2, 3])
