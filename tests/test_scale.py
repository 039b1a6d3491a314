"""Sharded indexes (cascade.scale) searched in process: the same ids and scores, bit for bit, as
one index of the same documents, before and after routed adds, updates and deletes. The same
code runs on Ray actors in tests/test_scale_ray.py (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cascade
from cascade.core.errors import CascadeError
from cascade.scale import ShardedBM25, ShardedDense, ShardedIndex, ShardedRerank
from cascade.scale.layout import ORDER, shard_of
from cascade.scale.search import merge_shards

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from synthetic import generate  # noqa: E402

FILTERS = {"year": "int"}


def synthetic(n: int, n_queries: int = 120, vocab: int = 2000) -> tuple[list[cascade.Doc], list[str]]:
    """Small vocabulary: many equal scores, so tie order is tested too."""
    docs, queries = generate(n, n_queries=n_queries, vocab=vocab)
    return ([cascade.Doc(i, t, meta={"year": 1990 + j % 30}) for j, (i, t) in enumerate(docs)],
            [t for _, t in queries])


def assert_same(ref: cascade.Candidates, got: cascade.Candidates) -> None:
    """Per query: the same ids in the same order with bit-identical float32 scores."""
    assert ref.query_ids == got.query_ids
    assert np.array_equal(ref.offsets, got.offsets)
    assert ref.space.doc_ids(ref.doc) == got.space.doc_ids(got.doc)
    assert np.array_equal(ref.score.view(np.uint32), got.score.view(np.uint32))


def assert_same_up_to_rounding(ref: cascade.Candidates, got: cascade.Candidates, rtol: float = 1e-6) -> None:
    """Per query: scores a float32 rounding apart at most and the same documents above every
    score gap wider than that (only near-ties may swap): dense products over shards have other
    BLAS shapes than over one index, and some CPUs' BLAS kernels round differently per shape."""
    assert ref.query_ids == got.query_ids
    assert np.array_equal(ref.offsets, got.offsets)
    np.testing.assert_allclose(got.score, ref.score, rtol=rtol, atol=0)
    ref_ids, got_ids = ref.space.doc_ids(ref.doc), got.space.doc_ids(got.doc)
    for start, end in zip(ref.offsets[:-1], ref.offsets[1:]):
        scores = ref.score[start:end]
        for cut in np.flatnonzero(scores[:-1] - scores[1:] > 2 * rtol * np.abs(scores[:-1])) + 1:
            assert set(ref_ids[start:start + cut]) == set(got_ids[start:start + cut])


@pytest.fixture
def pair(tmp_path: Path) -> tuple[cascade.Index, ShardedIndex, list[str], list[cascade.Doc]]:
    docs, queries = synthetic(3000)
    one = cascade.Index.build(docs, tmp_path / "one.idx", filter_fields=FILTERS)
    sharded = ShardedIndex.build(docs, tmp_path / "s.sidx", shards=4, filter_fields=FILTERS)
    return one, sharded, queries, docs


def test_bm25_over_shards_scores_as_one_index(pair) -> None:  # type: ignore[no-untyped-def]
    one, sharded, queries, _ = pair
    assert sharded.n_docs == one.n_docs and sharded.total_length == one.manifest.total_length
    for k1, b, k in ((0.9, 0.4, 50), (1.2, 0.75, 7)):
        assert_same(cascade.BM25(one, k1=k1, b=b).search_batch(queries, k=k),
                    ShardedBM25(sharded, k1=k1, b=b, k=k).search_batch(queries))
    assert_same(cascade.BM25(one).search_batch(queries[:1], k=20), ShardedBM25(sharded, k=20).search_batch(queries[:1]))
    where = "year >= 2005"
    assert_same(cascade.BM25(one, where=where).search_batch(queries, k=30),
                ShardedBM25(sharded, k=30, where=where).search_batch(queries))


def test_every_document_lives_in_its_owning_shard(pair) -> None:  # type: ignore[no-untyped-def]
    _, sharded, _, docs = pair
    for s, worker in enumerate(sharded.backend.workers):
        ids = [d.id for d in worker.index]
        assert ids and all(shard_of(i, 4) == s for i in ids)
    assert sum(len(list(w.index)) for w in sharded.backend.workers) == len(docs)
    got = sharded.get(docs[17].id)
    assert (got.id, got.text, got.meta) == (docs[17].id, docs[17].text, docs[17].meta)  # no _order shown


def test_routed_adds_updates_and_deletes_keep_scores_exact(pair) -> None:  # type: ignore[no-untyped-def]
    one, sharded, queries, docs = pair
    more, _ = synthetic(3600)
    new = more[3000:]
    changed = [cascade.Doc(d.id, d.text + " w150 w151", meta=d.meta) for d in docs[100:160]]
    gone = [d.id for d in docs[500:700:3]]
    for target in (one, sharded):
        assert target.add(new, merge=False) == len(new)
        assert target.update(changed, merge=False) == len(changed)
        assert target.delete(gone) == len(gone)
        assert target.delete(where="year = 1991") > 0
    one = one.refresh()
    assert sharded.n_docs == one.n_docs
    assert_same(cascade.BM25(one).search_batch(queries, k=40), ShardedBM25(sharded, k=40).search_batch(queries))
    fresh = ShardedIndex.open(sharded.path)  # what another process sees
    assert_same(cascade.BM25(one).search_batch(queries, k=40), ShardedBM25(fresh, k=40).search_batch(queries))
    sharded.optimize()
    got = ShardedBM25(sharded, k=40).search_batch(queries)
    ref = cascade.BM25(one).search_batch(queries, k=40)
    assert np.array_equal(ref.score.view(np.uint32), got.score.view(np.uint32))


def test_scifact_over_four_shards_scores_as_one_index(datasets_dir: Path, tmp_path: Path) -> None:
    path = datasets_dir / "scifact"
    if not (path / "corpus.jsonl").is_file():
        pytest.skip("scifact not found")
    ds = cascade.BeirDataset(path)
    one = cascade.Index.build(ds.corpus(), tmp_path / "one.idx")
    sharded = ShardedIndex.build(ds.corpus(), tmp_path / "s.sidx", shards=4)
    queries = ds.queries()
    assert_same(cascade.BM25(one).search_batch(queries, k=100), ShardedBM25(sharded, k=100).search_batch(queries))
    delete = [d.id for d in list(ds.corpus())[::7]]
    for target in (one, sharded):
        target.delete(delete)
    assert_same(cascade.BM25(one.refresh()).search_batch(queries, k=100),
                ShardedBM25(sharded, k=100).search_batch(queries))


def test_dense_over_shards_equals_one_index(tmp_path: Path, tiny_bi_encoder: str) -> None:
    from tests.conftest import TINY_WORDS

    rng = np.random.default_rng(3)
    docs = [cascade.Doc(f"d{i}", " ".join(rng.choice(TINY_WORDS, size=int(rng.integers(3, 12)))))
            for i in range(300)]
    docs += [cascade.Doc("dup", docs[5].text)]  # an exact tie
    queries = [" ".join(rng.choice(TINY_WORDS, size=3)) for _ in range(25)] + [docs[5].text]
    one = cascade.Index.build(docs, tmp_path / "one.idx")
    sharded = ShardedIndex.build(docs, tmp_path / "s.sidx", shards=3)
    from cascade.retrieve.dense import Dense

    assert_same_up_to_rounding(Dense(one, model=tiny_bi_encoder, k=20).search_batch(queries),
                               ShardedDense(sharded, model=tiny_bi_encoder, k=20).search_batch(queries))
    more = [cascade.Doc(f"n{i}", " ".join(rng.choice(TINY_WORDS, size=6))) for i in range(30)]
    for target in (one, sharded):
        target.add(more, merge=False)
        target.delete(["d1", "d2", "d3"])
    assert_same_up_to_rounding(Dense(one.refresh(), model=tiny_bi_encoder, k=20).search_batch(queries),
                               ShardedDense(sharded, model=tiny_bi_encoder, k=20).search_batch(queries))
    one = one.refresh()
    spec = f"dense_rerank(model={tiny_bi_encoder})"  # rerankers run per shard on the merged candidates
    ref = cascade.parse(f"bm25 % 30 >> {spec}", index=one)(queries)
    got = (ShardedBM25(sharded, k=30) >> ShardedRerank(sharded, spec))(queries)
    assert ref.space.doc_ids(ref.doc) == got.space.doc_ids(got.doc)
    # a float32 rounding apart at most: the per-shard products have other BLAS shapes
    np.testing.assert_allclose(got.score, ref.score, rtol=1e-6, atol=0)


def test_merge_breaks_ties_by_collection_position() -> None:
    a = (np.array([0, 2]), np.array([0, 1]), np.array([2.0, 1.0], np.float32), np.array([5, 9]))
    b = (np.array([0, 2]), np.array([0, 1]), np.array([2.0, 1.0], np.float32), np.array([3, 1]))
    offsets, docs, scores = merge_shards([a, b], np.array([0, 10, 20]), 1, 3)
    assert offsets.tolist() == [0, 3] and docs.tolist() == [10, 0, 11] and scores.tolist() == [2.0, 2.0, 1.0]


def test_more_shards_than_documents(tmp_path: Path) -> None:
    docs = [cascade.Doc(f"x{i}", f"cat {i}") for i in range(3)]
    sharded = ShardedIndex.build(docs, tmp_path / "s.sidx", shards=8)
    assert sharded.n_docs == 3
    assert sorted(ShardedBM25(sharded, k=5).search_batch(["cat"]).to_run()["0"]) == ["x0", "x1", "x2"]


def test_user_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    docs = [cascade.Doc("a", "cat")]
    with pytest.raises(CascadeError, match="positive integer"):
        ShardedIndex.build(docs, tmp_path / "s", shards=0)
    with pytest.raises(CascadeError, match="reserved"):
        ShardedIndex.build([cascade.Doc("a", "cat", meta={ORDER: 1})], tmp_path / "s", shards=2)
    assert not (tmp_path / "s").exists() and not list(tmp_path.glob(".s.tmp-*"))
    with pytest.raises(CascadeError, match="not a sharded index"):
        ShardedIndex.open(cascade.Index.build(docs, tmp_path / "plain").path)
    ShardedIndex.build(docs, tmp_path / "s", shards=2)
    with pytest.raises(CascadeError, match="exists"):
        ShardedIndex.build(docs, tmp_path / "s", shards=2)
    assert ShardedIndex.build(docs * 1, tmp_path / "s", shards=3, overwrite=True).n_shards == 3


def test_cli_builds_and_searches_a_sharded_index(tmp_path: Path) -> None:
    from cascade.cli import app

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": f"cats and dogs {i}" if i % 4 else "mice"}) + "\n"
                              for i in range(40)))
    runner = CliRunner()
    done = runner.invoke(app, ["index", str(corpus), "-o", str(tmp_path / "s.sidx"), "--shards", "3"])
    assert done.exit_code == 0, done.output
    assert ShardedIndex.open(tmp_path / "s.sidx").n_docs == 40
    found = runner.invoke(app, ["search", str(tmp_path / "s.sidx"), "mice", "-k", "3", "--json"])
    assert found.exit_code == 0, found.output
    assert [h["id"] for h in json.loads(found.stdout)["hits"]] == ["d0", "d4", "d8"]
    bad = runner.invoke(app, ["index", str(corpus), "-o", str(tmp_path / "x"), "--ray", "auto"])
    assert bad.exit_code != 0 and "--shards" in bad.output


def test_sharding_without_ray_never_imports_it(tmp_path: Path) -> None:
    code = ("import sys, cascade; from cascade.scale import ShardedIndex, ShardedBM25; "
            f"s = ShardedIndex.build([cascade.Doc('a', 'cat'), cascade.Doc('b', 'dog')], {str(tmp_path / 's')!r}, "
            "shards=2); ShardedBM25(s, k=1).search_batch(['cat']); print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
