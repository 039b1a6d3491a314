"""Synthetic training queries: an LLM writes a query for each document, a first stage checks it.

The recipe of InPars (Bonifacio et al., "InPars: Data Augmentation for Information Retrieval
using Large Language Models", 2022) and Promptagator (Dai et al., "Promptagator: Few-shot
Dense Retrieval From 8 Examples", 2022): sample documents of the corpus, prompt a language
model with a few (document, query) examples and the document, keep the query it writes, and
keep only queries for which retrieval is *consistent* (Promptagator's round-trip filter): the
first stage, searching with the query, finds its source document in its top ``depth``. The
pairs are written as a BEIR training split (``queries.jsonl``, ``qrels/train.tsv``) that
Cascade's trainers read like any human-labelled one.

The prompt is ``prompts/synthetic_query.txt`` (three example pairs written for Cascade, in no
one's domain; field ``{document}``), or a user's template file with that field. A backend
from :func:`cascade.llm.open_backend` goes through the persistent call cache, so a rerun
with the same documents, prompt and settings costs no model time.

Cleaning (:func:`clean_query`, :func:`check_query`): the first line with text is the answer,
skipping preface lines that end in a colon ("Here is a query:"); list marks (``-``, ``*``,
``1.``), labels (``Query:``, ``Search query 2:``, ``Q:``, ``Question -``) and surrounding
quotes or backticks are stripped, whitespace collapsed. A query is then dropped when it is
``empty`` (no letter or digit), ``too_long`` (more than 40 words), a ``copy`` (its longest
run of consecutive words found verbatim in the prompt the model saw, the document or the
examples, is at least 5 words long and covers more than 80% of its words: a copied sentence,
not a query; small models often echo an example), or a ``duplicate`` of an earlier query of
the same document (case-insensitive).

>>> import tempfile, pathlib, cascade
>>> from cascade.llm.testing import EchoBackend
>>> docs = [cascade.Doc(f"d{i}", f"{topic} " + "filler words about the topic " * 5)
...         for i, topic in enumerate(["honey bees make honey from nectar", "volcanoes erupt molten rock"])]
>>> index = cascade.Index.build(docs, pathlib.Path(tempfile.mkdtemp()) / "i")
>>> llm = EchoBackend(answer=lambda p: 'Query: "how do bees make honey"' if "bees make" in p.split("Document:")[-1]
...                   else "Query: best pizza in town")
>>> report = synthesize(index, llm, pathlib.Path(tempfile.mkdtemp()) / "syn", n_docs=2)
>>> report.generated, report.cleaned, report.kept
(2, 2, 1)
>>> (report.out_dir / "queries.jsonl").read_text()
'{"_id": "syn-0", "text": "how do bees make honey"}\\n'
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cascade.core.errors import CascadeError
from cascade.core.types import Doc, Query
from cascade.index.fsutil import atomic_write_bytes
from cascade.llm.base import Generation, Usage
from cascade.llm.prompting import clip, digest, fill
from cascade.llm.prompting import template as read_template

if TYPE_CHECKING:
    from cascade.core.nodes import Pipeline
    from cascade.index.index import Index
    from cascade.llm.backend import Backend

__all__ = ["SyntheticQuery", "SynthesisReport", "clean_query", "check_query", "generate_queries", "tally",
           "consistent", "sample_documents", "write_training_set", "synthesize"]

PREFIX = "syn-"  # synthetic query ids start with it, so they never collide with a dataset's own
MIN_DOC_WORDS = 20  # documents with fewer words (title and text) are not sampled: too little to ask about
MAX_QUERY_WORDS = 40
COPY_RUN, COPY_SHARE = 5, 0.8  # a run of >= 5 words copied verbatim covering > 80% of the query is a copy
MAX_DOC_WORDS = 200  # words of a document shown to the model
BATCH = 8  # prompts per backend call (progress is reported per batch)
SAMPLED_TEMPERATURE = 0.8  # per_doc > 1 samples (Promptagator); one query per document is greedy (InPars)
ProgressFn = Callable[[int, int], None]

_LABEL = r"(?:(?:relevant|search|synthetic|generated|example|possible)\s+)?(?:query|question|q)(?:\s*\d+)?"
_PREFIX = re.compile(rf"^\s*(?:[-*•>#]+\s*|\d+[.)]\s+|{_LABEL}\s*[:：]\s*|{_LABEL}\s+[-–—]\s+)", re.I)
_QUOTES = "\"'`“”‘’«»„ "
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class SyntheticQuery:
    """One generated query for document ``doc_id``; ``reason`` is why cleaning dropped it
    (``empty``, ``too_long``, ``copy``, ``duplicate``), empty when it is kept (``ok``);
    ``generation`` is the model's raw answer and what it cost."""

    query_id: str
    text: str
    doc_id: str
    reason: str = ""
    generation: Generation | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return not self.reason


@dataclass
class SynthesisReport:
    """What :func:`synthesize` did: documents sampled, queries generated, kept after cleaning
    (``cleaned``) and after the consistency filter (``kept``), drops by reason, the backend's
    usage for this run and the wall-clock seconds."""

    out_dir: Path
    model: str
    documents: int = 0
    generated: int = 0
    cleaned: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The report as a plain dict (JSON-ready)."""
        return {"out_dir": str(self.out_dir), "model": self.model, "documents": self.documents,
                "generated": self.generated, "cleaned": self.cleaned, "kept": self.kept,
                "dropped": dict(self.dropped), "usage": self.usage.as_dict(), "seconds": round(self.seconds, 3)}


# ---------------------------------------------------------------- cleaning

def clean_query(raw: str) -> str:
    """The query in a model's answer (see the module docstring for the rules).

    >>> [clean_query(t) for t in ['Query: "how do bees fly"', "Here is a query:\\n1. rust borrow checker", "  "]]
    ['how do bees fly', 'rust borrow checker', '']
    """
    lines = [line.strip() for line in raw.splitlines() if _WORD.search(line)]
    while len(lines) > 1 and lines[0].endswith((":", "：")):
        lines.pop(0)
    text = lines[0] if lines else ""
    for _ in range(6):  # labels inside quotes, quotes inside labels, markdown bold around labels
        before = text
        text = _PREFIX.sub("", text).strip(_QUOTES + "*_")
        if text == before:
            break
    return " ".join(text.split())


def _longest_run(query: list[str], doc: list[str]) -> int:
    """Length of the longest run of consecutive query words found consecutively in ``doc``."""
    best, prev = 0, [0] * (len(query) + 1)
    for token in doc:
        cur = [0] * (len(query) + 1)
        for j, word in enumerate(query):
            if word == token:
                cur[j + 1] = prev[j] + 1
                best = max(best, cur[j + 1])
        prev = cur
    return best


def check_query(text: str, shown: str) -> str:
    """Why a cleaned query is dropped (``empty``, ``too_long``, ``copy`` of ``shown``, the text
    the model was shown), or ``""`` to keep it.

    >>> doc = "The Eiffel Tower was built between 1887 and 1889 as the entrance arch of the fair."
    >>> [check_query(q, doc) for q in ["when was the eiffel tower built", "built between 1887 and 1889 as the", ""]]
    ['', 'copy', 'empty']
    """
    words = _WORD.findall(text.lower())
    if not words:
        return "empty"
    if len(text.split()) > MAX_QUERY_WORDS:
        return "too_long"
    run = _longest_run(words, _WORD.findall(shown.lower()))
    if run >= COPY_RUN and run > COPY_SHARE * len(words):
        return "copy"
    return ""


# ---------------------------------------------------------------- generating

def doc_text(doc: Doc, max_words: int = MAX_DOC_WORDS) -> str:
    """The document as the model sees it: title and text, whitespace collapsed, cut to ``max_words``."""
    return clip(" ".join(part for part in (doc.title, doc.text) if part), max_words)


def load_template(override: str | Path | None = None) -> str:
    """The shipped prompt, or the file at ``override``; it must hold the ``{document}`` field."""
    text = read_template("synthetic_query", str(override) if override else None, package="cascade.train")
    if "{document}" not in text:
        raise CascadeError(f"prompt template {override} lacks the {{document}} field")
    return text


def generate_queries(backend: Backend, docs: Sequence[Doc], *, per_doc: int = 1, template: str | Path | None = None,
                     max_tokens: int = 48, seed: int = 0, progress: ProgressFn | None = None) -> list[SyntheticQuery]:
    """``per_doc`` queries per document from ``backend``, cleaned and checked; every generation
    is returned, dropped ones with their ``reason``. Query ``syn-<n>`` is the n-th generation
    (document order, then ``per_doc`` order). One query per document is greedy (InPars);
    more are sampled at temperature 0.8 with seeds ``seed``, ``seed + 1``, ... (Promptagator).
    ``template`` is a prompt file used instead of the shipped one; ``progress(done, total)``.

    >>> from cascade.llm.testing import EchoBackend
    >>> qs = generate_queries(EchoBackend(answer=lambda p: "Query: what is x"), [Doc("a", "x is a letter")])
    >>> qs, tally(qs).calls
    ([SyntheticQuery(query_id='syn-0', text='what is x', doc_id='a', reason='')], 1)
    """
    if per_doc < 1:
        raise CascadeError(f"per_doc must be at least 1, got {per_doc}")
    if max_tokens < 1:
        raise CascadeError(f"max_tokens must be at least 1, got {max_tokens}")
    prompt = load_template(template)
    prompts = [fill(prompt, document=doc_text(d)) for d in docs]
    temperature = 0.0 if per_doc == 1 else SAMPLED_TEMPERATURE
    answers: list[list[Generation]] = [[] for _ in docs]
    total, done = len(docs) * per_doc, 0
    for j in range(per_doc):
        for start in range(0, len(prompts), BATCH):
            gens = backend.generate(prompts[start:start + BATCH], max_tokens=max_tokens, temperature=temperature,
                                    seed=seed + j)
            for i, gen in enumerate(gens, start):
                answers[i].append(gen)
            done += len(gens)
            if progress is not None:
                progress(done, total)
    out: list[SyntheticQuery] = []
    for doc, text, gens in zip(docs, prompts, answers):
        seen: set[str] = set()
        for gen in gens:
            query = clean_query(gen.text)
            reason = check_query(query, text) or ("duplicate" if query.casefold() in seen else "")
            seen.add(query.casefold())
            out.append(SyntheticQuery(f"{PREFIX}{len(out)}", query, doc.id, reason, gen))
    return out


def tally(queries: Iterable[SyntheticQuery]) -> Usage:
    """Calls, cached calls, tokens and model seconds of the generations behind ``queries``."""
    usage = Usage()
    for q in queries:
        if q.generation is not None:
            usage.add(q.generation)
    return usage


# ---------------------------------------------------------------- filtering and sampling

def consistent(index: Index, queries: Sequence[SyntheticQuery], *, pipeline: str | Pipeline = "bm25",
               depth: int = 20) -> list[SyntheticQuery]:
    """The kept (``ok``) queries whose source document ``pipeline`` (a pipeline string over
    ``index``, or a built pipeline) ranks in its top ``depth``; all queries run in one batch.

    >>> import tempfile, pathlib, cascade
    >>> index = cascade.Index.build([Doc("a", "apples are red"), Doc("b", "the sky is blue")],
    ...                             pathlib.Path(tempfile.mkdtemp()) / "i")
    >>> qs = [SyntheticQuery("syn-0", "red apples", "a"), SyntheticQuery("syn-1", "red apples", "b")]
    >>> [q.query_id for q in consistent(index, qs)]
    ['syn-0']
    """
    if depth < 1:
        raise CascadeError(f"depth must be at least 1, got {depth}")
    node = _pipeline(index, pipeline)
    todo = [q for q in queries if q.ok]
    if not todo:
        return []
    run = (node % depth)([Query(q.query_id, q.text) for q in todo]).to_run()
    return [q for q in todo if q.doc_id in run.get(q.query_id, {})]


def _pipeline(index: Index, pipeline: str | Pipeline) -> Pipeline:
    if not isinstance(pipeline, str):
        return pipeline
    from cascade.pipeline.parse import parse

    return parse(pipeline, index=index, passages=True)  # results are the index's own doc ids


def sample_documents(index: Index, n: int, seed: int = 0) -> list[Doc]:
    """Up to ``n`` live documents of ``index`` drawn at random, each with at least 20 words of
    title and text (fewer when the index has fewer such documents). The same index snapshot
    and ``seed`` give the same sample.

    >>> import tempfile, pathlib, cascade
    >>> index = cascade.Index.build([Doc(str(i), "word " * (10 + i)) for i in range(20)],
    ...                             pathlib.Path(tempfile.mkdtemp()) / "i")
    >>> len(sample_documents(index, 100, seed=1)), sample_documents(index, 3, 7) == sample_documents(index, 3, 7)
    (10, True)
    """
    if n < 1:
        raise CascadeError(f"the number of documents to sample must be at least 1, got {n}")
    if index.n_docs == 0:
        raise CascadeError(f"index {index.path} holds no documents")
    order = np.random.default_rng(seed).permutation(index.allowed_numbers())
    out: list[Doc] = []
    step = max(2 * n, 64)
    for start in range(0, len(order), step):
        out += [d for d in index.docs(order[start:start + step]) if len(f"{d.title} {d.text}".split()) >= MIN_DOC_WORDS]
        if len(out) >= n:
            break
    return out[:n]


# ---------------------------------------------------------------- writing

def write_training_set(queries: Iterable[SyntheticQuery], out_dir: str | Path, *,
                       about: Mapping[str, object] | None = None) -> Path:
    """Write the kept queries as a BEIR training split: ``out_dir/queries.jsonl``
    (``{"_id", "text"}``), ``out_dir/qrels/train.tsv`` (header, then ``query-id corpus-id 1``)
    and ``SOURCE.txt`` (counts and the lines of ``about``: model, prompt, filter...). Each file
    is written whole to a temporary name and renamed into place. Ids lacking the ``syn-``
    prefix get it."""
    out = Path(out_dir)
    kept = [q for q in queries if q.ok]
    ids = [q.query_id if q.query_id.startswith(PREFIX) else PREFIX + q.query_id for q in kept]
    if len(set(ids)) != len(ids):
        raise CascadeError("synthetic query ids must be unique")
    bad = next((q.doc_id for q in kept if not q.doc_id or len(q.doc_id.split()) != 1), None)
    if bad is not None:
        raise CascadeError(f"document id {bad!r} cannot be written to a qrels TSV file (empty or holds whitespace)")
    _make_dirs(out)
    lines = "".join(json.dumps({"_id": i, "text": q.text}) + "\n" for i, q in zip(ids, kept))
    atomic_write_bytes(out / "queries.jsonl", lines.encode("utf-8"))
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(f"{i}\t{q.doc_id}\t1\n" for i, q in zip(ids, kept))
    atomic_write_bytes(out / "qrels" / "train.tsv", qrels.encode("utf-8"))
    atomic_write_bytes(out / "SOURCE.txt", _source(len(kept), len({q.doc_id for q in kept}), about).encode("utf-8"))
    return out


def _make_dirs(out: Path) -> None:
    for folder in (out, out / "qrels"):
        if folder.exists() and not folder.is_dir():
            raise CascadeError(f"{folder} is a file; give a directory for the training set")
    try:
        (out / "qrels").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CascadeError(f"cannot create {out / 'qrels'}: {err.strerror or err}") from None


def _source(n_queries: int, n_docs: int, about: Mapping[str, object] | None) -> str:
    rows = [("queries.jsonl", f'{n_queries} {{"_id","text"}}, ids prefixed "{PREFIX}"'),
            ("qrels/train.tsv", f"{n_queries} pairs (+ header), {n_docs} documents, all score 1"),
            *((str(k), str(v)) for k, v in (about or {}).items())]
    width = max(len(k) for k, _ in rows)
    return ("Synthetic training queries (InPars / Promptagator recipe), written by cascade.train.synthetic.\n\n"
            + "".join(f"{k.ljust(width)} : {v}\n" for k, v in rows))


# ---------------------------------------------------------------- all together

def synthesize(index: Index, backend: Backend, out_dir: str | Path, *, n_docs: int, per_doc: int = 1,
               pipeline: str | Pipeline = "bm25", depth: int = 20, seed: int = 0, template: str | Path | None = None,
               max_tokens: int = 48, progress: ProgressFn | None = None) -> SynthesisReport:
    """Sample ``n_docs`` documents, generate ``per_doc`` queries each, clean them, keep those
    ``pipeline`` finds their document for in its top ``depth``, and write the training set to
    ``out_dir`` (see :func:`write_training_set`)."""
    start = time.perf_counter()
    out = Path(out_dir)
    if n_docs < 1:
        raise CascadeError(f"n_docs must be at least 1, got {n_docs}")
    if out.exists() and not out.is_dir():
        raise CascadeError(f"{out} is a file; give a directory for the training set")
    prompt = load_template(template)  # mistakes in the prompt, pipeline or depth before any model time
    node = _pipeline(index, pipeline)
    if depth < 1:
        raise CascadeError(f"depth must be at least 1, got {depth}")
    docs = sample_documents(index, n_docs, seed)
    if not docs:
        raise CascadeError(f"no document of index {index.path} has at least {MIN_DOC_WORDS} words")
    generated = generate_queries(backend, docs, per_doc=per_doc, template=template, max_tokens=max_tokens,
                                 seed=seed, progress=progress)
    kept = consistent(index, generated, pipeline=node, depth=depth)
    report = SynthesisReport(out, f"{backend.name}:{backend.model}", documents=len(docs), generated=len(generated),
                             cleaned=sum(q.ok for q in generated), kept=len(kept), usage=tally(generated))
    for q in generated:
        if not q.ok:
            report.dropped[q.reason] = report.dropped.get(q.reason, 0) + 1
    report.dropped["inconsistent"] = report.cleaned - report.kept
    about = {"model": report.model,
             "prompt": f"{template or 'built-in synthetic_query.txt'} (blake2b {digest(prompt)})",
             "generation": f"{per_doc} per document, max_tokens {max_tokens}, seed {seed}",
             "documents": f"{len(docs)} sampled (seed {seed}, >= {MIN_DOC_WORDS} words) of {index.path}",
             "filter": f"source document in the top {depth} of the pipeline {str(pipeline)!r}",
             "counts": f"{report.generated} generated, {report.cleaned} after cleaning, {report.kept} after the filter",
             "dropped": ", ".join(f"{k} {v}" for k, v in sorted(report.dropped.items())),
             "usage": json.dumps(report.usage.as_dict())}
    write_training_set(kept, out, about=about)
    report.seconds = time.perf_counter() - start
    return report
