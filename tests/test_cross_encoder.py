"""Cross-encoder reranking with tiny random BERT classifiers saved to a temp dir (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import cascade  # noqa: E402
from cascade.core.errors import CascadeError  # noqa: E402
from cascade.core.registry import lookup  # noqa: E402
from cascade.core.types import Query  # noqa: E402
from cascade.data.trec import write_trec_run  # noqa: E402
from cascade.pipeline import builtins  # noqa: E402,F401  (registers the stages)
from cascade.rerank.cross_encoder import CrossEncoder  # noqa: E402
from cascade.retrieve.bm25 import BM25

DOCS = [
    ("d0", "Apple pie", "apple pie with butter crust and sugar"),
    ("d1", "", "the apple orchard harvest in autumn"),
    ("d2", "Car care", "car engine oil change every year"),
    ("d3", "", "butter and sugar make a sweet crust"),
    ("d4", "Orchard", "an orchard of apple and pear trees"),
    ("d5", "", "engine oil for an old car engine"),
]
QUERIES = [Query("q1", "apple pie"), Query("q2", "car engine oil"), Query("q3", "sweet butter crust")]
WORDS = sorted({w for _, title, text in DOCS for w in (title + " " + text).lower().split()}
               | {w for q in QUERIES for w in q.text.split()})


def _save_model(directory: Path, num_labels: int, seed: int = 0) -> Path:
    """A random 1-layer BERT sequence classifier and a WordPiece tokenizer over WORDS."""
    directory.mkdir(parents=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    transformers.BertTokenizerFast(str(vocab), model_max_length=512).save_pretrained(directory)
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=512,
                                     num_labels=num_labels)
    transformers.BertForSequenceClassification(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("ce-models")
    return {1: _save_model(root / "one", 1), 2: _save_model(root / "two", 2, seed=1)}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> cascade.Index:
    docs = [cascade.Doc(i, text, title) for i, title, text in DOCS]
    return cascade.Index.build(docs, tmp_path_factory.mktemp("ce-index") / "index")


def _direct_scores(model_dir: Path, pairs: list[tuple[str, str]], max_length: int = 512,
                   truncation: str = "only_second") -> np.ndarray:
    """Each pair through the model alone: no batching, no padding."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    out = []
    with torch.inference_mode():
        for q, d in pairs:
            logits = model(**tokenizer(q, d, truncation=truncation, max_length=max_length,
                                       return_tensors="pt")).logits[0]
            out.append(float(logits[0]) if len(logits) == 1 else float(logits[-1] - logits[0]))
    return np.array(out)


def _doc_text(index: cascade.Index, doc_id: str) -> str:
    doc = index.get(doc_id)
    return " ".join(p for p in (doc.title, doc.text) if p)


def _check_against_direct(out: cascade.Candidates, first: cascade.Candidates, index: cascade.Index,
                          model_dir: Path) -> None:
    """Same documents as the first stage, scores as the model gives them one pair at a time, sorted."""
    got, before = out.to_run(), first.to_run()
    assert list(got) == [q.id for q in QUERIES]
    for q in QUERIES:
        assert set(got[q.id]) == set(before[q.id])
        ids = sorted(before[q.id])
        expected = _direct_scores(model_dir, [(q.text, _doc_text(index, d)) for d in ids])
        np.testing.assert_allclose([got[q.id][d] for d in ids], expected, atol=1e-5)
        nums = [index.doc_number(d) for d in ids]
        order = sorted(range(len(ids)), key=lambda i: (-np.float32(expected[i]), nums[i]))
        assert list(got[q.id]) == [ids[i] for i in order]


def test_bm25_then_cross_encoder_matches_pairwise_scoring(index: cascade.Index, models: dict[int, Path]) -> None:
    p = cascade.parse(f"bm25 >> cross_encoder(model={models[1]}, batch_size=3)", index=index)
    out = p(QUERIES)
    assert int(out.offsets[-1]) > len(QUERIES)  # several candidates per query, batches span queries
    _check_against_direct(out, BM25(index)(QUERIES), index, models[1])


def test_scores_sorted_within_each_query_ties_by_doc_number(index: cascade.Index, models: dict[int, Path]) -> None:
    out = (BM25(index) >> CrossEncoder(index, str(models[1]), batch_size=2))(QUERIES)
    for _, docs, scores in out.per_query():
        assert np.all(np.diff(scores) <= 0)
        same = np.diff(scores) == 0
        assert np.all(np.diff(docs)[same] > 0)
    assert out.space is index


def test_batch_size_does_not_change_scores(index: cascade.Index, models: dict[int, Path]) -> None:
    runs = [(BM25(index) >> CrossEncoder(index, str(models[1]), batch_size=b))(QUERIES).to_run() for b in (1, 4, 64)]
    for q in QUERIES:
        for other in runs[1:]:
            assert list(other[q.id]) == list(runs[0][q.id])
            np.testing.assert_allclose(list(other[q.id].values()), list(runs[0][q.id].values()), atol=1e-5)


def test_two_label_model_scores_last_minus_first(index: cascade.Index, models: dict[int, Path]) -> None:
    p = BM25(index) >> CrossEncoder(index, str(models[2]))
    _check_against_direct(p(QUERIES), BM25(index)(QUERIES), index, models[2])


def test_missing_model_directory_is_a_cascade_error(index: cascade.Index, tmp_path: Path) -> None:
    with pytest.raises(CascadeError, match="does not exist"):
        CrossEncoder(index, str(tmp_path / "no-such-model"))
    with pytest.raises(CascadeError, match="does not exist"):
        cascade.parse(f"bm25 >> cross_encoder(model={tmp_path / 'no-such-model'})", index=index)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CascadeError, match="could not load model"):
        (BM25(index) >> CrossEncoder(index, str(empty)))(QUERIES)


def test_needs_a_model_and_known_parameters(index: cascade.Index, models: dict[int, Path]) -> None:
    with pytest.raises(CascadeError, match="needs a model"):
        cascade.parse("bm25 >> cross_encoder", index=index)
    with pytest.raises(CascadeError, match="unknown parameter"):
        cascade.parse(f"bm25 >> cross_encoder(model={models[1]}, depth=3)", index=index)
    with pytest.raises(CascadeError, match="batch_size"):
        cascade.parse(f"bm25 >> cross_encoder(model={models[1]}, batch_size=0)", index=index)
    with pytest.raises(CascadeError, match="first stage"):
        CrossEncoder(index, str(models[1]))(QUERIES)


def test_prints_parses_back_and_pushes_k_into_first_stage(index: cascade.Index, models: dict[int, Path]) -> None:
    p = cascade.parse(f"bm25 >> cross_encoder({models[1]}, k=2, max_length=128)", index=index)
    assert str(p) == f"bm25 >> cross_encoder(k=2, max_length=128, model={models[1]})"
    assert cascade.parse(str(p), index=index) == p
    assert str(p.compile()) == f"bm25(k=2) >> cross_encoder(k=2, max_length=128, model={models[1]})"
    assert all(len(docs) <= 2 for _, docs, _ in p(QUERIES).per_query())
    assert CrossEncoder(index, str(models[1]), batch_size=8).key() == CrossEncoder(index, str(models[1])).key()


def test_run_file_candidates_are_mapped_to_the_index(index: cascade.Index, models: dict[int, Path],
                                                     tmp_path: Path) -> None:
    first = BM25(index)(QUERIES)
    run_path = tmp_path / "first.trec"
    write_trec_run(first.to_run(), run_path)
    out = cascade.parse(f"run({run_path}) >> cross_encoder(model={models[1]})", index=index)(QUERIES)
    assert out.space is index
    _check_against_direct(out, first, index, models[1])

    run_path.write_text("q1 Q0 d0 1 2.0 x\nq1 Q0 nowhere 2 1.0 x\n")
    with pytest.raises(CascadeError, match="not in the index.*nowhere"):
        cascade.parse(f"run({run_path}) >> cross_encoder(model={models[1]})", index=index)(QUERIES)


def test_query_longer_than_max_length_truncates_both(index: cascade.Index, models: dict[int, Path]) -> None:
    long_query = Query("long", " ".join(WORDS))  # far more than 16 tokens
    stage = CrossEncoder(index, str(models[1]), max_length=16, batch_size=4)
    out = (BM25(index) >> stage)([long_query])
    ids = list(out.to_run()["long"])
    expected = _direct_scores(models[1], [(long_query.text, _doc_text(index, d)) for d in ids], max_length=16,
                              truncation="longest_first")
    np.testing.assert_allclose(out.score, expected, atol=1e-5)


def test_progress_callback_reaches_total(index: cascade.Index, models: dict[int, Path]) -> None:
    seen: list[tuple[int, int]] = []
    stage = CrossEncoder(index, str(models[1]), batch_size=2, progress=lambda done, total: seen.append((done, total)))
    out = (BM25(index) >> stage)(QUERIES)
    n = int(out.offsets[-1])
    assert seen[-1] == (n, n) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_stage_cache_reuses_scores(index: cascade.Index, models: dict[int, Path], cache_dir: Path) -> None:
    from cascade.core.executor import run_pipeline
    from cascade.pipeline.cache import StageCache

    p = BM25(index) >> CrossEncoder(index, str(models[1]))
    cache = StageCache(cache_dir / "stages")
    first = run_pipeline(p, QUERIES, cache=cache)
    again = run_pipeline(p, QUERIES, cache=cache)
    np.testing.assert_array_equal(first.doc, again.doc)
    np.testing.assert_array_equal(first.score, again.score)


def test_pairs_of_all_queries_share_batches(index: cascade.Index, models: dict[int, Path]) -> None:
    stage = CrossEncoder(index, str(models[1]), batch_size=64)
    calls: list[int] = []
    model = stage.loaded[1]
    hook = model.register_forward_hook(lambda _m, args, kwargs, _out: calls.append(len(kwargs["input_ids"])),
                                       with_kwargs=True)
    try:
        out = (BM25(index) >> stage)(QUERIES)
    finally:
        hook.remove()
    assert calls == [int(out.offsets[-1])]  # one forward pass for every query's candidates


def test_builder_reports_progress_to_the_context(index: cascade.Index, models: dict[int, Path]) -> None:
    from cascade.core.registry import Context

    seen: list[tuple[str, int, int | None]] = []
    ctx = Context.of(index=index)
    ctx.on_progress = lambda label, done, total: seen.append((label, done, total))  # type: ignore[attr-defined]
    out = (BM25(index) >> lookup("cross_encoder").make(ctx, [], {"model": str(models[1])}))(QUERIES)
    n = int(out.offsets[-1])
    assert seen[-1] == ("cross-encoding pairs", n, n)
