"""Training examples: judged queries, a held-out dev split, and hard negatives mined by Cascade.

A training set is a BEIR-style folder (``queries.jsonl``, ``qrels/train.tsv``, optionally
``qrels/dev.tsv``) whose document ids refer to a collection Cascade has indexed: the folders
under ``../shared/datasets/training``, or one written by :mod:`cascade.train.synthetic`.

Hard negatives come from Cascade's own first stages (any pipeline string, ``bm25 % 30`` by
default): for each training query the top ``depth`` documents that are not judged relevant,
sampled as in TAS-B's balanced sampling (Hofstätter et al., "Efficiently Teaching an
Effective Dense Retriever with Balanced Topic Aware Sampling", SIGIR 2021) from across that
depth rather than only the very top, where unjudged relevant documents hide most.

>>> import cascade
>>> idx = cascade.Index.build([cascade.Doc("a", "apple pie"), cascade.Doc("b", "apple tart"),
...                            cascade.Doc("c", "car tyre")], __import__("tempfile").mkdtemp() + "/i")
>>> data = TrainingSet({"q1": "apple pie"}, {"q1": {"a": 1}})
>>> [(e.query, e.positive, e.negatives) for e in mine_examples(idx, data, negatives=1, seed=0)]
[('apple pie', 'apple pie', ('apple tart',))]
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from cascade.core.errors import CascadeError
from cascade.core.types import Qrels, Query
from cascade.data.beir import BeirDataset
from cascade.data.readers import read_jsonl_queries, read_qrels
from cascade.index.cache import cached_index
from cascade.index.index import Index
from cascade.index.segment import doc_text
from cascade.pipeline.parse import parse
from cascade.text.analyzer import Analyzer

DEFAULT_MINER = "bm25 % 30"  # the first stage whose top documents give the hard negatives
DEFAULT_NEGATIVES = 4  # hard negatives per (query, positive)
DEFAULT_DEV_FRACTION = 0.1  # of the training queries, when the folder has no qrels/dev.tsv
ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class TrainingSet:
    """Queries (id -> text) with graded judgments (query id -> doc id -> grade > 0 relevant)."""

    queries: Mapping[str, str]
    qrels: Qrels
    source: str = ""

    def ids(self) -> list[str]:
        """Ids of the queries that have at least one relevant document, in file order."""
        return [q for q in self.queries if any(g > 0 for g in self.qrels.get(q, {}).values())]

    def subset(self, ids: Sequence[str]) -> "TrainingSet":
        keep = set(ids)
        return TrainingSet({q: t for q, t in self.queries.items() if q in keep},
                           {q: j for q, j in self.qrels.items() if q in keep}, self.source)


@dataclass(frozen=True)
class Example:
    """One (query, relevant document, hard negatives) example, texts resolved."""

    query_id: str
    query: str
    positive: str
    negatives: tuple[str, ...]
    positive_id: str = ""
    negative_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Split:
    """The training queries a model learns from and the dev queries it is checked on each epoch."""

    train: TrainingSet
    dev: TrainingSet
    dev_source: str = field(default="held out")


def read_training_set(folder: str | Path, split: str = "train") -> TrainingSet:
    """Queries and ``qrels/<split>.tsv`` of a training folder (queries without judgments dropped)."""
    root = Path(folder)
    queries_file, qrels_file = root / "queries.jsonl", root / "qrels" / f"{split}.tsv"
    for needed in (queries_file, qrels_file):
        if not needed.is_file():
            raise CascadeError(f"training data {root}: {needed.relative_to(root)} is missing "
                               "(a folder with queries.jsonl and qrels/train.tsv)")
    qrels = read_qrels(qrels_file)
    queries = {q.id: q.text for q in read_jsonl_queries(queries_file) if q.id in qrels}
    if not queries:
        raise CascadeError(f"training data {root}: no query of qrels/{split}.tsv is in queries.jsonl")
    return TrainingSet(queries, {q: qrels[q] for q in queries}, str(root.resolve()))


def split_dev(folder: str | Path, *, dev_fraction: float = DEFAULT_DEV_FRACTION, seed: int = 0) -> Split:
    """The training folder's train split, with its ``qrels/dev.tsv`` as the dev split when it has
    one, else a seeded ``dev_fraction`` of the training queries held out."""
    train = read_training_set(folder, "train")
    if (Path(folder) / "qrels" / "dev.tsv").is_file():
        return Split(train, read_training_set(folder, "dev"), "qrels/dev.tsv")
    if not 0 <= dev_fraction < 1:
        raise CascadeError(f"dev_fraction must be in [0, 1) (got {dev_fraction})")
    ids = train.ids()
    random.Random(seed).shuffle(ids)
    n_dev = round(len(ids) * dev_fraction)
    if dev_fraction > 0 and n_dev == 0 and len(ids) > 1:
        n_dev = 1
    return Split(train.subset(ids[n_dev:]), train.subset(ids[:n_dev]), f"{dev_fraction:.0%} of train, seed {seed}")


def sample_queries(data: TrainingSet, limit: int | None, seed: int) -> TrainingSet:
    """At most ``limit`` of ``data``'s queries, a seeded sample (all when ``limit`` is None)."""
    ids = list(data.queries)
    if limit is None or len(ids) <= limit:
        return data
    return data.subset(random.Random(seed).sample(ids, limit))


def check_disjoint(training_ids: Sequence[str], test: Qrels | Sequence[str], what: str = "test") -> None:
    """Refuse training on a query that the collection's ``what`` split evaluates."""
    shared = sorted(set(training_ids) & set(test))
    if shared:
        raise CascadeError(f"{len(shared)} training queries are also {what} queries (e.g. {shared[:3]}); "
                           "a model must be evaluated on queries it never saw")


def mine_negatives(index: Index, data: TrainingSet, *, pipeline: str = DEFAULT_MINER) -> dict[str, list[str]]:
    """Per query, the ids ``pipeline`` ranks that are not judged relevant, best first."""
    ranker = parse(pipeline, index=index)
    queries = [Query(q, t) for q, t in data.queries.items()]
    run = ranker(queries).to_run() if queries else {}
    out = {}
    for qid, scores in run.items():
        relevant = {d for d, g in data.qrels.get(qid, {}).items() if g > 0}
        ranked = sorted(scores, key=lambda d: -scores[d])
        out[qid] = [d for d in ranked if d not in relevant]
    return out


def random_documents(index: Index, data: TrainingSet, mined: dict[str, list[str]], n: int,
                     rng: random.Random) -> dict[str, list[str]]:
    """Per query, ``n`` random documents of the collection that are neither judged relevant nor
    ranked by the miner."""
    numbers = index.allowed_numbers().tolist()
    out = {}
    for qid, ranked in mined.items():
        taken = set(ranked) | set(data.qrels.get(qid, {}))
        extra: list[str] = []
        for _ in range(20 * n):  # a collection of nearly only judged or ranked documents gives fewer
            if len(extra) == n:
                break
            doc_id = index.doc_ids([rng.choice(numbers)])[0]
            if doc_id not in taken:
                taken.add(doc_id)
                extra.append(doc_id)
        out[qid] = extra
    return out


def balanced_sample(ranked: Sequence[str], n: int, rng: random.Random) -> list[str]:
    """``n`` of ``ranked`` spread over its depth: one from each of ``n`` equal bands, in rank order."""
    if len(ranked) <= n:
        return list(ranked)
    bands = [ranked[len(ranked) * i // n: len(ranked) * (i + 1) // n] for i in range(n)]
    return [rng.choice(band) for band in bands]


def mine_examples(index: Index, data: TrainingSet, *, negatives: int = DEFAULT_NEGATIVES,
                  pipeline: str = DEFAULT_MINER, random_negatives: int = 0, seed: int = 0) -> list[Example]:
    """One example per (query, relevant document) with ``negatives`` negatives each, the last
    ``random_negatives`` of them drawn from the whole collection (easy ones, which give a new
    model's head a first signal) and the rest mined hard negatives; judged documents the index
    lacks are skipped (and so are queries left with none)."""
    if negatives < 1 or not 0 <= random_negatives <= negatives:
        raise CascadeError(f"negatives must be at least 1 and random_negatives between 0 and negatives "
                           f"(got {negatives} and {random_negatives})")
    rng = random.Random(seed)
    mined = mine_negatives(index, data, pipeline=pipeline)
    easy = random_documents(index, data, mined, random_negatives, rng) if random_negatives else {}
    wanted = {d for j in data.qrels.values() for d in j} | {d for ds in (*mined.values(), *easy.values()) for d in ds}
    texts = {d: doc_text(doc, index.fields) for d, doc in zip(sorted(wanted), index.docs_by_id(sorted(wanted)))
             if doc is not None}
    examples = []
    for qid, query in data.queries.items():
        pool = [d for d in mined.get(qid, []) if d in texts]
        extra = [d for d in easy.get(qid, []) if d in texts]
        if not pool and not extra:
            continue
        for doc_id, grade in sorted(data.qrels.get(qid, {}).items()):
            if grade <= 0 or doc_id not in texts:
                continue
            picked = balanced_sample(pool, negatives - len(extra), rng) + extra
            examples.append(Example(qid, query, texts[doc_id], tuple(texts[d] for d in picked),
                                    doc_id, tuple(picked)))
    if not examples:
        raise CascadeError(f"no training example: none of the judged documents of {data.source or 'the training set'} "
                           "is in the index (is it the collection the training data belongs to?)")
    return examples


def cap(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    """At most ``limit`` examples, a seeded sample (all when ``limit`` is None)."""
    if limit is None or len(examples) <= limit:
        return examples
    return random.Random(seed).sample(examples, limit)


Margins = Mapping[tuple[str, str, str], float]  # (query id, positive id, negative id) -> teacher margin


def pair_rows(examples: Sequence[Example]) -> dict[str, list[Any]]:
    """Columns (query, document, label) of pointwise pairs: each positive (1) and its negatives (0)."""
    rows: dict[str, list[Any]] = {"query": [], "document": [], "label": []}
    for e in examples:
        for text, label in ((e.positive, 1.0), *((n, 0.0) for n in e.negatives)):
            rows["query"].append(e.query)
            rows["document"].append(text)
            rows["label"].append(label)
    return rows


def triplet_rows(examples: Sequence[Example]) -> dict[str, list[str]]:
    """Columns (query, positive, negative_1 .. negative_n) for contrastive losses, n the most
    negatives any example has; an example with fewer repeats its own (a shallow first stage
    found no more)."""
    n = max(len(e.negatives) for e in examples)
    rows: dict[str, list[str]] = {"query": [e.query for e in examples], "positive": [e.positive for e in examples]}
    for i in range(n):
        rows[f"negative_{i + 1}"] = [e.negatives[i % len(e.negatives)] for e in examples]
    return rows


def margin_rows(examples: Sequence[Example], margins: Margins) -> dict[str, list[Any]]:
    """Columns (query, positive, negative, label = teacher margin) for MarginMSE, one row per
    (example, negative) the teacher scored."""
    rows: dict[str, list[Any]] = {"query": [], "positive": [], "negative": [], "label": []}
    for e in examples:
        for neg_id, neg in zip(e.negative_ids, e.negatives):
            key = (e.query_id, e.positive_id, neg_id)
            if key in margins:
                rows["query"].append(e.query)
                rows["positive"].append(e.positive)
                rows["negative"].append(neg)
                rows["label"].append(float(margins[key]))
    if not rows["query"]:
        raise CascadeError("the teacher scored none of the training pairs")
    return rows


def collection_index(dataset: str | Path, progress: Callable[[int], None] | None = None) -> Index:
    """The index of a BEIR dataset directory's corpus, from the eval index cache (built on first
    use with the default analyzer, as ``cascade eval`` does)."""
    ds = BeirDataset(dataset)
    index, _, _ = cached_index(ds.name, ds.content_hash(), ds.corpus, analyzer=Analyzer(), progress=progress)
    return index


def judged_test_queries(dataset: str | Path) -> list[str]:
    """Ids of the queries a dataset's ``qrels/test.tsv`` judges (none without that file)."""
    path = Path(dataset) / "qrels" / "test.tsv"
    return sorted(read_qrels(path)) if path.is_file() else []
