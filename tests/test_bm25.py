"""BM25 against hand-computed Lucene scores; ranking, ties, batches and segments."""

from __future__ import annotations

from math import log
from pathlib import Path

import numpy as np
import pytest

from cascade.core.candidates import SAMPLED, Candidates
from cascade.core.errors import CascadeError
from cascade.core.types import Doc, Hit, Query
from cascade.index.index import Index
from cascade.index.manifest import Manifest
from cascade.index.segment import SegmentWriter
from cascade.retrieve.bm25 import BM25
from cascade.text.analyzer import Analyzer

RAW = Analyzer(stopwords=None, stemmer=None)

# Term statistics of this corpus, worked out by hand:
#   N = 4, dl = 3, 2, 5, 2, total length 12, avgdl = 3.0
#   df: apple 2, banana 2, cherry 2, durian 1, elderberry 1, fig 1
DOCS = [
    Doc("d0", "apple banana apple"),
    Doc("d1", "banana cherry"),
    Doc("d2", "apple cherry cherry cherry durian"),
    Doc("d3", "elderberry fig", title="", meta={"x": 1}),
]


def idf(N: float, df: float) -> float:
    """Lucene: ln(1 + (N - df + 0.5) / (df + 0.5))."""
    return log(1 + (N - df + 0.5) / (df + 0.5))


def tf_part(tf: float, dl: float, avgdl: float, k1: float, b: float) -> float:
    """tf / (tf + k1 * (1 - b + b * dl / avgdl))."""
    return tf / (tf + k1 * (1 - b + b * dl / avgdl))


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    return Index.build(DOCS, tmp_path_factory.mktemp("bm25") / "hand.idx", analyzer=RAW)


def scores(bm25: BM25, query: str) -> dict[str, float]:
    return {h.id: h.score for h in bm25.search(query, k=10)}


def test_index_statistics_match_the_hand_count(index: Index) -> None:
    assert index.n_docs == 4
    assert index.avg_doc_length == 3.0
    assert [index.df(t) for t in ("apple", "banana", "cherry", "durian", "fig", "zebra")] == [2, 2, 2, 1, 1, 0]


def test_single_term_default_parameters(index: Index) -> None:
    bm25 = BM25(index)  # k1 = 0.9, b = 0.4
    got = scores(bm25, "apple")
    expected = {
        "d0": 1 * idf(4, 2) * tf_part(2, 3, 3.0, 0.9, 0.4),
        "d2": 1 * idf(4, 2) * tf_part(1, 5, 3.0, 0.9, 0.4),
    }
    assert list(got) == ["d0", "d2"]
    for doc_id, value in expected.items():
        assert got[doc_id] == pytest.approx(value, abs=1e-5)
    # the same numbers, fully spelled out: ln(2) * 2 / 2.9 and ln(2) / 2.14
    assert got["d0"] == pytest.approx(log(2) * 2 / 2.9, abs=1e-5)
    assert got["d2"] == pytest.approx(log(2) / 2.14, abs=1e-5)


def test_multi_term_query_sums_terms(index: Index) -> None:
    got = scores(BM25(index), "cherry durian")
    expected = {
        "d2": idf(4, 2) * tf_part(3, 5, 3.0, 0.9, 0.4) + idf(4, 1) * tf_part(1, 5, 3.0, 0.9, 0.4),
        "d1": idf(4, 2) * tf_part(1, 2, 3.0, 0.9, 0.4),
    }
    assert list(got) == ["d2", "d1"]
    assert got == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("k1,b", [(1.2, 0.75), (2.0, 1.0), (0.5, 0.0), (0.0, 0.5)])
def test_non_default_parameters(index: Index, k1: float, b: float) -> None:
    got = scores(BM25(index, k1=k1, b=b), "banana cherry fig")
    expected = {
        "d0": idf(4, 2) * tf_part(1, 3, 3.0, k1, b),
        "d1": idf(4, 2) * tf_part(1, 2, 3.0, k1, b) + idf(4, 2) * tf_part(1, 2, 3.0, k1, b),
        "d2": idf(4, 2) * tf_part(3, 5, 3.0, k1, b),
        "d3": idf(4, 1) * tf_part(1, 2, 3.0, k1, b),
    }
    assert got == pytest.approx(expected, abs=1e-5)
    assert list(got) == sorted(expected, key=lambda d: (-expected[d], d))


def test_k1_zero_ignores_term_frequency(index: Index) -> None:
    got = scores(BM25(index, k1=0.0, b=0.4), "cherry")
    assert got == pytest.approx({"d1": idf(4, 2), "d2": idf(4, 2)}, abs=1e-5)
    assert list(got) == ["d1", "d2"]  # tie broken by doc number


def test_parameters_change_the_scores(index: Index) -> None:
    assert scores(BM25(index, k1=1.2, b=0.75), "apple") != pytest.approx(scores(BM25(index), "apple"))


def test_repeated_query_terms_count(index: Index) -> None:
    bm25 = BM25(index)
    got = scores(bm25, "apple apple banana")
    expected = {
        "d0": 2 * idf(4, 2) * tf_part(2, 3, 3.0, 0.9, 0.4) + 1 * idf(4, 2) * tf_part(1, 3, 3.0, 0.9, 0.4),
        "d1": 1 * idf(4, 2) * tf_part(1, 2, 3.0, 0.9, 0.4),
        "d2": 2 * idf(4, 2) * tf_part(1, 5, 3.0, 0.9, 0.4),
    }
    assert got == pytest.approx(expected, abs=1e-5)
    once = scores(bm25, "apple banana")
    assert got["d2"] == pytest.approx(2 * once["d2"], abs=1e-5)
    assert bm25.query_weights("apple apple banana") == pytest.approx({"apple": 2 * idf(4, 2), "banana": idf(4, 2)})


def test_query_weights_drop_oov_terms(index: Index) -> None:
    assert BM25(index).query_weights("zebra durian") == pytest.approx({"durian": idf(4, 1)})


def test_top_k_ordering_and_cut(index: Index) -> None:
    bm25 = BM25(index)
    hits = bm25.search("apple banana cherry durian fig", k=10)
    assert len(hits) == 4
    values = [h.score for h in hits]
    assert values == sorted(values, reverse=True)
    assert [h.id for h in bm25.search("cherry", k=1)] == ["d2"]
    assert [h.id for h in bm25.search("apple banana cherry durian fig", k=2)] == [h.id for h in hits[:2]]


def test_hits_carry_stored_fields(index: Index) -> None:
    [hit] = BM25(index).search("fig", k=1)
    assert isinstance(hit, Hit)
    assert (hit.id, hit.title, hit.text, hit.rank) == ("d3", "", "elderberry fig", 1)
    assert isinstance(hit.score, float)


def test_ties_broken_by_doc_number(tmp_path: Path) -> None:
    # identical documents inserted as c, a, b: ties go to the lower doc number, not the lower id
    docs = [Doc("low", "omega filler filler filler filler filler"), Doc("c", "omega x1"),
            Doc("a", "omega x1"), Doc("b", "omega x1")]
    idx = Index.build(docs, tmp_path / "ties", analyzer=RAW)
    hits = BM25(idx).search("omega", k=10)
    assert [h.id for h in hits] == ["c", "a", "b", "low"]
    assert hits[0].score == hits[1].score == hits[2].score > hits[3].score
    assert [h.id for h in BM25(idx).search("omega", k=2)] == ["c", "a"]


def test_oov_query_gives_no_hits(index: Index) -> None:
    bm25 = BM25(index)
    assert bm25.search("zebra") == []
    assert bm25.search("") == []
    assert bm25.search("a b c") == []  # single characters are not tokens
    offsets, nums, vals = bm25.rank(["zebra"], 5)
    assert offsets.tolist() == [0, 0] and len(nums) == 0 and len(vals) == 0


@pytest.mark.parametrize("kwargs", [dict(k1=-0.1), dict(b=1.5), dict(b=-0.1), dict(k=0), dict(k=-3)])
def test_invalid_parameters(index: Index, kwargs: dict) -> None:
    with pytest.raises(CascadeError):
        BM25(index, **kwargs)
    with pytest.raises(CascadeError):
        BM25(index, **kwargs)


@pytest.mark.parametrize("k", [0, -1])
def test_invalid_k_per_call(index: Index, k: int) -> None:
    with pytest.raises(CascadeError, match="k must be at least 1"):
        BM25(index).search("apple", k=k)
    with pytest.raises(CascadeError, match="k must be at least 1"):
        BM25(index).search_batch([Query("q", "apple")], k=k)


def test_search_batch_shape_and_to_run(index: Index) -> None:
    bm25 = BM25(index)
    queries = [Query("q1", "apple"), Query("q2", "zebra"), Query("q3", "banana cherry fig")]
    cands = bm25.search_batch(queries)
    assert isinstance(cands, Candidates)
    assert len(cands) == 3
    assert cands.query_ids == ["q1", "q2", "q3"]
    assert cands.offsets.tolist() == [0, 2, 2, 6]
    assert cands.doc.dtype == np.int32 and cands.score.dtype == np.float32
    assert cands.doc[:2].tolist() == [0, 2]
    assert "bm25" in cands.seconds and cands.seconds["bm25"] >= 0
    run = cands.to_run()
    assert list(run) == ["q1", "q2", "q3"]
    assert run["q2"] == {}
    assert run["q1"] == pytest.approx(scores(bm25, "apple"), abs=1e-6)
    assert run["q3"] == pytest.approx(scores(bm25, "banana cherry fig"), abs=1e-6)
    per_query = list(cands.per_query())
    assert [q for q, _, _ in per_query] == ["q1", "q2", "q3"]
    assert [len(d) for _, d, _ in per_query] == [2, 0, 4]
    # k from the call, else from the retriever
    assert BM25(index, k=1).search_batch(queries).offsets.tolist() == [0, 1, 1, 2]
    assert bm25.search_batch(queries, k=1).offsets.tolist() == [0, 1, 1, 2]
    done: list[int] = []
    bm25.search_batch(queries, progress=done.append)
    assert done == [3]  # one compiled call answers the batch
    # a BM25 is a first stage: calling it is search_batch, with per-query latencies from a sample
    staged = bm25(queries)
    assert staged.to_run() == run
    assert staged.timing == SAMPLED and len(staged.latency_sample) == 3 and staged.query_seconds.shape == (3,)


def test_empty_batch(index: Index) -> None:
    cands = BM25(index).search_batch([])
    assert len(cands) == 0 and cands.offsets.tolist() == [0] and cands.to_run() == {}


def test_candidates_validate_lengths(index: Index) -> None:
    with pytest.raises(ValueError):
        Candidates(["q"], np.array([0]), np.empty(0, np.int32), np.empty(0, np.float32), index)
    with pytest.raises(ValueError):
        Candidates(["q"], np.array([0, 2]), np.array([0], np.int32), np.array([1.0], np.float32), index)


def test_key_names_settings_and_index_version(index: Index) -> None:
    assert BM25(index).key() == BM25(index).key()
    assert BM25(index, k1=1.2).key() != BM25(index).key()
    assert index.version in str(BM25(index).key())


# -- multi-segment ------------------------------------------------------------------------


def build_two_segments(path: Path, first: list[Doc], second: list[Doc]) -> Index:
    path.mkdir()
    entries = []
    for name, docs in (("seg-000001", first), ("seg-000002", second)):
        writer = SegmentWriter(path / name, RAW, ["title", "text"])
        for doc in docs:
            writer.add(doc)
        entries.append(writer.finish(name))
    Manifest(analyzer=RAW.to_dict(), fields=["title", "text"], segments=entries).write(path)
    return Index.open(path)


QUERIES = ["apple", "banana", "cherry durian", "apple apple banana", "banana cherry fig", "elderberry",
           "apple banana cherry durian elderberry fig", "zebra"]


def test_two_segments_score_like_one(index: Index, tmp_path: Path) -> None:
    multi = build_two_segments(tmp_path / "multi.idx", DOCS[:2], DOCS[2:])
    assert len(multi.segments) == 2
    assert multi.n_docs == 4 and multi.avg_doc_length == 3.0
    assert multi.df("apple") == 2 and multi.df("cherry") == 2
    for k1, b in [(0.9, 0.4), (1.2, 0.75)]:
        one, two = BM25(index, k1=k1, b=b), BM25(multi, k1=k1, b=b)
        for q in QUERIES:
            h1, h2 = one.search(q, k=10), two.search(q, k=10)
            assert [h.id for h in h2] == [h.id for h in h1], q
            assert [h.rank for h in h2] == [h.rank for h in h1], q
            assert [h.score for h in h2] == pytest.approx([h.score for h in h1], abs=1e-6), q
    # and against the hand computation, which uses global N and avgdl
    got = scores(BM25(multi), "cherry durian")
    assert got == pytest.approx({
        "d2": idf(4, 2) * tf_part(3, 5, 3.0, 0.9, 0.4) + idf(4, 1) * tf_part(1, 5, 3.0, 0.9, 0.4),
        "d1": idf(4, 2) * tf_part(1, 2, 3.0, 0.9, 0.4)}, abs=1e-5)
    queries = [Query(str(i), q) for i, q in enumerate(QUERIES)]
    run_multi, run_one = BM25(multi).search_batch(queries).to_run(), BM25(index).search_batch(queries).to_run()
    assert list(run_multi) == list(run_one)
    for qid in run_one:
        assert run_multi[qid] == pytest.approx(run_one[qid], abs=1e-6)


def test_two_segments_documents_and_ids(tmp_path: Path) -> None:
    multi = build_two_segments(tmp_path / "multi.idx", DOCS[:2], DOCS[2:])
    assert multi.doc_ids([0, 1, 2, 3]) == ["d0", "d1", "d2", "d3"]
    assert multi.doc_ids([3, 0, 2]) == ["d3", "d0", "d2"]
    assert multi.docs([3, 1, 2, 0]) == [DOCS[3], DOCS[1], DOCS[2], DOCS[0]]
    assert [multi.doc_number(d.id) for d in DOCS] == [0, 1, 2, 3]
    assert multi.get("d3") == DOCS[3]
    assert multi.verify() == []
    with pytest.raises(CascadeError):
        multi.doc_ids([4])


def test_two_segments_ties_and_cut(tmp_path: Path) -> None:
    same = [Doc(f"t{i}", "omega x1") for i in range(6)]
    multi = build_two_segments(tmp_path / "ties.idx", [Doc("pad", "padding words here")] + same[:3], same[3:])
    single = Index.build([Doc("pad", "padding words here")] + same, tmp_path / "one.idx", analyzer=RAW)
    for k in (1, 2, 3, 4, 5, 6, 10):
        expect = [f"t{i}" for i in range(min(k, 6))]
        assert [h.id for h in BM25(multi).search("omega", k=k)] == expect
        assert [h.id for h in BM25(single).search("omega", k=k)] == expect


def test_count_terms_keeps_first_seen_order_and_drops_missing_tokens() -> None:
    from cascade.kernels.query_terms import count_terms
    from cascade.text.marks import NO_TERM as N
    from cascade.text.marks import QUERY_END as E

    # the second query is empty, the third all missing, the fifth empty and last
    numbers = np.array([5, N, 3, 5, 5, E, E, N, N, E, 7, 3, 7, E], dtype=np.int64)
    offsets, terms, counts = count_terms(numbers, 5)
    assert offsets.tolist() == [0, 2, 2, 2, 4, 4]
    assert terms.tolist() == [5, 3, 7, 3]
    assert counts.tolist() == [3.0, 1.0, 2.0, 1.0]
    assert [a.tolist() for a in count_terms(np.empty(0, np.int64), 2)] == [[0, 0, 0], [], []]
    assert [a.tolist() for a in count_terms(np.empty(0, np.int64), 0)] == [[0], [], []]


def test_batch_and_single_query_paths_weigh_repeated_and_unicode_terms_alike(tmp_path: Path) -> None:
    docs = [Doc("a", "café crème café"), Doc("b", "plain plain text"), Doc("c", "x y z")]
    index = Index.build(docs, tmp_path / "i")
    bm25, single = BM25(index, engine="kernels"), BM25(index, engine="numpy")
    unicode = [Query("1", "café café plain"), Query("2", "PLAIN, plain; a b"), Query("3", "")]
    ascii_only = [Query("1", ""), Query("2", "PLAIN, plain; a b"), Query("3", "text\x01plain z"), Query("4", "")]
    mixed = [Query("1", "café plain"), Query("2", "plain a"), Query("3", "ünïcode"), Query("4", "crème text"),
             Query("5", "text")]
    for queries in (unicode, ascii_only, ascii_only[:1], ascii_only[1:3], mixed, mixed[1:], mixed[:1]):
        batch = bm25.search_batch(queries, k=3)
        for i, q in enumerate(queries):
            _, nums, scores = single.rank([q.text], 3)
            lo, hi = batch.offsets[i], batch.offsets[i + 1]
            assert batch.doc[lo:hi].tolist() == nums.tolist() and batch.score[lo:hi].tolist() == scores.tolist()


def test_one_character_tokens_of_a_custom_pattern_count_in_the_batch_path(tmp_path: Path) -> None:
    analyzer = Analyzer(token_pattern=r"\w+", stopwords=None, stemmer=None)
    index = Index.build([Doc("a", "x marks the spot"), Doc("b", "y z spot")], tmp_path / "i", analyzer=analyzer)
    batch = BM25(index, engine="kernels").search_batch([Query("q", "x spot")], k=5)
    _, nums, scores = BM25(index, engine="numpy").rank(["x spot"], 5)
    assert batch.doc.tolist() == nums.tolist() == [0, 1]
    assert batch.score.tolist() == scores.tolist()


@pytest.mark.parametrize("analyzer", [Analyzer(), Analyzer(cjk="bigrams", symbol_suffixes=True),
                                      Analyzer(fold_accents=False, symbol_suffixes=True, stopwords=None)])
def test_batch_and_single_query_paths_agree_under_every_analysis_option(tmp_path: Path, analyzer: Analyzer) -> None:
    docs = [Doc("a", "Café crème in Zürich, C++ and C#"), Doc("b", "cafe plain text c"), Doc("c", "東京都の地図"),
            Doc("d", "notepad++ a+b #tag issue#12")]
    index = Index.build(docs, tmp_path / "i", analyzer=analyzer)
    batch_engine, single = BM25(index, engine="kernels"), BM25(index, engine="numpy")
    queries = [Query("1", "cafe zurich"), Query("2", "Café c++"), Query("3", "東京 plain"), Query("4", "c# a+b"),
               Query("5", ""), Query("6", "NOTEPAD++ tag"), Query("7", "crème"), Query("8", "text text c")]
    for qs in (queries, queries[1:], queries[3:5], queries[:1]):
        batch = batch_engine.search_batch(qs, k=4)
        for i, q in enumerate(qs):
            _, nums, scores = single.rank([q.text], 4)
            lo, hi = batch.offsets[i], batch.offsets[i + 1]
            assert batch.doc[lo:hi].tolist() == nums.tolist() and batch.score[lo:hi].tolist() == scores.tolist()
