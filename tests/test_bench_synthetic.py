"""bench/synthetic.py: the benchmark corpus generator is deterministic and has the asked-for shape."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "synthetic.py"


@pytest.fixture(scope="module")
def synthetic():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_synthetic", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_same_seed_same_collection(synthetic) -> None:  # type: ignore[no-untyped-def]
    docs_a, queries_a = synthetic.generate(300, n_queries=20, seed=7)
    docs_b, queries_b = synthetic.generate(300, n_queries=20, seed=7)
    assert list(docs_a) == list(docs_b)
    assert queries_a == queries_b
    docs_c, queries_c = synthetic.generate(300, n_queries=20, seed=8)
    assert list(docs_c) != list(synthetic.generate(300, n_queries=20, seed=7)[0])
    assert queries_c != queries_a


def test_shape(synthetic) -> None:  # type: ignore[no-untyped-def]
    docs, queries = synthetic.generate(2000, n_queries=300, vocab=5000)
    docs = list(docs)
    assert [d for d, _ in docs] == [f"d{i}" for i in range(2000)]
    assert [q for q, _ in queries] == [f"q{i}" for i in range(300)]
    lengths = [len(text.split()) for _, text in docs]
    assert min(lengths) >= 5
    assert 55 < sum(lengths) / len(lengths) < 65
    words = [w for _, text in docs for w in text.split()]
    assert all(w.startswith("w") and int(w[1:]) < 5000 for w in words)
    assert words.count("w0") > words.count("w50") > 0  # Zipf: the rank-0 word is the most frequent
    for _, text in queries:
        terms = text.split()
        assert 2 <= len(terms) <= 6 and len(set(terms)) == len(terms)
        assert all(int(t[1:]) >= 100 for t in terms)  # the most frequent words are left out


def test_streams_and_prefix(synthetic) -> None:  # type: ignore[no-untyped-def]
    docs, _ = synthetic.generate(10**9, n_queries=0)  # lazy: nothing generated until consumed
    first = [next(docs) for _ in range(3)]
    assert first == list(synthetic.generate(3, n_queries=0)[0])
    assert synthetic.generate(10, n_queries=5)[1] == synthetic.generate(50, n_queries=5)[1]


def test_cli_writes_beir(synthetic, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert synthetic.main([str(tmp_path / "syn"), "--docs", "50", "--queries", "4"]) == 0
    corpus = [json.loads(line) for line in (tmp_path / "syn" / "corpus.jsonl").read_text().splitlines()]
    queries = [json.loads(line) for line in (tmp_path / "syn" / "queries.jsonl").read_text().splitlines()]
    assert len(corpus) == 50 and set(corpus[0]) == {"_id", "title", "text"}
    assert len(queries) == 4 and set(queries[0]) == {"_id", "text"}
