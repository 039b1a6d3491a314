"""A synthetic corpus for speed benchmarks: Zipfian words, deterministic, generated in chunks.

    python bench/synthetic.py OUT_DIR --docs 1000000 [--queries 1000] [--seed 42]

writes OUT_DIR/corpus.jsonl and OUT_DIR/queries.jsonl (BEIR layout, no qrels) for inspection;
bench/sparse.py calls :func:`generate` directly (``--synthetic N``).

Words are ``w0``, ``w1``, ... in frequency-rank order, drawn with probability proportional to
1 / (rank + 1) ** 1.1 over a 200,000-word vocabulary. Document lengths are Poisson(60), at least
5 tokens. Queries have 2 to 6 distinct words drawn from the same distribution with the 100 most
frequent words left out, so they look like real queries rather than strings of stopwords.
Queries depend only on the seed and the vocabulary, not on the number of documents.

Documents are produced a chunk at a time (token ids drawn in one numpy array per chunk), so
only one chunk of documents is held as Python strings at once.

>>> docs, queries = generate(3, n_queries=2, vocab=1000)
>>> [doc_id for doc_id, _ in docs], [qid for qid, _ in queries]
(['d0', 'd1', 'd2'], ['q0', 'q1'])
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

VOCAB_SIZE = 200_000
ZIPF_EXPONENT = 1.1
MEAN_DOC_LENGTH = 60
MIN_DOC_LENGTH = 5
QUERY_TERMS = (2, 6)
QUERY_SKIP_TOP = 100
CHUNK_DOCS = 20_000


def _vocabulary(vocab: int | Sequence[str]) -> np.ndarray:
    words = [f"w{i}" for i in range(vocab)] if isinstance(vocab, int) else list(vocab)
    if len(words) <= QUERY_SKIP_TOP:
        raise ValueError(f"the vocabulary needs more than {QUERY_SKIP_TOP} words (got {len(words)})")
    return np.array(words, dtype=object)


def _cdf(n_words: int, skip: int = 0) -> np.ndarray:
    """Cumulative Zipf probabilities of ranks skip..n_words-1, normalised to end at 1."""
    weights = 1.0 / np.arange(skip + 1, n_words + 1, dtype=np.float64) ** ZIPF_EXPONENT
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _draw(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    """``size`` ranks (0-based) drawn from the distribution with cumulative ``cdf``."""
    ranks = np.searchsorted(cdf, rng.random(size), side="right")
    return np.minimum(ranks, len(cdf) - 1)


def _docs(n_docs: int, words: np.ndarray, rng: np.random.Generator, chunk: int) -> Iterator[tuple[str, str]]:
    cdf = _cdf(len(words))
    for start in range(0, n_docs, chunk):
        n = min(chunk, n_docs - start)
        # Lengths for a whole chunk even when fewer are needed, so that a smaller collection is
        # a prefix of a larger one with the same seed.
        lengths = np.maximum(rng.poisson(MEAN_DOC_LENGTH, chunk), MIN_DOC_LENGTH)[:n]
        ends = np.cumsum(lengths)
        tokens = words[_draw(rng, cdf, int(ends[-1]))].tolist()
        begin = 0
        for i, end in enumerate(ends.tolist()):
            yield f"d{start + i}", " ".join(tokens[begin:end])
            begin = end


def _queries(n_queries: int, words: np.ndarray, rng: np.random.Generator) -> list[tuple[str, str]]:
    cdf = _cdf(len(words), skip=QUERY_SKIP_TOP)
    lo, hi = QUERY_TERMS
    lengths = rng.integers(lo, hi + 1, n_queries)
    queries = []
    for i, length in enumerate(lengths.tolist()):
        chosen: list[int] = []
        while len(chosen) < length:  # distinct words; a redraw is rare
            for rank in _draw(rng, cdf, length - len(chosen)).tolist():
                if rank not in chosen and len(chosen) < length:
                    chosen.append(rank)
        queries.append((f"q{i}", " ".join(words[QUERY_SKIP_TOP + np.array(chosen)].tolist())))
    return queries


def generate(n_docs: int, n_queries: int = 1000, seed: int = 42, vocab: int | Sequence[str] = VOCAB_SIZE
             ) -> tuple[Iterator[tuple[str, str]], list[tuple[str, str]]]:
    """(lazy iterator of (doc_id, text), list of (query_id, text)), the same for the same arguments.

    ``vocab`` is a vocabulary size (words ``w0``, ``w1``, ...) or the words themselves, most
    frequent first. Documents are generated CHUNK_DOCS at a time as the iterator is consumed;
    the first n documents are the same whatever ``n_docs`` is.
    """
    if n_docs < 0 or n_queries < 0:
        raise ValueError("n_docs and n_queries must be non-negative")
    words = _vocabulary(vocab)
    doc_seed, query_seed = np.random.SeedSequence(seed).spawn(2)
    doc_rng = np.random.default_rng(doc_seed)
    queries = _queries(n_queries, words, np.random.default_rng(query_seed))
    return _docs(n_docs, words, doc_rng, CHUNK_DOCS), queries


def write_beir(out: Path, n_docs: int, n_queries: int = 1000, seed: int = 42) -> None:
    """Write the synthetic collection as OUT/corpus.jsonl and OUT/queries.jsonl."""
    docs, queries = generate(n_docs, n_queries, seed)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
        for doc_id, text in docs:
            f.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    with open(out / "queries.jsonl", "w", encoding="utf-8") as f:
        for qid, text in queries:
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="directory to write corpus.jsonl and queries.jsonl into")
    parser.add_argument("--docs", type=int, required=True, help="number of documents")
    parser.add_argument("--queries", type=int, default=1000, help="number of queries (default 1000)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    write_beir(args.out, args.docs, args.queries, args.seed)
    print(f"wrote {args.docs} documents and {args.queries} queries to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
