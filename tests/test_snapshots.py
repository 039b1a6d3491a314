"""Snapshots (Lucene's reader model): an opened index answers the same while another process adds,
deletes and merges; refresh() shows the commits; a stage built on a refreshed snapshot never
serves stale data, and one built on the old snapshot keeps its answers."""

from __future__ import annotations

import multiprocessing
import random
from pathlib import Path

import pytest
from conftest import TINY_WORDS

import cascade
from cascade.core.types import Doc, Query
from cascade.index.index import Index
from cascade.retrieve.bm25 import BM25

WORDS = ["apple", "banana", "cherry", "date", "elder", "fig", "grape", "honey", "iris", "jade"]
QUERIES = [Query(str(i), q) for i, q in enumerate(["apple banana", "cherry fig", "grape", "honey iris jade",
                                                   "zebra0 apple", "zebra3"])]


def _docs(n: int) -> list[Doc]:
    return [Doc(f"d{i}", " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(1 + i % 6))) for i in range(n)]


def _writer(path: str, rounds: int) -> None:
    """Commits as another process would: adds, deletes, merges (run in a child process)."""
    idx = Index.open(path)
    for r in range(rounds):
        idx.add([Doc(f"new{r}-{i}", f"zebra{r} {WORDS[i % len(WORDS)]} apple") for i in range(15)], merge=False)
        idx.delete([f"d{3 * r}", f"d{3 * r + 1}"])
        if r % 3 == 2:
            idx.optimize()


def _answers(index: Index) -> tuple[dict, dict]:  # type: ignore[type-arg]
    bm25 = BM25(index)
    single = {q.text: [(h.id, h.score) for h in bm25.search(q.text, k=10)] for q in QUERIES}
    return bm25.search_batch(QUERIES, k=50).to_run(), single


def test_a_snapshot_answers_the_same_while_another_process_commits(tmp_path: Path) -> None:
    path = tmp_path / "live.idx"
    Index.build(_docs(300), path)
    snapshot = Index.open(path)
    expected = _answers(snapshot)
    bm25 = BM25(snapshot)
    assert not any(doc.startswith("new") for docs in expected[0].values() for doc in docs)
    writer = multiprocessing.get_context("fork").Process(target=_writer, args=(str(path), 9))
    writer.start()
    checks = 0
    while writer.is_alive() or checks < 3:
        assert _answers(snapshot) == expected  # new stage objects on the same snapshot
        assert bm25.search_batch(QUERIES, k=50).to_run() == expected[0]  # and the one made before
        assert snapshot.get("d0").id == "d0" and len(snapshot) == 300
        checks += 1
    writer.join(timeout=120)
    assert writer.exitcode == 0 and checks > 3
    assert not (path / "seg-000001").exists()  # merged away under the snapshot, which still reads it
    assert _answers(snapshot) == expected

    latest = snapshot.refresh()
    assert latest is not snapshot and latest.refresh() is latest
    assert len(latest) == 300 + 9 * 15 - 9 * 2
    assert latest.doc_number("d0") is None and latest.doc_number("new8-14") is not None
    assert {h.id for h in BM25(latest).search("zebra3", k=100)} == {f"new3-{i}" for i in range(15)}
    fresh = Index.build(list(latest), tmp_path / "fresh.idx")  # the same live documents, built at once
    assert _answers(latest) == _answers(fresh)


TARGET = "cheese moon sky fish swim garden"  # one new document's text, and the query that finds it


@pytest.fixture
def encoded(tiny_bi_encoder: str, tmp_path: Path) -> Index:
    from cascade.models.stored import encode_biencoder

    rng = random.Random(5)
    docs = [Doc(f"d{i}", " ".join(rng.choice(TINY_WORDS) for _ in range(rng.randint(2, 9)))) for i in range(80)]
    docs = [d for d in docs if d.text != TARGET]
    return encode_biencoder(Index.build(docs, tmp_path / "n.idx"), tiny_bi_encoder)


def _stages(model: str) -> list[str]:
    out = ["bm25", f"dense(model={model})", f"dense(model={model}, method=hnsw)",
           f"bm25 % 100 >> maxsim(model={model})", f"bm25 % 100 >> dense_rerank(model={model})"]
    try:
        import cognition  # noqa: F401  (splade-tiny)
    except ImportError:
        return out
    return out + ["sparse(mode=inference_free)", "sparse"]


def test_no_stage_serves_stale_data_after_a_refresh(encoded: Index, tiny_bi_encoder: str) -> None:
    query = [Query("q", TARGET)]
    before = {text: cascade.parse(text, index=encoded)(query).to_run()["q"] for text in _stages(tiny_bi_encoder)}
    stale = {text: cascade.parse(text, index=encoded) for text in before}  # stages of the old snapshot
    encoded.add([Doc("fresh", TARGET)])
    encoded.delete(["d0", "d1"])
    latest = encoded.refresh()
    for text in before:
        got = cascade.parse(text, index=latest)(query).to_run()["q"]
        assert next(iter(got)) == "fresh", text  # the new document, encoded on first use, comes first
        assert "d0" not in got and "d1" not in got, text
        assert stale[text](query).to_run()["q"] == before[text], text  # the old snapshot's stage: unchanged
