"""Query-biased snippets (cascade/text/highlight.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cascade.text.analyzer import Analyzer
from cascade.text.highlight import snippet

AN = Analyzer()


def test_the_window_holds_the_most_query_terms_and_marks_every_one() -> None:
    text = " ".join(["filler"] * 200 + ["diabetes insulin resistance causes diabetes"] + ["filler"] * 200)
    s = snippet(text, "what causes diabetes", AN, width=120)
    assert s.text.startswith("…") and s.text.endswith("…") and len(s.text) < 200
    assert [s.text[a:b] for a, b in s.marks] == ["diabetes", "causes", "diabetes"]


def test_stems_folding_and_stopwords() -> None:
    s = snippet("Running runners ran; the RUN. Café cafe CAFÉS", "run the cafés", AN)
    assert [s.text[a:b] for a, b in s.marks] == ["Running", "RUN", "Café", "cafe", "CAFÉS"]
    assert snippet("no match here at all", "zebra", AN).marks == []
    assert snippet("", "zebra", AN).text == ""


def test_markup_stays_plain_text() -> None:
    s = snippet('<img src=x onerror="alert(1)"> solar', "solar", AN)
    assert s.text == '<img src=x onerror="alert(1)"> solar' and s.marks == [(31, 36)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["solar", "wind", "power", "the", "Ünïcode", "x", "solar's", "42"]), max_size=120),
       st.sampled_from(["solar", "wind power", "unicode", "the"]))
def test_every_mark_is_a_word_whose_term_the_query_has(words: list[str], query: str) -> None:
    s = snippet(" ".join(words), query, AN, width=80)
    wanted = set(AN.terms(query))
    for a, b in s.marks:
        assert set(AN.terms(s.text[a:b])) & wanted
    assert len(s.text) <= 80 + 2 + max((len(w) for w in words), default=0) * 2 + 2
