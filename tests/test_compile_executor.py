"""Compiling pipelines, running them through an Executor, the on-disk stage cache, and RM3."""

from __future__ import annotations

import multiprocessing as mp
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cascade
from cascade.core.candidates import Candidates, IdTable, query_set_hash, sort_within_queries
from cascade.core.executor import Executor
from cascade.core.nodes import Fuse, Pipeline, Then
from cascade.core.types import Query
from cascade.data.beir import BeirDataset
from cascade.evaluation.metrics import evaluate
from cascade.fuse import combmnz, combsum, linear, rrf
from cascade.pipeline.cache import StageCache
from cascade.pipeline.function import stage
from cascade.pipeline.parse import parse
from cascade.retrieve.bm25 import BM25
from cascade.retrieve.rm3 import RM3

FUSIONS = {m.METHOD.name: m.METHOD for m in (rrf, combsum, combmnz, linear)}

# -- a tiny index with more matching documents than the cutoffs below ---------------------------

WORDS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "olive", "peach", "plum", "melon"]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> cascade.Index:
    rng = np.random.default_rng(7)
    docs = [cascade.Doc(f"d{i:03d}", " ".join(rng.choice(WORDS, size=int(rng.integers(3, 15)))))
            for i in range(300)]
    return cascade.Index.build(docs, tmp_path_factory.mktemp("ce") / "tiny.idx")


QUERIES = [Query("q1", "apple banana"), Query("q2", "cherry"), Query("q3", "lemon mango olive"),
           Query("q4", "nothing matches")]


def same(a: Candidates, b: Candidates) -> None:
    assert a.query_ids == b.query_ids
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.space.doc_ids(a.doc), b.space.doc_ids(b.doc))
    np.testing.assert_array_equal(a.score, b.score)


# -- deterministic function stages ------------------------------------------------------------

SPACE = IdTable([f"x{i}" for i in range(60)])


def _h(*parts: object) -> int:
    return zlib.crc32(repr(parts).encode())


def _retrieve(queries, candidates, seed=0, n=30):  # noqa: ANN001, ANN201
    """A first stage: ignores its input; n pseudo-random documents per query."""
    qidx, docs, scores = [], [], []
    for i, q in enumerate(queries):
        picked = sorted({_h(seed, q.id, j) % 60 for j in range(n)})
        qidx += [i] * len(picked)
        docs += picked
        scores += [(_h(seed, q.id, d) % 1000) / 10 for d in picked]  # ties on purpose
    return sort_within_queries([q.id for q in queries], np.array(qidx, np.int64), np.array(docs, np.int64),
                               np.array(scores), SPACE)


def _rerank(queries, candidates, seed=1):  # noqa: ANN001, ANN201
    """A reranker: new scores for exactly the candidates it is given."""
    if candidates is None:
        return _retrieve(queries, None, seed=seed, n=5)
    docs = [int(d) for d in candidates.doc]
    scores = [(_h(seed, q, d) % 97) / 7 for q, d in zip(candidates.query_index().tolist(), docs)]
    return sort_within_queries(candidates.query_ids, candidates.query_index(), np.array(docs, np.int64),
                               np.array(scores), candidates.space)


ra = stage(_retrieve, name="ce_ra")
rb = stage(_retrieve, name="ce_rb").with_params(seed=5, n=50)
rr = stage(_rerank, name="ce_rr")
FQ = [Query(f"f{i}", "") for i in range(5)]


# -- compile ----------------------------------------------------------------------------------


def test_cutoff_pushed_into_bm25(index: cascade.Index, monkeypatch: pytest.MonkeyPatch) -> None:
    p = parse("bm25 % 100", index=index)
    c = p.compile()
    assert isinstance(c, BM25) and c.k == 100 and str(c) == "bm25(k=100)"
    asked: list[int] = []
    rank = BM25.rank

    def spy(self: BM25, texts: list, k: int, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        asked.extend([k] * len(texts))
        return rank(self, texts, k, *args, **kwargs)

    monkeypatch.setattr(BM25, "rank", spy)
    ex = Executor()
    out = ex.run(c, QUERIES)
    assert asked == [100] * len(QUERIES)  # the search itself is asked for 100, not 1000 then cut
    lengths = np.diff(out.offsets)
    assert np.all(lengths <= 100) and lengths.max() == 100  # more than 100 documents match q1
    assert list(ex.calls) == [(None, c.key())]
    # the same as top 1000 cut to 100
    asked.clear()
    uncut = Executor().run(p, QUERIES)  # not compiled: Cutoff over bm25 (k=1000)
    assert asked == [1000] * len(QUERIES)
    same(out, uncut)


def test_compile_rules(index: cascade.Index) -> None:
    def c(text: str) -> str:
        return str(parse(text, index=index).compile())

    assert c("bm25 % 100") == "bm25(k=100)"
    assert c("bm25(k=50) % 100") == "bm25(k=50)"  # a cutoff never deepens a retriever
    assert c("bm25 % 30 % 10") == "bm25(k=10)"
    assert c("bm25 % 10 % 30") == "bm25(k=10)"
    assert c("(ce_ra % 20) % 10") == "ce_ra % 10"  # nested cutoffs: the minimum
    assert c("(ce_ra % 5) % 10") == "ce_ra % 5"
    assert c("(ce_ra >> ce_rr) % 10") == "ce_ra >> ce_rr % 10"  # into the last step
    assert c("(ce_ra >> bm25) % 10") == "ce_ra >> bm25(k=10)"
    assert c("((ce_ra >> ce_rr) % 20) % 10") == "ce_ra >> ce_rr % 10"
    assert c("(2 * ce_ra) % 10") == "2.0 * (ce_ra % 10)"
    assert c("(2 * bm25) % 10") == "2.0 * bm25(k=10)"
    assert c("(-1 * ce_ra) % 10") == "-1.0 * ce_ra % 10"  # a negative weight reverses the order: kept
    assert c("(ce_ra | ce_rb) % 10") == "(ce_ra | ce_rb) % 10"  # not through union or fusion
    assert c("rrf(bm25, ce_ra) % 10") == "rrf(bm25, ce_ra) % 10"
    assert c("rrf(bm25 % 100, ce_ra)") == "rrf(bm25(k=100), ce_ra)"  # inside fusion inputs
    assert c("bm25 >> rm3(fb_docs=5)") == "bm25(k=5) >> rm3(fb_docs=5)"
    assert c("bm25_rm3") == "bm25(k=10) >> rm3"  # fb_docs defaults to 10
    assert c("ce_ra >> rm3(fb_docs=5)") == "ce_ra % 5 >> rm3(fb_docs=5)"
    assert c("(bm25 >> rm3(fb_docs=5)) % 20") == "bm25(k=5) >> rm3(fb_docs=5, k=20)"
    p = parse("bm25 >> rm3(fb_docs=5)", index=index).compile()
    assert isinstance(p, Then) and p.steps[0].k == 5 and isinstance(p.steps[1], RM3)


def test_compiled_rm3_gives_the_same_results(index: cascade.Index) -> None:
    p = parse("(bm25 >> rm3(fb_docs=5, fb_terms=3, max_df=1.0)) % 20", index=index)
    same(Executor().run(p, QUERIES), Executor().run(p.compile(), QUERIES))


_leaf = st.sampled_from([ra, rb, rr, ra.with_params(seed=3)])


def _grow(children: st.SearchStrategy[Pipeline]) -> st.SearchStrategy[Pipeline]:
    two = st.tuples(children, children)
    return st.one_of(
        st.tuples(children, st.integers(1, 40)).map(lambda x: x[0] % x[1]),
        two.map(lambda x: x[0] >> x[1]),
        st.tuples(st.sampled_from([0.5, 2.0, -1.0]), children).map(lambda x: x[0] * x[1]),
        two.map(lambda x: x[0] | x[1]),
        two.map(lambda x: x[0] + x[1]),
        st.tuples(st.sampled_from(["rrf", "combsum", "combmnz", "linear"]), two).map(
            lambda x: Fuse(FUSIONS[x[0]], list(x[1]))),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(_leaf, _grow, max_leaves=6))
def test_compile_preserves_results(p: Pipeline) -> None:
    same(Executor().run(p, FQ), Executor().run(p.compile(), FQ))


def test_a_weight_under_a_cutoff_still_weighs_its_fusion_input() -> None:
    """Found by the property above: ``rrf(a, 0.5 * a % 1)`` fused the top document at weight 1
    as written and at 0.5 once compiled (``(w * a) % k`` -> ``w * (a % k)``)."""
    p = Fuse(FUSIONS["rrf"], [ra, (0.5 * ra) % 1])
    written, compiled = Executor().run(p, FQ), Executor().run(p.compile(), FQ)
    same(written, compiled)
    assert written.score[0] == pytest.approx((1 + 0.5) / 61)


# -- executor: shared work runs once ------------------------------------------------------------

COUNT = {"n": 0}


@stage(name="counter")
def counter(queries, candidates):  # noqa: ANN001, ANN201
    COUNT["n"] += 1
    return _retrieve(queries, None, seed=11, n=40)


@stage(name="ce_halve")
def halve(queries, candidates):  # noqa: ANN001, ANN201
    """Mutates its input in place, as the function-stage docstring does."""
    candidates.score = candidates.score / 2
    return candidates


@stage(name="ce_double")
def double(queries, candidates):  # noqa: ANN001, ANN201
    candidates.score *= 2  # in-place on the array itself
    return candidates


def test_shared_prefix_runs_once() -> None:
    texts = ["counter % 1000 >> ce_halve", "counter % 1000 >> ce_double", "counter % 1000",
             "counter % 1000 >> ce_rr"]
    pipelines = [parse(t).compile() for t in texts]
    COUNT["n"] = 0
    ex = Executor()
    outs = [ex.run(p, FQ) for p in pipelines]
    assert COUNT["n"] == 1
    assert ex.calls[(None, counter.key())] == 1
    assert sum(n for key, n in ex.calls.items() if key[1] == counter.key()) == 1
    assert all(n == 1 for n in ex.calls.values())
    # each output is what that pipeline gives run alone, even though two stages mutate their input
    for p, out in zip(pipelines, outs):
        COUNT["n"] = 0
        same(out, Executor().run(p, FQ))
        assert COUNT["n"] == 1
    base = Executor().run(pipelines[2], FQ)
    np.testing.assert_allclose(outs[0].score, base.score / 2)
    np.testing.assert_allclose(outs[1].score, base.score * 2)
    # running a pipeline again on the same executor is free
    COUNT["n"] = 0
    same(ex.run(pipelines[0], FQ), outs[0])
    assert COUNT["n"] == 0


def test_executor_records(index: cascade.Index) -> None:
    ex = Executor()
    p = parse("bm25 % 50 >> ce_rr", index=index).compile()
    out = ex.run(p, QUERIES)
    rec = ex.record_of(out)
    assert rec.label == "bm25(k=50) >> ce_rr" and rec.seconds >= 0 and not rec.cached
    assert len(rec.query_seconds) == len(QUERIES)
    bm = ex.records[(None, p.steps[0].key())]
    assert bm.label == "bm25(k=50)" and bm.seconds <= rec.seconds


# -- the on-disk stage cache --------------------------------------------------------------------


def test_stage_cache_across_executors(index: cascade.Index, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cache = StageCache(tmp_path / "stages")
    p = parse("bm25(k1=1.2) % 100", index=index).compile()
    searched: list[dict] = []
    rank = BM25.rank
    monkeypatch.setattr(BM25, "rank", lambda self, texts, k, *a, **kw: searched.extend(texts)
                        or rank(self, texts, k, *a, **kw))

    first = Executor(cache)
    a = first.run(p, QUERIES)
    assert not first.record_of(a).cached and len(searched) == len(QUERIES)
    second = Executor(StageCache(tmp_path / "stages"))  # another executor, the same cache directory
    b = second.run(p, QUERIES)
    assert second.records[(None, p.key())].cached is True
    assert len(searched) == len(QUERIES)  # nothing searched again
    assert second.calls == {}
    same(a, b)
    assert b.space is index and a.to_run() == b.to_run()
    # a different query set, or different parameters, miss
    for queries, pipeline in ((QUERIES[:2], p), ([Query("q1", "apple")] + QUERIES[1:], p),
                              (QUERIES, parse("bm25(k1=1.3) % 100", index=index).compile()),
                              (QUERIES, parse("bm25(k1=1.2) % 99", index=index).compile())):
        before = len(searched)
        ex = Executor(cache)
        out = ex.run(pipeline, queries)
        assert not ex.record_of(out).cached and len(searched) == before + len(queries)
    # function stages are not cacheable: no entries for them
    n_entries = len(list((tmp_path / "stages").rglob("*.npz")))
    Executor(cache).run(parse("ce_ra >> ce_rr").compile(), FQ)
    assert len(list((tmp_path / "stages").rglob("*.npz"))) == n_entries


def _writer(root: str, barrier, n: int) -> None:  # noqa: ANN001
    cands = _big_candidates(n)
    cache = StageCache(Path(root))
    barrier.wait()
    for _ in range(3):
        cache.put(("big", n), "qhash", cands, 1.5)


def _reader(root: str, barrier, n: int, done, bad, seen) -> None:  # noqa: ANN001
    expect = _big_candidates(n)
    cache = StageCache(Path(root))
    barrier.wait()
    while True:
        finished = done.is_set()  # one more read after the writers are done: the entry is there then
        found = cache.get(("big", n), "qhash", expect.space)
        if found is not None:
            seen.value += 1
            got, seconds = found
            if not (seconds == 1.5 and got.query_ids == expect.query_ids and np.array_equal(got.doc, expect.doc)
                    and np.array_equal(got.score, expect.score) and np.array_equal(got.offsets, expect.offsets)):
                bad.value += 1
        if finished:
            break


def _big_candidates(n: int) -> Candidates:
    rng = np.random.default_rng(n)
    offsets = np.linspace(0, n, 101).astype(np.int64)
    return Candidates([f"q{i}" for i in range(100)], offsets, rng.integers(0, 10**6, n),
                      rng.random(n).astype(np.float32), IdTable())


def test_concurrent_writers(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    n = 1_500_000  # entries of ~12 MB, so the writes overlap
    barrier, done, bad, seen = ctx.Barrier(5), ctx.Event(), ctx.Value("i", 0), ctx.Value("i", 0)
    root = str(tmp_path / "stages")
    reader = ctx.Process(target=_reader, args=(root, barrier, n, done, bad, seen))
    writers = [ctx.Process(target=_writer, args=(root, barrier, n)) for _ in range(4)]
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    done.set()
    reader.join(60)
    assert [w.exitcode for w in writers] == [0, 0, 0, 0] and reader.exitcode == 0
    assert bad.value == 0  # a reader never saw a torn entry
    assert seen.value > 0
    got, seconds = StageCache(Path(root)).get(("big", n), "qhash", IdTable())
    expect = _big_candidates(n)
    assert seconds == 1.5 and got.query_ids == expect.query_ids
    np.testing.assert_array_equal(got.doc, expect.doc)
    np.testing.assert_array_equal(got.score, expect.score)
    files = [p for p in Path(root).rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].suffix == ".npz", files  # no temp files left behind


def test_corrupt_cache_file_is_a_miss(index: cascade.Index, tmp_path: Path) -> None:
    cache = StageCache(tmp_path / "stages")
    p = parse("bm25 % 20", index=index).compile()
    good = Executor(cache).run(p, QUERIES)
    [path] = list((tmp_path / "stages").rglob("*.npz"))
    data = path.read_bytes()
    key, qhash = (None, p.key()), query_set_hash(QUERIES)
    assert cache.get(key, qhash, index) is not None
    for corrupt in (b"", b"garbage" * 10, data[: len(data) // 2], data[:-30], data[:100],
                    b"PK\x03\x04" + b"\x00" * 200):
        path.write_bytes(corrupt)
        assert cache.get(key, qhash, index) is None, corrupt[:10]
        ex = Executor(cache)
        out = ex.run(p, QUERIES)  # recomputed, and the entry written again
        assert not ex.record_of(out).cached
        same(out, good)
        assert cache.get(key, qhash, index) is not None
    # an entry written for other arrays (a different version, say) is a miss too
    np.savez(path, meta=np.array("{}"), offsets=np.zeros(2))
    assert cache.get(key, qhash, index) is None


# -- RM3 ------------------------------------------------------------------------------------------


def test_rm3_expand_weights(index: cascade.Index) -> None:
    rm3 = RM3(index, fb_docs=5, fb_terms=4, max_df=1.0)
    fb = BM25(index, k=5).search_batch([QUERIES[0]])
    weights = rm3.expand(QUERIES[0].text, fb.doc, fb.score)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert all(w > 0 for w in weights.values())
    terms = index.analyzer.terms(QUERIES[0].text)
    assert len(terms) == 2 and set(terms) <= set(weights) and len(weights) <= 2 + 4
    # half the weight stays on the original query (orig_weight=0.5), split by term count
    assert all(weights[t] >= 0.25 for t in terms)


_SCIFACT: dict = {}


@pytest.fixture
def scifact(datasets_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = datasets_dir / "scifact"
    if not (path / "corpus.jsonl").is_file():
        pytest.skip("scifact not found")
    if not _SCIFACT:
        ds = BeirDataset(path)
        _SCIFACT.update(index=cascade.Index.build(ds.corpus(), tmp_path_factory.mktemp("scifact") / "idx"),
                        queries=ds.queries(), qrels=ds.qrels())
    return _SCIFACT


def test_rm3_on_scifact(scifact: dict) -> None:
    index, queries, qrels = scifact["index"], scifact["queries"], scifact["qrels"]
    ex = Executor()
    bm25 = ex.run(parse("bm25", index=index).compile(), queries)
    rm3 = ex.run(parse("bm25_rm3", index=index).compile(), queries)
    b, r = bm25.to_run(), rm3.to_run()
    changed = sum(list(b[q.id])[:10] != list(r[q.id])[:10] for q in queries)
    assert changed >= len(queries) // 3, changed
    ndcg = evaluate(r, qrels, ["nDCG@10"]).mean["nDCG@10"]
    assert 0.6 <= ndcg <= 0.75, ndcg  # a sanity range, not a target (bm25 alone: 0.676)
    # the expansion of one query: weights sum to 1 and keep the query's terms
    rm = RM3(index)
    top = BM25(index, k=10).search_batch(queries[:1])
    weights = rm.expand(queries[0].text, top.doc, top.score)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert set(index.analyzer.terms(queries[0].text)) & set(weights)
    assert len(weights) > len(set(index.analyzer.terms(queries[0].text)))


class Scale(Pipeline):
    """Multiplies scores by a factor; two adjacent Scales fuse into one (the compile hook)."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def key(self) -> tuple:
        return ("scale", self.factor)

    def execute(self, executor, queries, candidates):  # type: ignore[no-untyped-def]
        from dataclasses import replace

        return replace(candidates, score=candidates.score * self.factor)

    def fuse_next(self, following: Pipeline) -> Pipeline | None:
        return Scale(self.factor * following.factor) if isinstance(following, Scale) else None

    def __str__(self) -> str:
        return f"scale{self.factor}"


def test_compile_fuses_adjacent_stages_that_declare_it(index: cascade.Index) -> None:
    bm25 = BM25(index, k=5)
    p = bm25 >> Scale(2.0) >> Scale(3.0) >> Scale(0.5)
    compiled = p.compile()
    assert compiled.key() == (bm25 >> Scale(3.0)).key()  # three stages became one
    ex = Executor()
    fused = ex.run(compiled, QUERIES)
    plain = Executor().run(p, QUERIES)  # uncompiled: each Scale runs
    assert np.allclose(fused.score, plain.score) and fused.doc.tolist() == plain.doc.tolist()
    assert sum(1 for _, key in ex.calls if key[0] == "scale") == 1  # one Scale ran, not three


# -- prefetching: first stages start their background work before the pipeline runs ------------


class Prefetching(Pipeline):
    """A first stage that records which query sets it was asked to prefetch for."""

    cacheable = True

    def __init__(self, name: str, log: list[str]) -> None:
        self.label, self.log, self.space = name, log, SPACE

    def key(self) -> tuple:
        return ("prefetching", self.label)

    def prefetch(self, queries) -> None:  # type: ignore[no-untyped-def]
        self.log.append(self.label)

    def execute(self, executor, queries, candidates):  # type: ignore[no-untyped-def]
        return _retrieve(queries, None, seed=len(self.label))

    def __str__(self) -> str:
        return self.label


def test_first_stages_prefetch_once_and_later_steps_never(tmp_path: Path) -> None:
    log: list[str] = []
    a, b, c = (Prefetching(n, log) for n in ("a", "bb", "ccc"))
    pipeline = (Fuse(FUSIONS["rrf"], [a, b]) % 20 >> c).compile()
    ex = Executor()
    ex.run(pipeline, FQ)
    assert sorted(log) == ["a", "bb"]  # the first stages; c reranks their output
    ex.run(pipeline, FQ)
    assert sorted(log) == ["a", "bb"]  # memoised: nothing to prefetch for
    ex.run(pipeline, FQ[:2])
    assert sorted(log) == ["a", "a", "bb", "bb"]  # another query set
    log.clear()
    ex.run(c, FQ, ex.run(a, FQ[:3]))
    assert log == ["a"]  # candidates given: the reranker is not prefetched


def test_a_stage_whose_output_is_stored_is_not_prefetched(tmp_path: Path) -> None:
    log: list[str] = []
    a, b = Prefetching("a", log), Prefetching("bb", log)
    cache = StageCache(tmp_path / "stages")
    Executor(cache).run(a, FQ)
    log.clear()
    Executor(cache).run(Fuse(FUSIONS["rrf"], [a, b]).compile(), FQ)
    assert log == ["bb"]
