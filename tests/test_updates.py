"""A living index: add / update / delete / merge keep BM25 exactly equal to a fresh build."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade.core.errors import BadIndexError, CascadeError
from cascade.core.types import Doc, Query
from cascade.index import hooks
from cascade.index.index import Index
from cascade.index.lock import WriterBusy, writer_lock
from cascade.index.manifest import MANIFEST_NAME
from cascade.index.merge import TieredMergePolicy
from cascade.retrieve.bm25 import BM25

WORDS = ["apple", "banana", "cherry", "date", "elder", "fig", "grape", "honey"]
QUERIES = ["apple banana", "cherry", "fig grape honey apple", "date elder elder", "zebra"]
FIELDS = {"year": "int", "lang": "keyword"}


def doc(i: str, words: list[str], year: int = 2000, lang: str = "en") -> Doc:
    return Doc(i, " ".join(words), meta={"year": year, "lang": lang})


def scores(idx: Index, query: str) -> dict[str, float]:
    return {h.id: h.score for h in BM25(idx).search(query, k=1000)}


def batch_scores(idx: Index, mode: str = "ranges") -> list[dict[str, float]]:
    cands = BM25(idx).search_batch([Query(str(i), q) for i, q in enumerate(QUERIES)], k=1000, mode=mode)
    run = cands.to_run()
    return [run.get(str(i), {}) for i in range(len(QUERIES))]


def assert_same_as_fresh(idx: Index, live: dict[str, Doc], tmp: Path) -> None:
    assert idx.n_docs == len(live)
    assert sorted(d.id for d in idx) == sorted(live)
    if not live:
        assert all(scores(idx, q) == {} for q in QUERIES)
        return
    fresh = Index.build(list(live.values()), tmp / "fresh", filter_fields=FIELDS, overwrite=True)
    assert idx.avg_doc_length == fresh.avg_doc_length
    for q in QUERIES:
        assert scores(idx, q) == scores(fresh, q), q
    assert batch_scores(idx) == batch_scores(fresh)
    fresh.close()


def test_add_update_delete_basics(tmp_path: Path) -> None:
    idx = Index.build([doc("a", ["apple"]), doc("b", ["banana", "apple"])], tmp_path / "i", filter_fields=FIELDS)
    assert idx.add([doc("c", ["cherry", "apple"], 2010)]) == 1
    idx = idx.refresh()
    assert [s.name for s in idx.manifest.segments] == ["seg-000001", "seg-000002"]
    assert idx.manifest.generation == 2 and idx.n_docs == 3
    with pytest.raises(CascadeError, match="'a' is already in"):
        idx.add([doc("a", ["again"])])
    with pytest.raises(CascadeError, match="appears twice"):
        idx.add([doc("x", ["x"]), doc("x", ["y"])])
    assert idx.n_docs == 3 and idx.manifest.generation == 2  # failed adds commit nothing
    assert idx.update([doc("a", ["grape"]), doc("new", ["fig"])]) == 1
    idx = idx.refresh()
    assert idx.get("a").text == "grape" and idx.n_docs == 4
    assert idx.delete(["b", "nope"]) == 1
    idx = idx.refresh()
    assert idx.doc_number("b") is None
    assert idx.delete(where="year >= 2010") == 1
    idx = idx.refresh()
    assert sorted(d.id for d in idx) == ["a", "new"]
    assert idx.delete(["b"]) == 0  # nothing to do: no commit
    idx = idx.refresh()
    gen = idx.manifest.generation
    assert idx.delete(where="year > 3000") == 0 and idx.manifest.generation == gen
    idx = idx.refresh()
    live = {d.id: d for d in idx}
    assert_same_as_fresh(idx, live, tmp_path)
    assert idx.verify() == []


def test_delete_everything_then_add(tmp_path: Path) -> None:
    idx = Index.build([doc("a", ["apple"])], tmp_path / "i", filter_fields=FIELDS)
    assert idx.delete(["a"]) == 1
    idx = idx.refresh()
    assert idx.n_docs == 0 and idx.segments == [] and BM25(idx).search("apple") == []
    assert len(BM25(idx).search_batch([Query("q", "apple")], k=5).doc) == 0
    idx.add([doc("b", ["apple"])])
    idx = idx.refresh()
    assert [h.id for h in BM25(Index.open(tmp_path / "i")).search("apple")] == ["b"]


def test_tombstones_are_files_listed_in_the_manifest(tmp_path: Path) -> None:
    root = tmp_path / "i"
    idx = Index.build([doc(f"d{i}", ["apple"]) for i in range(5)], root)
    idx.delete(["d1"])
    idx = idx.refresh()
    idx.delete(["d3"])
    idx = idx.refresh()
    [seg] = json.loads((root / MANIFEST_NAME).read_text())["segments"]
    assert seg["deletes"] == "del-000003.npy" and seg["n_deleted"] == 2
    assert "del-000003.npy" in seg["files"] and "del-000002.npy" not in seg["files"]
    assert sorted(p.name for p in (root / "seg-000001").glob("del-*")) == ["del-000003.npy"]  # old one removed
    assert np.load(root / "seg-000001" / "del-000003.npy").tolist() == [False, True, False, True, False]
    # a damaged tombstone file is named on open
    path = root / "seg-000001" / "del-000003.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(BadIndexError, match="del-000003.npy"):
        Index.open(root)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.tuples(st.integers(0, 14), st.lists(st.sampled_from(WORDS), min_size=1,
                                                                                    max_size=8),
                                                     st.integers(1990, 2030)), min_size=1, max_size=5)),
        st.tuples(st.just("update"), st.lists(st.tuples(st.integers(0, 14), st.lists(st.sampled_from(WORDS),
                                                                                       min_size=1, max_size=8),
                                                        st.integers(1990, 2030)), min_size=1, max_size=4)),
        st.tuples(st.just("delete"), st.lists(st.integers(0, 14), min_size=1, max_size=4)),
        st.tuples(st.just("delete_where"), st.integers(1990, 2030)),
        st.tuples(st.just("merge"), st.booleans()),
    ),
    min_size=1, max_size=7,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(initial=st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8), min_size=1, max_size=8), ops=OPS)
def test_scores_after_any_updates_equal_a_fresh_build(tmp_path_factory: pytest.TempPathFactory,
                                                      initial: list[list[str]], ops: list) -> None:
    tmp = tmp_path_factory.mktemp("ops")
    live = {f"d{i}": doc(f"d{i}", words, 2000 + i) for i, words in enumerate(initial)}
    idx = Index.build(list(live.values()), tmp / "i", filter_fields=FIELDS)
    for op, arg in ops:
        if op in ("add", "update"):
            batch = {f"d{i}": doc(f"d{i}", words, year) for i, words, year in arg}
            if op == "add":
                batch = {k: v for k, v in batch.items() if k not in live}
                if not batch:
                    continue
                idx.add(batch.values(), merge=False)
                idx = idx.refresh()
            else:
                idx.update(batch.values(), merge=False)
                idx = idx.refresh()
            live.update(batch)
        elif op == "delete":
            ids = [f"d{i}" for i in arg]
            assert idx.delete(ids) == len(set(ids) & set(live))
            idx = idx.refresh()
            for i in ids:
                live.pop(i, None)
        elif op == "delete_where":
            gone = [k for k, d in live.items() if d.meta["year"] < arg]
            assert idx.delete(where=f"year < {arg}") == len(gone)
            idx = idx.refresh()
            for k in gone:
                del live[k]
        else:
            idx.optimize(policy=TieredMergePolicy(factor=2) if arg else None)
            idx = idx.refresh()
    assert_same_as_fresh(idx, live, tmp)
    assert Index.open(tmp / "i").verify() == []
    idx.close()


def test_tiered_policy_folds_small_segments(tmp_path: Path) -> None:
    idx = Index.build([doc("s0", ["apple"])], tmp_path / "i")
    for i in range(1, 8):
        idx.add([doc(f"s{i}", ["apple", WORDS[i]])], merge=False)
        idx = idx.refresh()
    assert len(idx.segments) == 8
    assert TieredMergePolicy(factor=8).select(idx.manifest.segments) != []
    idx.add([doc("s8", ["fig"])])  # merge=True: the policy runs after the commit
    idx = idx.refresh()
    assert len(idx.segments) < 9
    assert sorted(d.id for d in idx) == [f"s{i}" for i in range(9)]
    # heavily deleted segments get rewritten
    big = Index.build([doc(f"b{i}", ["apple"]) for i in range(10)], tmp_path / "j")
    big.delete([f"b{i}" for i in range(5)])
    big = big.refresh()
    assert TieredMergePolicy(max_deleted=0.3).select(big.manifest.segments) == ["seg-000001"]
    big.optimize(policy=TieredMergePolicy())
    big = big.refresh()
    assert big.manifest.segments[0].n_deleted == 0 and big.n_docs == 5


def test_reader_keeps_its_snapshot_until_refresh(tmp_path: Path) -> None:
    docs = [doc(f"d{i}", [WORDS[i % 8], WORDS[(i * 3) % 8]]) for i in range(40)]
    writer = Index.build(docs, tmp_path / "i")
    reader = Index.open(tmp_path / "i")
    bm25 = BM25(reader)
    before = {q: scores(reader, q) for q in QUERIES}
    before_batch = bm25.search_batch([Query("q", "apple banana")], k=10).to_run()
    writer.add([doc("new", ["apple", "apple", "banana"])])
    writer = writer.refresh()
    writer.delete([f"d{i}" for i in range(10)])
    writer = writer.refresh()
    writer.optimize()  # removes the reader's segment directory
    writer = writer.refresh()
    assert not (tmp_path / "i" / "seg-000001").exists()
    assert {q: scores(reader, q) for q in QUERIES} == before  # old snapshot, still whole
    assert reader.get("d0").id == "d0"
    assert bm25.search_batch([Query("q", "apple banana")], k=10).to_run() == before_batch
    fresh = reader.refresh()
    assert fresh is not reader and fresh.refresh() is fresh  # a new snapshot, then nothing newer
    assert reader.n_docs == 40 and reader.doc_number("d0") is not None  # the old one never changes
    assert fresh.n_docs == 31 and fresh.doc_number("d0") is None
    assert bm25.search_batch([Query("q", "apple banana")], k=10).to_run() == before_batch
    assert BM25(fresh).search("apple banana", k=1)[0].id == "new"
    assert {q: scores(fresh, q) for q in QUERIES} == {q: scores(writer, q) for q in QUERIES}


def test_searches_during_a_background_merge_are_correct(tmp_path: Path) -> None:
    idx = Index.build([doc(f"a{i}", [WORDS[i % 8], WORDS[i % 5]]) for i in range(200)], tmp_path / "i")
    for j in range(4):
        idx.add([doc(f"b{j}-{i}", [WORDS[(i + j) % 8]] * (1 + i % 3)) for i in range(50)], merge=False)
        idx = idx.refresh()
    idx.delete([f"a{i}" for i in range(0, 200, 3)])
    idx = idx.refresh()
    expected = {q: scores(idx, q) for q in QUERIES}
    reader = Index.open(tmp_path / "i")
    thread = idx.optimize(background=True)
    seen = 0
    while thread.is_alive() or seen < 3:
        assert {q: scores(reader, q) for q in QUERIES} == expected
        reader = reader.refresh()  # may land on the merged commit: same scores
        seen += 1
    thread.join()
    idx = idx.refresh()
    assert len(idx.segments) == 1 and idx.manifest.segments[0].n_deleted == 0
    assert {q: scores(idx, q) for q in QUERIES} == expected


def test_second_writer_gets_a_clear_error(tmp_path: Path) -> None:
    idx = Index.build([doc("a", ["apple"])], tmp_path / "i")
    with writer_lock(tmp_path / "i"):
        with pytest.raises(WriterBusy, match="another writer is updating this index"):
            idx.add([doc("b", ["banana"])])
        with pytest.raises(WriterBusy):
            idx.delete(["a"])
        with pytest.raises(WriterBusy):
            Index.build([doc("z", ["z"])], tmp_path / "i", overwrite=True)
    # waiting for a writer that finishes
    lock = writer_lock(tmp_path / "i")
    lock.__enter__()
    timer = threading.Timer(0.2, lambda: lock.__exit__(None, None, None))
    timer.start()
    assert idx.add([doc("b", ["banana"])], wait=5) == 1
    idx = idx.refresh()
    timer.join()
    assert idx.n_docs == 2
    assert sorted(p.name for p in (tmp_path / "i").iterdir()) == [MANIFEST_NAME, "seg-000001", "seg-000002"]


def test_unknown_manifest_keys_and_rep_files_survive_a_rewrite(tmp_path: Path) -> None:
    root = tmp_path / "i"
    Index.build([doc("a", ["apple"]), doc("b", ["banana"])], root)
    data = json.loads((root / MANIFEST_NAME).read_text())
    data["representations"] = {"dense": {"dim": 2}}
    (root / "seg-000001" / "rep-dense.vectors.npy").write_bytes(b"xx")
    data["segments"][0]["files"]["rep-dense.vectors.npy"] = {
        "size": 2, "blake2b": __import__("hashlib").blake2b(b"xx", digest_size=16).hexdigest()}
    data["segments"][0]["future_key"] = 7
    (root / MANIFEST_NAME).write_text(json.dumps(data))
    idx = Index.open(root)
    idx.delete(["a"])
    idx = idx.refresh()
    # a new segment would lack a representation of a kind this Cascade cannot build: refused, not dropped
    with pytest.raises(CascadeError, match="adding documents .* needs representation 'dense' .*no builder"):
        idx.add([doc("c", ["cherry"])])
    assert idx.refresh().generation == idx.generation
    data = json.loads((root / MANIFEST_NAME).read_text())
    assert data["representations"] == {"dense": {"dim": 2}}
    assert "rep-dense.vectors.npy" in data["segments"][0]["files"] and data["segments"][0]["future_key"] == 7
    assert (root / "seg-000001" / "rep-dense.vectors.npy").exists()
    with pytest.raises(CascadeError, match="merging .* needs representation 'dense' .*no builder"):
        idx.optimize()  # merging would lose a representation of an unknown kind
    assert Index.open(root).verify() == [] and sorted(p.name for p in root.iterdir()) == [MANIFEST_NAME, "seg-000001"]


def test_segment_hooks_add_files_to_new_segments(tmp_path: Path) -> None:
    def hook(seg_dir: Path, docs) -> list[str]:  # type: ignore[no-untyped-def]
        ids = [d.id for d in docs]
        (seg_dir / "rep-test.ids.json").write_text(json.dumps(ids))
        return ["rep-test.ids.json"]

    hooks.AFTER_SEGMENT_WRITTEN.append(hook)
    try:
        idx = Index.build([doc("a", ["apple"])], tmp_path / "i")
        idx.add([doc("b", ["banana"]), doc("c", ["cherry"])], merge=False)
        idx = idx.refresh()
    finally:
        hooks.AFTER_SEGMENT_WRITTEN.remove(hook)
    assert [json.loads((tmp_path / "i" / s.name / "rep-test.ids.json").read_text()) for s in idx.manifest.segments] \
        == [["a"], ["b", "c"]]
    assert all("rep-test.ids.json" in s.files for s in idx.manifest.segments)
    assert idx.verify() == []


def test_numpy_impacts_equal_the_kernel_bit_for_bit() -> None:
    from cascade.index.impacts import bm25_impacts

    rng = np.random.default_rng(0)
    doclens = rng.integers(1, 400, 3000).astype(np.int32)
    docs = rng.integers(0, 3000, 50_000).astype(np.int32)
    tfs = rng.integers(1, 40, 50_000).astype(np.int32)
    for avgdl in (1.0, 37.123456789, 250.5):
        for k1, b in ((0.9, 0.4), (1.2, 0.75), (0.0, 0.0), (2.5, 1.0)):
            a = bm25_impacts(tfs, doclens, docs, k1, b, avgdl, compiled=True)
            c = bm25_impacts(tfs, doclens, docs, k1, b, avgdl, compiled=False)
            assert a.dtype == c.dtype == np.float32 and np.array_equal(a.view(np.uint32), c.view(np.uint32))


def test_numpy_csr_equals_the_kernel() -> None:
    from cascade.index.csr import csr_from_pairs
    from cascade.index.csr_numpy import csr_from_pairs_numpy

    rng = np.random.default_rng(1)
    n_terms = 500
    doc = np.sort(rng.integers(0, 2000, 30_000)).astype(np.int32)
    term = rng.integers(0, n_terms, 30_000).astype(np.int32)
    tf = rng.integers(1, 9, 30_000).astype(np.int32)
    remap = rng.permutation(n_terms).astype(np.int32)
    for a, b in zip(csr_from_pairs(term, doc, tf, remap, n_terms), csr_from_pairs_numpy(term, doc, tf, remap, n_terms)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
