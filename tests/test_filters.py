"""Metadata filters: the language, the Python API, semantics against a Python oracle, and
pre-filtered top-k on every BM25 path (never a non-matching document, never fewer than
min(k, matching documents that score above zero))."""

from __future__ import annotations

import datetime as dt
import operator
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade.core.errors import CascadeError
from cascade.core.types import Doc, Query
from cascade.filters import F, FilterSyntaxError, parse_filter
from cascade.filters.expr import And, Compare, Expr, In, Missing, Not, Or
from cascade.index.index import Index
from cascade.retrieve.bm25 import BM25

FIELDS = {"year": "int", "lang": "keyword", "score": "float", "day": "date"}
LANGS = ["de", "en", "fr", "zh"]
WORDS = [f"w{i}" for i in range(40)]


def make_docs(n: int, seed: int = 0) -> list[Doc]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        meta: dict = {}
        if rng.random() < 0.8:
            meta["year"] = rng.randint(1990, 2024)
        if rng.random() < 0.8:
            meta["lang"] = rng.choice(LANGS)
        if rng.random() < 0.8:
            meta["score"] = round(rng.uniform(0, 10), 2)
        if rng.random() < 0.8:
            meta["day"] = (dt.date(2020, 1, 1) + dt.timedelta(days=rng.randint(0, 700))).isoformat()
        docs.append(Doc(f"d{i}", " ".join(rng.choices(WORDS[: 5 + i % 35], k=rng.randint(1, 12))), meta=meta))
    return docs


class Fixture(tuple):
    def __repr__(self) -> str:  # keep hypothesis' failure reports short
        return "indexes"


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Doc], Index, Index]:
    """One single-segment index, one with three segments and deletions, over the same live docs."""
    tmp = tmp_path_factory.mktemp("filters")
    docs = make_docs(600)
    single = Index.build(docs, tmp / "single", filter_fields=FIELDS)
    multi = Index.build(docs[:200] + [Doc("gone1", "w1 w2 w3", meta={"year": 2000})], tmp / "multi",
                        filter_fields=FIELDS)
    multi.add(docs[200:400] + [Doc("gone2", "w1 w1", meta={"lang": "en"})], merge=False)
    multi.add(docs[400:], merge=False)
    multi.delete(["gone1", "gone2"])
    return Fixture((docs, single, multi.refresh()))


# -- the language -----------------------------------------------------------------------

def test_parse_and_print_round_trip() -> None:
    text = 'year >= 2020 AND lang IN ("en", "de") AND NOT status = "draft"'
    assert str(parse_filter(text)) == text
    assert str(parse_filter("a = 1 or b = 2 and c = 3")) == "a = 1 OR b = 2 AND c = 3"
    assert str(parse_filter("(a = 1 or b = 2) and not (c = 3)")) == "(a = 1 OR b = 2) AND NOT c = 3"
    assert str(parse_filter("x not in (1, 2.5)")) == "NOT x IN (1, 2.5)"
    assert str(parse_filter("name == 'it\\'s'")) == 'name = "it\'s"'
    assert str((F("year") >= 2020) & F("lang").isin(["en", "de"]) & ~(F("status") == "draft")) == text
    assert str((F("a") < 1) | (F("b") != "x")) == 'a < 1 OR b != "x"'


@pytest.mark.parametrize("text, message, caret", [
    ("year >", "expected a number or a quoted string", 6),
    ("year >= 2020 AND", "expected a field name", 16),
    ("(year = 1", "expected ')'", 9),
    ("year = abc", "quote strings and dates", 7),
    ("yaer = 1", "unknown filter field 'yaer'; did you mean 'year'?", 0),
    ('year = "x"', "compare it with a number", 7),
    ("lang = 5", "compare it with a quoted string", 7),
    ('day > "2020-13-01"', "not a date", 6),
    ("", "empty filter", 0),
    ("year IN 1", "expected '(' after IN", 8),
    ("year = 1 lang = 2", "expected AND, OR or the end", 9),
    ("year ~ 1", "unexpected character '~'", 5),
    ("year NOT 1", "expected IN after NOT", 9),
    ("(" * 80 + "year = 1" + ")" * 80, "nested more than", 65),
])
def test_errors_point_at_the_token(text: str, message: str, caret: int) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(text, FIELDS)
    assert message in str(info.value)
    assert str(info.value).splitlines()[-1] == "  " + " " * caret + "^"


def test_python_api_errors(indexes) -> None:  # type: ignore[no-untyped-def]
    _, single, _ = indexes
    with pytest.raises(CascadeError, match="unknown filter field 'nope'"):
        single.allowed_docs(F("nope") == 1)
    with pytest.raises(CascadeError, match="combine filters with &"):
        (F("year") > 1) and (F("year") < 3)  # noqa: B015
    with pytest.raises(CascadeError, match="list of values"):
        F("lang").isin("en")
    with pytest.raises(CascadeError, match="a filter is a string or built with cascade.F"):
        single.allowed_docs(42)  # type: ignore[arg-type]
    with pytest.raises(CascadeError, match="filter fields of this index: none"):
        Index.build([Doc("a", "x")], single.path.parent / "plain").allowed_docs("year = 1")


def test_bad_declarations_and_values(tmp_path: Path) -> None:
    with pytest.raises(CascadeError, match="unknown type 'text'"):
        Index.build([Doc("a", "x")], tmp_path / "a", filter_fields={"f": "text"})
    with pytest.raises(CascadeError, match="must be a letter"):
        Index.build([Doc("a", "x")], tmp_path / "b", filter_fields={"bad name": "int"})
    with pytest.raises(CascadeError, match="document 'a', filter field 'year' \\(int\\): expected an integer"):
        Index.build([Doc("a", "x", meta={"year": "soon"})], tmp_path / "c", filter_fields={"year": "int"})
    with pytest.raises(CascadeError, match="document 'a', filter field 'tags' \\(keyword\\): expected a string"):
        Index.build([Doc("a", "x", meta={"tags": ["a"]})], tmp_path / "d", filter_fields={"tags": "keyword"})
    assert not (tmp_path / "c").exists()


# -- semantics against a Python oracle ----------------------------------------------------

_OPS = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
        ">=": operator.ge}


def _days(v: "str | dt.date") -> int:
    day = v if isinstance(v, dt.date) else dt.date.fromisoformat(v[:10])
    return (day - dt.date(1970, 1, 1)).days


def truth(e: Expr, meta: dict) -> bool | None:
    """SQL's three-valued logic: None is unknown (a comparison with a missing value)."""
    if isinstance(e, And):
        values = [truth(x, meta) for x in e.items]
        return False if False in values else None if None in values else True
    if isinstance(e, Or):
        values = [truth(x, meta) for x in e.items]
        return True if True in values else None if None in values else False
    if isinstance(e, Not):
        inner = truth(e.item, meta)
        return None if inner is None else not inner
    value = meta.get(e.field)  # type: ignore[attr-defined]
    if isinstance(e, Missing):
        return value is None
    if value is None:
        return None
    conv = _days if e.field == "day" else (lambda v: v)  # type: ignore[attr-defined]
    if isinstance(e, In):
        return conv(value) in {conv(v) for v in e.values}
    assert isinstance(e, Compare)
    return _OPS[e.op](conv(value), conv(e.value))


def oracle(e: Expr, meta: dict) -> bool:
    """A document matches when the filter is true (not false, not unknown)."""
    return truth(e, meta) is True


LEAVES = st.one_of(
    st.builds(Compare, st.just("year"), st.sampled_from(list(_OPS)), st.integers(1985, 2030)),
    st.builds(Compare, st.just("score"), st.sampled_from(list(_OPS)),
              st.one_of(st.integers(-1, 11), st.floats(-1, 11, allow_nan=False))),
    st.builds(Compare, st.just("lang"), st.sampled_from(list(_OPS)), st.sampled_from(LANGS + ["a", "e", "zz"])),
    st.builds(Compare, st.just("day"), st.sampled_from(list(_OPS)),
              st.dates(dt.date(2019, 6, 1), dt.date(2022, 6, 1)).map(dt.date.isoformat)),
    st.builds(In, st.just("lang"), st.lists(st.sampled_from(LANGS + ["xx"]), min_size=1, max_size=3).map(tuple)),
    st.builds(In, st.just("year"), st.lists(st.integers(1990, 2024), min_size=1, max_size=4).map(tuple)),
    st.builds(Missing, st.sampled_from(sorted(FIELDS))),
)
EXPRS = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
    st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
    inner.map(Not)), max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expr=EXPRS)
def test_filters_match_the_python_oracle(indexes, expr: Expr) -> None:  # type: ignore[no-untyped-def]
    docs, single, multi = indexes
    expected = sorted(d.id for d in docs if oracle(expr, d.meta))
    for idx in (single, multi):
        got = sorted(idx.doc_ids(idx.allowed_numbers(expr)))
        assert got == expected
        again = sorted(idx.doc_ids(idx.allowed_numbers(str(expr))))  # the printed filter parses back
        assert again == expected


# -- pre-filtered top-k ---------------------------------------------------------------------

def full_ranking(idx: Index, query: str) -> list[tuple[str, float]]:
    hits = BM25(idx).search(query, k=10_000)
    return [(h.id, h.score) for h in hits]


def check_filtered(idx: Index, query: str, expr: Expr, k: int, matching: set[str]) -> None:
    ranking = [(i, s) for i, s in full_ranking(idx, query) if i in matching]
    expected_n = min(k, len(ranking))
    bm25 = BM25(idx)
    one = [(h.id, h.score) for h in bm25.search(query, k=k, where=expr)]
    assert len(one) == expected_n and all(i in matching for i, _ in one)
    assert sorted(s for _, s in one) == sorted(s for _, s in ranking[:expected_n])
    for mode in ("ranges", "maxscore", "exhaustive"):
        run = bm25.search_batch([Query("q", query)], k=k, where=expr, mode=mode).to_run().get("q", {})
        assert len(run) == expected_n and set(run) <= matching, mode
        assert sorted(run.values()) == sorted(s for _, s in ranking[:expected_n]), mode
    stage = BM25(idx, k=k, where=expr)  # the filter as part of the retriever (pipelines)
    assert {h.id for h in stage.search(query, k=k)} == {i for i, _ in one}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expr=EXPRS, k=st.sampled_from([1, 3, 10, 50]), words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=4))
def test_filtered_top_k_is_full_and_clean(indexes, expr: Expr, k: int, words: list[str]) -> None:  # type: ignore[no-untyped-def]
    docs, single, multi = indexes
    matching = {d.id for d in docs if oracle(expr, d.meta)}
    for idx in (single, multi):
        check_filtered(idx, " ".join(words), expr, k, matching)


def test_selective_filters_still_fill_k(indexes) -> None:  # type: ignore[no-untyped-def]
    docs, single, multi = indexes
    for where in ("year = 2001", 'lang = "zh" AND year < 1995', 'day >= "2021-11-20"', "score < 0.3"):
        expr = parse_filter(where, FIELDS)
        matching = {d.id for d in docs if oracle(expr, d.meta)}
        assert 0 < len(matching) < 40  # selective: under 7% of the collection
        for idx in (single, multi):
            check_filtered(idx, "w0 w1 w2 w3 w4", expr, 10, matching)
            check_filtered(idx, "w0", expr, 1000, matching)


def test_retriever_filter_and_call_filter_combine(indexes) -> None:  # type: ignore[no-untyped-def]
    docs, single, _ = indexes
    bm25 = BM25(single, where="year >= 2010")
    hits = bm25.search("w1 w2", k=1000, where='lang = "en"')
    meta = {d.id: d.meta for d in docs}
    assert hits and all(meta[h.id]["year"] >= 2010 and meta[h.id]["lang"] == "en" for h in hits)
    assert str(bm25) == 'bm25(where="year >= 2010")' or "year >= 2010" in str(bm25)
    assert bm25.key() != BM25(single).key()


def test_allowed_docs_api(indexes) -> None:  # type: ignore[no-untyped-def]
    _, single, multi = indexes
    assert single.allowed_docs() == [None]
    masks = multi.allowed_docs()
    assert [m is None for m in masks] == [False, False, True]  # tombstones in the first two segments
    masks = multi.allowed_docs("year = 2001")
    assert all(m is not None and m.dtype == np.bool_ and len(m) == s.n_docs for m, s in zip(masks, multi.segments))
    nums = multi.allowed_numbers("year = 2001")
    assert np.all(np.diff(nums) > 0)
    assert all(d.meta["year"] == 2001 for d in multi.docs(nums))


# -- missing values: one rule (SQL's) for !=, NOT IN and NOT (...) ---------------------------

MISSING_DOCS = [Doc("y2000", "w", meta={"year": 2000, "lang": "en"}), Doc("y2001", "w", meta={"year": 2001}),
                Doc("none", "w", meta={"lang": "de"}), Doc("none2", "w")]


@pytest.fixture
def with_missing(tmp_path: Path) -> Index:
    return Index.build(MISSING_DOCS, tmp_path / "m", filter_fields={"year": "int", "lang": "keyword"})


@pytest.mark.parametrize("where, expected", [
    ("year != 2000", {"y2001"}),
    ("year NOT IN (2000)", {"y2001"}),
    ("NOT (year = 2000)", {"y2001"}),
    ("NOT year IN (2000)", {"y2001"}),
    ("NOT (year >= 2001)", {"y2000"}),
    ("year = 2000 OR year != 2000", {"y2000", "y2001"}),
    ("NOT (year = 2000 OR lang = \"en\")", set()),  # y2001: false OR unknown is unknown; NOT unknown too
    ("NOT (year = 2000 AND lang = \"de\")", {"y2000", "y2001"}),  # false AND unknown is false
    ("year IS NULL", {"none", "none2"}),
    ("year is not null", {"y2000", "y2001"}),
    ("year IS NULL OR year != 2000", {"none", "none2", "y2001"}),
    ("NOT (year IS NULL)", {"y2000", "y2001"}),
    ('lang != "en"', {"none"}),
    ('lang NOT IN ("en")', {"none"}),
    ('NOT lang = "en"', {"none"}),
])
def test_a_missing_value_makes_any_comparison_unknown(with_missing: Index, where: str, expected: set[str]) -> None:
    idx = with_missing
    assert set(idx.doc_ids(idx.allowed_numbers(where))) == expected
    expr = parse_filter(where, idx.filter_fields)
    assert set(idx.doc_ids(idx.allowed_numbers(str(expr)))) == expected  # printed form: same rule
    assert all(oracle(expr, d.meta) == (d.id in expected) for d in MISSING_DOCS)


def test_python_api_follows_the_same_rule(with_missing: Index) -> None:
    idx = with_missing
    ids = lambda e: set(idx.doc_ids(idx.allowed_numbers(e)))  # noqa: E731
    assert ids(F("year") != 2000) == ids(~F("year").isin([2000])) == ids(~(F("year") == 2000)) == {"y2001"}
    assert ids(F("year").missing()) == {"none", "none2"} and ids(~F("year").missing()) == {"y2000", "y2001"}
    assert str(~~(F("year") == 1)) == "year = 1"  # NOT NOT x is x
    assert str(F("year").missing()) == "year IS NULL"


@pytest.mark.parametrize("where", ["year != 2000", "year NOT IN (2000)", "NOT (year = 2000)"])
def test_delete_where_follows_the_missing_value_rule(tmp_path: Path, where: str) -> None:
    from typer.testing import CliRunner

    from cascade.cli import app

    idx = Index.build(MISSING_DOCS, tmp_path / "d", filter_fields={"year": "int", "lang": "keyword"})
    assert idx.delete(where=where) == 1
    assert sorted(d.id for d in idx.refresh()) == ["none", "none2", "y2000"]  # no year: not deleted
    other = Index.build(MISSING_DOCS, tmp_path / "cli", filter_fields={"year": "int", "lang": "keyword"})
    result = CliRunner().invoke(app, ["delete", str(other.path), "--where", where])
    assert result.exit_code == 0, result.output
    assert sorted(d.id for d in other.refresh()) == ["none", "none2", "y2000"]


# -- big and deep filters ------------------------------------------------------------------


def test_thousands_of_combined_conditions_stay_flat(indexes) -> None:  # type: ignore[no-untyped-def]
    docs, single, _ = indexes
    years = list(range(1990, 2025))
    both = F("year") != years[0]
    either = F("year") == years[0]
    for i in range(3000):
        both = both & (F("year") != years[i % len(years)])
        either = either | (F("year") == years[i % len(years)])
    assert isinstance(both, And) and len(both.items) == 3001 and both.depth == 2
    assert single.allowed_numbers(both).size == 0
    expected = {d.id for d in docs if d.meta.get("year") is not None}
    assert set(single.doc_ids(single.allowed_numbers(either))) == expected
    assert set(single.doc_ids(single.allowed_numbers(str(either)))) == expected


def test_deep_nesting_is_a_clear_error() -> None:
    expr = F("year") == 0
    with pytest.raises(CascadeError, match="filter nested more than 100 levels deep"):
        for i in range(500):  # AND inside OR inside AND ...: no flattening possible
            expr = (expr | (F("year") == i)) if i % 2 else (expr & (F("year") != i))
    with pytest.raises(FilterSyntaxError, match="nested more than"):
        parse_filter("(" * 500 + "year = 1" + ")" * 500)
    with pytest.raises(FilterSyntaxError, match="nested more than"):
        parse_filter("NOT " * 500 + "year = 1")


class _CountingText(str):
    """A string that counts the characters copied out of it by slicing."""

    copied = 0

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        out = super().__getitem__(key)
        _CountingText.copied += len(out)
        return out


def test_in_lists_parse_in_linear_time() -> None:
    """200,000 values: the tokenizer copies each character a bounded number of times (it used to
    slice the rest of the text at every token: 17 s, quadratic)."""
    from cascade.filters.parse import tokenize

    for n in (1000, 10_000):
        text = _CountingText("year IN (" + ", ".join(str(i) for i in range(n)) + ")  ")
        _CountingText.copied = 0
        assert len(tokenize(text)) == 2 * n + 3 + 1
        assert _CountingText.copied <= 2 * len(text)
    values = list(range(200_000))
    expr = parse_filter("year NOT IN (" + ", ".join(map(str, values)) + ")", {"year": "int"})
    assert isinstance(expr, Not) and expr.item.values == tuple(values)  # type: ignore[attr-defined]
    words = parse_filter("lang IN (" + ", ".join(f'"k{i}"' for i in range(200_000)) + ")", {"lang": "keyword"})
    assert len(words.values) == 200_000  # type: ignore[attr-defined]
