"""One snapshot searched from many threads (as the server does) gives the results of searching
it alone: the shared query analysis (QueryTerms) grows under a lock."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cascade


def test_threads_learning_new_terms_at_once_get_the_sequential_results(tmp_path: Path) -> None:
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(3000)]
    docs = [cascade.Doc(f"d{i}", " ".join(rng.choices(vocab, k=30))) for i in range(600)]
    path = tmp_path / "t.idx"
    index = cascade.Index.build(docs[:300], path)
    index.add(docs[300:], merge=False)  # two segments: the multi-segment path too
    queries = [" ".join(rng.choices(vocab, k=4)) for _ in range(400)]

    def answers(bm25: cascade.BM25, qs: list[str]) -> list[list[tuple[str, float]]]:
        return [[(h.id, h.score) for h in bm25.search(q, k=5)] for q in qs]

    expected = answers(cascade.BM25(cascade.Index.open(path)), queries)
    for _ in range(3):
        shared = cascade.BM25(cascade.Index.open(path))  # a fresh snapshot: every term is new to it
        chunks = [queries[i::8] for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda qs: answers(shared, qs), chunks))
        for i, chunk in enumerate(got):
            assert chunk == expected[i::8]
