"""Dynamic pruning is rank-safe: every query-processing path returns exactly the exhaustive top-k."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cascade
from cascade.index.index import Index
from cascade.index.manifest import Manifest
from cascade.index.segment import SegmentWriter
from cascade.retrieve.bm25 import BM25

SYNTHETIC = Path(__file__).resolve().parents[1] / "bench" / "synthetic.py"


def load_synthetic():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_synthetic", SYNTHETIC)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def assert_same(a: cascade.Candidates, b: cascade.Candidates) -> None:
    assert a.offsets.tolist() == b.offsets.tolist()
    assert np.array_equal(a.doc, b.doc)
    assert np.array_equal(a.score, b.score)  # bit for bit


def check_all_paths(bm25: cascade.BM25, queries: list[cascade.Query], k: int) -> None:
    exhaustive = bm25.search_batch(queries, k=k, exhaustive=True)
    assert exhaustive.offsets[-1] > 0
    for mode in ("ranges", "maxscore"):
        assert_same(bm25.search_batch(queries, k=k, mode=mode), exhaustive)
        for i, q in enumerate(queries[:50]):  # one query at a time, as a single search answers
            _, docs, scores = bm25.rank([q.text], k, mode=mode)
            lo, hi = exhaustive.offsets[i], exhaustive.offsets[i + 1]
            assert np.array_equal(docs, exhaustive.doc[lo:hi]) and np.array_equal(scores, exhaustive.score[lo:hi])
    assert_same(bm25.search_batch(queries, k=k, threads=2), exhaustive)
    numpy_engine = BM25(bm25.index, k1=bm25.k1, b=bm25.b, engine="numpy")  # a process with no kernels compiled
    assert_same(numpy_engine.search_batch(queries, k=k), exhaustive)


@pytest.mark.parametrize("name", ["scifact", "nfcorpus-preprocessed"])
def test_identical_top1000_on_real_collections(datasets_dir: Path, tmp_path: Path, name: str) -> None:
    ds = cascade.BeirDataset(datasets_dir / name)
    index = Index.build(ds.corpus(), tmp_path / "i")
    queries = ds.queries()
    for k in (10, 1000):
        check_all_paths(BM25(index), queries, k)
    check_all_paths(BM25(index, k1=1.2, b=0.75), queries, 100)  # impacts computed at open, not stored


@pytest.fixture(scope="module")
def synthetic_index(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    synthetic = load_synthetic()
    docs, queries = synthetic.generate(70_000, n_queries=200, seed=3)  # three document ranges of 32768
    index = Index.build((cascade.Doc(i, t) for i, t in docs), tmp_path_factory.mktemp("syn") / "i",
                        analyzer=cascade.Analyzer(stopwords=None, stemmer=None))
    return index, [cascade.Query(q, t) for q, t in queries]


def test_identical_top_k_on_200_random_synthetic_queries(synthetic_index) -> None:  # type: ignore[no-untyped-def]
    index, queries = synthetic_index
    for k in (1, 10, 1000):
        check_all_paths(BM25(index), queries, k)


def test_ties_broken_by_doc_number_in_every_path(tmp_path: Path) -> None:
    docs = [cascade.Doc(f"d{i}", "same words here") for i in range(50)] + [cascade.Doc("x", "other")]
    bm25 = BM25(Index.build(docs, tmp_path / "i"))
    queries = [cascade.Query("q", "same words")]
    exhaustive = bm25.search_batch(queries, k=7, exhaustive=True)
    assert exhaustive.doc.tolist() == list(range(7))
    check_all_paths(bm25, queries, 7)


def test_multi_segment_index_matches_single_segment(tmp_path: Path, synthetic_index) -> None:  # type: ignore[no-untyped-def]
    index, queries = synthetic_index
    docs = list(index.segments[0].docstore)[:20_000]
    analyzer = cascade.Analyzer(stopwords=None, stemmer=None)
    path = tmp_path / "multi"
    path.mkdir()
    entries = []
    for n, part in enumerate((docs[:7_000], docs[7_000:])):
        writer = SegmentWriter(path / f"seg-{n + 1:06d}", analyzer, ["title", "text"])
        for doc in part:
            writer.add(doc)
        entries.append(writer.finish(f"seg-{n + 1:06d}"))
    Manifest(analyzer=analyzer.to_dict(), fields=["title", "text"], segments=entries).write(path)
    multi = BM25(Index.open(path))
    single = BM25(Index.build(docs, tmp_path / "single", analyzer=analyzer))
    for k in (10, 1000):
        a = multi.search_batch(queries, k=k)
        b = single.search_batch(queries, k=k)
        assert a.offsets.tolist() == b.offsets.tolist() and np.array_equal(a.doc, b.doc)
        np.testing.assert_allclose(a.score, b.score, rtol=1e-6)  # impacts per segment: same maths, other rounding
        assert_same(a, multi.search_batch(queries, k=k, exhaustive=True))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([1, 3, 10]), st.booleans())
def test_dense_accumulator_path_with_ties_and_filters(tmp_path_factory: pytest.TempPathFactory, seed: int, k: int,
                                                     filtered: bool) -> None:
    """Queries whose postings cover a large share of a small segment take the dense-accumulator
    path (retrieve/taat_dense.py): its chunk bound must keep ties and respect filters."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(12)]
    texts = [" ".join(rng.choices(words, k=rng.randint(1, 6))) for _ in range(120)]
    docs = [cascade.Doc(f"d{i}", texts[i % len(texts)], meta={"g": i % 7}) for i in range(1500)]  # many exact ties
    index = Index.build(docs, tmp_path_factory.mktemp("dense") / "i", filter_fields={"g": "int"},
                        analyzer=cascade.Analyzer(stopwords=None, stemmer=None))
    queries = [cascade.Query(f"q{i}", " ".join(rng.choices(words, k=rng.randint(1, 4)))) for i in range(20)]
    bm25 = BM25(index)
    where = "g IN (2, 5)" if filtered else None
    exhaustive = bm25.search_batch(queries, k=k, exhaustive=True, where=where)
    assert_same(bm25.search_batch(queries, k=k, where=where), exhaustive)
    assert_same(bm25.search_batch(queries, k=k, threads=2, where=where), exhaustive)


def test_dense_accumulator_path_with_a_negative_query_weight(tmp_path: Path) -> None:
    """The dense path compares chunk maxima as float64 bit patterns; a negative weight makes
    negative sums, which must still rank (and drop at <= 0) as on the exhaustive path."""
    rng = random.Random(7)
    words = [f"w{i}" for i in range(6)]
    docs = [cascade.Doc(f"d{i}", " ".join(rng.choices(words, k=rng.randint(1, 5)))) for i in range(1500)]
    bm25 = BM25(Index.build(docs, tmp_path / "i", analyzer=cascade.Analyzer(stopwords=None, stemmer=None)))
    queries = [{"w0": 1.0, "w1": -0.7}, {"w2": -1.0, "w3": 0.2, "w4": 0.3}, {"w5": -1.0}]
    for k in (1, 10):
        expected = bm25.rank_weighted(queries, k, mode="exhaustive")
        numpy_engine = BM25(bm25.index, engine="numpy")
        for got in (bm25.rank_weighted(queries, k), bm25.rank_weighted(queries, k, threads=2),
                    numpy_engine.rank_weighted(queries, k)):
            assert [a.tolist() for a in got] == [a.tolist() for a in expected]


def test_serial_and_parallel_kernels_keep_separate_compiled_code() -> None:
    """numba's disk cache keys an entry by function and signature, not by the parallel flag: if
    the two builds of a driver shared an entry, the parallel one would load the serial code
    and run every batch on one thread (results unchanged, so only this test would notice)."""
    from cascade.retrieve import maxscore

    for serial, parallel in maxscore.KERNELS.values():
        assert parallel.targetoptions.get("parallel") and not serial.targetoptions.get("parallel")
        index_names = [getattr(getattr(getattr(d, "_cache", None), "_cache_file", None), "_index_path", None)
                       for d in (serial, parallel)]
        if None in index_names:
            pytest.skip("numba's cache internals moved")
        assert index_names[0] != index_names[1]
