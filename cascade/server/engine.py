"""The server's index: immutable snapshots for readers, one writer, pipelines per snapshot.

Every request takes the current snapshot once (one attribute read) and does all its work on
it, so it never sees a half-applied write. Writes go through one lock (and the index's own
``flock`` against other processes); after each commit the engine moves to the new snapshot.
Commits by other processes are picked up at most ``refresh_interval_s`` later. Nothing here
imports FastAPI: the engine is plain Python, tested and benchmarked on its own too.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

from cascade.core.candidates import Candidates
from cascade.core.errors import CascadeError, NotOffered
from cascade.core.executor import Executor
from cascade.core.nodes import Pipeline
from cascade.core.registry import Context, stage_names
from cascade.core.types import Doc, Query
from cascade.data.wire import candidates_to_wire
from cascade.index.index import Index
from cascade.index.representations import no_encoding
from cascade.llm.llama_cpp import NAMED as NAMED_GGUF
from cascade.models.resolve import ALIASES
from cascade.pipeline import builtins
from cascade.pipeline.parse import parse
from cascade.retrieve.bm25 import BM25
from cascade.server.config import ServerConfig
from cascade.text.highlight import snippet

SERVER_FILES = ("path", "prompt")  # stage parameters naming a file on the server's disk
PIPELINE_CACHE = 32  # parsed pipelines kept (per snapshot version and string)


class LimitError(CascadeError):
    """A request over one of the server's limits (answered 400 or 413)."""


@dataclass
class SearchRequest:
    """One or more queries, searched with one pipeline (``None``: BM25) on one snapshot."""

    queries: list[Query]
    k: int = 10
    offset: int = 0
    pipeline: str | None = None
    where: str | None = None
    highlight: bool = True
    format: str = "cascade"  # or "wire": the Pyserini / rank_llm / UMBRELA candidate format


@dataclass
class WriteResult:
    generation: int
    added: int = 0
    replaced: int = 0
    deleted: int = 0
    ids: list[str] = field(default_factory=list)


NOT_ENCODED = ("the server does not encode a collection during a request; store it once with "
               "`cascade encode INDEX --model MODEL` (the running server picks up that commit), then search again")


def short_version(snap: Index) -> str:
    """A short name of the snapshot's exact content: its generation and a digest of its version key."""
    return f"g{snap.generation}-{hashlib.blake2b(snap.version.encode(), digest_size=8).hexdigest()}"


def count_nodes(node: Pipeline) -> int:
    """Stages and operators of a pipeline tree."""
    return 1 + sum(count_nodes(c) for c in node.children())


class Engine:
    """Snapshots, pipelines and writes of one index directory."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.path = config.index
        self._snapshot = Index.open(self.path)
        self._checked = time.monotonic()
        self._refresh_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pipe_lock = threading.Lock()
        self._pipelines: OrderedDict[tuple[str, str], Pipeline] = OrderedDict()
        self._building: dict[tuple[str, str], threading.Lock] = {}
        self.models = frozenset(ALIASES) | {f"llama-cpp:{name}" for name in NAMED_GGUF} | set(config.models)

    # -- snapshots --------------------------------------------------------------------------

    def snapshot(self) -> Index:
        """The newest snapshot this process knows; looks for other processes' commits at most
        every ``refresh_interval_s``."""
        if time.monotonic() - self._checked >= self.config.refresh_interval_s:
            self.refresh()
        return self._snapshot

    def refresh(self) -> Index:
        """Move to the newest commit (the same snapshot when there is none)."""
        with self._refresh_lock:
            self._checked = time.monotonic()
            newer = self._snapshot.refresh()
            if newer is not self._snapshot:
                self._snapshot = newer
        return self._snapshot

    # -- pipelines --------------------------------------------------------------------------

    def pipeline(self, snap: Index, text: str | None, where: str | None) -> Pipeline:
        """The compiled pipeline for ``text`` on ``snap`` (BM25 with ``where`` when ``text`` is
        None); built once per snapshot and warmed up (models loaded, encodings made) under a lock,
        so concurrent first requests do that work once."""
        if text is not None and where is not None:
            raise CascadeError('with a pipeline, give the filter to its first stage: e.g. bm25(where="year >= 2020")')
        key = (snap.version, text if text is not None else f"\0bm25\0{where}")
        with self._pipe_lock:
            found = self._pipelines.get(key)
            if found is not None:
                self._pipelines.move_to_end(key)
                return found
            building = self._building.setdefault(key, threading.Lock())
        with building:  # one builder per pipeline; others (another pipeline, a cached one) go on
            with self._pipe_lock:
                found = self._pipelines.get(key)
            if found is None:
                try:
                    found = self._build(snap, text, where)
                finally:  # built or failed: nothing waits on this lock any more but those holding it
                    with self._pipe_lock:
                        self._building.pop(key, None)
                with self._pipe_lock:
                    self._pipelines[key] = found
                    while len(self._pipelines) > PIPELINE_CACHE:
                        self._pipelines.popitem(last=False)
            return found

    def _build(self, snap: Index, text: str | None, where: str | None) -> Pipeline:
        limits = self.config.limits
        if text is None:
            node: Pipeline = BM25(snap, where=where)
        else:
            ctx = Context.of(index=snap)
            ctx.check_arguments = self._check_arguments
            node = parse(text, ctx)
            if count_nodes(node) > limits.max_pipeline_nodes:
                raise LimitError(f"pipeline too complex: {count_nodes(node)} nodes (limit {limits.max_pipeline_nodes})")
        node = node.compile()
        with no_encoding(NOT_ENCODED):
            Executor().run(node, [Query("warm-up", "warm up")])  # preparation outside any request's clock
        return node

    def _check_arguments(self, stage: str, params: dict[str, Any]) -> None:
        """What a client may write in a pipeline: no file on the server (``run(path)``,
        ``prompt=``), and as ``model=`` only the built-in aliases and what the operator allowed."""
        for name in SERVER_FILES:
            if name in params:
                raise NotOffered(f"{stage}: {name}= names a file on the server; not offered over HTTP")
        model = params.get("model")
        if model is not None and model not in self.models:
            raise NotOffered(f"{stage}: model {model!r} is not offered by this server (offered: "
                             f"{', '.join(sorted(self.models))}); its operator can add one with "
                             "`cascade serve --allow-model`")

    # -- searching --------------------------------------------------------------------------

    def search(self, req: SearchRequest) -> dict[str, Any]:
        """Hits (or wire-format requests) for every query of ``req`` on one snapshot."""
        snap = self.snapshot()
        node = self.pipeline(snap, req.pipeline, req.where)
        depth = req.offset + req.k
        executor = Executor()
        start = time.perf_counter()
        with no_encoding(NOT_ENCODED):
            cands = executor.run((node % depth).compile(), req.queries)
        seconds = time.perf_counter() - start
        stages = [{"stage": r.label, "ms": round(r.seconds * 1000, 3)} for r in executor.records.values()]
        base = {"generation": snap.generation, "version": short_version(snap), "pipeline": req.pipeline or "bm25",
                "ms": round(seconds * 1000, 3), "stages": stages}
        if req.format == "wire":
            window = _window(cands, req.offset)
            return {**base, "requests": candidates_to_wire(req.queries, window, snap.docs_by_id, req.k)}
        results = [self._hits(snap, cands, i, q, req) for i, q in enumerate(req.queries)]
        return {**base, "results": results}

    def _hits(self, snap: Index, cands: Any, i: int, query: Query, req: SearchRequest) -> dict[str, Any]:
        hits = cands.hits(i, source=snap)[req.offset:req.offset + req.k]
        rows = []
        for h in hits:
            row: dict[str, Any] = {"rank": h.rank, "id": h.id, "score": float(h.score), "title": h.title, "meta": h.meta}
            if req.highlight:
                s = snippet(h.text or h.title, query.text, snap.analyzer)
                row["snippet"], row["highlights"] = s.text, [list(m) for m in s.marks]
            rows.append(row)
        return {"qid": query.id, "query": query.text, "hits": rows}

    def get(self, doc_id: str) -> tuple[Index, Doc | None]:
        snap = self.snapshot()
        return snap, snap.docs_by_id([doc_id])[0]

    # -- writing ----------------------------------------------------------------------------

    def write(self, docs: Sequence[Doc], update: bool) -> WriteResult:
        """Add (or, with ``update``, add-or-replace) ``docs`` in one commit."""
        with self._write_lock:
            added, replaced = self._snapshot.write(docs, update=update, wait=self.config.limits.timeout_s)
            snap = self.refresh()
        return WriteResult(snap.generation, added=added - replaced, replaced=replaced, ids=[d.id for d in docs])

    def delete(self, ids: Sequence[str], where: str | None) -> WriteResult:
        """Delete by ids and/or filter in one commit."""
        with self._write_lock:
            n = self._snapshot.delete(ids, where=where, wait=self.config.limits.timeout_s)
            snap = self.refresh()
        return WriteResult(snap.generation, deleted=n)

    def optimize(self) -> WriteResult:
        """Merge every segment and drop deleted documents (one commit)."""
        with self._write_lock:
            self._snapshot.optimize(wait=self.config.limits.timeout_s)
            snap = self.refresh()
        return WriteResult(snap.generation)

    # -- describing -------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        builtins.load()
        snap = self.snapshot()
        m = snap.manifest
        return {"path": str(self.path), "generation": snap.generation, "version": short_version(snap),
                "documents": snap.n_docs, "segments": len(m.segments), "fields": list(m.fields),
                "filter_fields": dict(m.filter_fields), "representations": dict(m.representations),
                "stages": stage_names(), "pipelines": list(self.config.pipelines),
                "analyzer": dict(m.analyzer), "writes": self.config.api_key is not None}


def _window(cands: Any, offset: int) -> Any:
    """``cands`` without each query's first ``offset`` results."""
    if offset == 0:
        return cands
    docs, scores = [], []
    for _, d, s in cands:
        docs.append(d[offset:])
        scores.append(s[offset:])
    return Candidates.from_lists(list(cands.query_ids), docs, scores, cands.space)
