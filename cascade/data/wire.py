"""The JSON candidate format that Pyserini's REST API, rank_llm and UMBRELA share.

One *request* is a query and its ranked candidates::

    {"query": {"qid": "q1", "text": "how long do fleas live"},
     "candidates": [{"docid": "d7", "score": 14.97,
                     "doc": {"title": "Fleas", "text": "A flea lives ...", "segment": "A flea lives ..."}}]}

rank_llm (``rank_llm.data.Request``: ``query.text``, ``query.qid``, ``candidates[].docid``,
``.score``, ``.doc``) reads a candidate's passage from ``doc["text"]`` (else ``segment``,
``contents``, ``content``, ``body``, ``passage``) and prefixes ``doc["title"]``; UMBRELA reads
``doc["segment"]``. So Cascade writes ``title``, ``text`` and ``segment`` (the text again), plus
``meta`` when the document has metadata, and reads any of those keys back. A file holds one
request per line (``.jsonl``) or a JSON array of them (``.json``), as rank_llm's readers expect.

>>> from cascade.core.types import Hit
>>> req = hits_to_wire("q1", "fleas", [Hit("d7", 1.5, 1, "Fleas", "A flea lives a year.")])
>>> req["candidates"][0]["doc"]["segment"]
'A flea lives a year.'
>>> query, hits = wire_to_hits(req)
>>> query, hits[0].id, hits[0].rank, hits[0].title
(Query(id='q1', text='fleas'), 'd7', 1, 'Fleas')
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from cascade.core.candidates import Candidates
from cascade.core.errors import CascadeError
from cascade.core.types import Doc, Hit, Query

WireRequest = dict[str, Any]
DocLookup = Callable[[Sequence[str]], Sequence["Doc | None"]]
"""Stored documents by external id, in the order asked, None where absent (``Index.docs_by_id``)."""

TEXT_KEYS = ("text", "segment", "contents", "content", "body", "passage")  # rank_llm's order


def doc_to_wire(doc: Doc | Hit | None) -> dict[str, Any]:
    """A candidate's ``doc`` object: title, text, segment (= text) and meta when there is any."""
    if doc is None:
        return {}
    out: dict[str, Any] = {"title": doc.title, "text": doc.text, "segment": doc.text}
    if doc.meta:
        out["meta"] = doc.meta
    return out


def hits_to_wire(qid: str, text: str, hits: Iterable[Hit]) -> WireRequest:
    """One request from a query and its hits (in rank order)."""
    return {"query": {"qid": qid, "text": text},
            "candidates": [{"docid": h.id, "score": float(h.score), "doc": doc_to_wire(h)} for h in hits]}


def candidates_to_wire(queries: Sequence[Query], cands: Candidates, lookup: DocLookup | None = None,
                       k: int | None = None) -> list[WireRequest]:
    """One request per query of ``cands`` (its first ``k`` results); ``lookup`` gives the stored
    documents (``index.docs_by_id``), else each ``doc`` is empty."""
    texts = {q.id: q.text for q in queries}
    out = []
    for qid, nums, scores in cands:
        if qid not in texts:
            raise CascadeError(f"candidates hold query {qid!r}, which is not among the queries given")
        nums, scores = nums[:k], scores[:k]
        ids = cands.space.doc_ids(nums)
        if getattr(cands.space, "passages_of", None) is not None:  # documents of a passage index (to_docs)
            docs = cands.space.docs(nums)  # type: ignore[attr-defined]  (each shown by its best passage)
        else:
            docs = lookup(ids) if lookup is not None else [None] * len(ids)
        out.append({"query": {"qid": qid, "text": texts[qid]},
                    "candidates": [{"docid": i, "score": float(s), "doc": doc_to_wire(d)}
                                   for i, s, d in zip(ids, scores.tolist(), docs)]})
    return out


def _field(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise CascadeError(f"{where}: missing {key!r}")
    return obj[key]


def _doc_fields(doc: Any, where: str) -> tuple[str, str, dict[str, Any]]:
    """(title, text, meta) of a candidate's ``doc``: an object, or a plain string (UMBRELA's input)."""
    if doc is None:
        return "", "", {}
    if isinstance(doc, str):
        return "", doc, {}
    if not isinstance(doc, Mapping):
        raise CascadeError(f"{where}: 'doc' must be an object or a string")
    text = next((doc[k] for k in TEXT_KEYS if isinstance(doc.get(k), str)), "")
    meta = doc.get("meta") if isinstance(doc.get("meta"), Mapping) else {}
    return str(doc.get("title") or ""), text, dict(meta)


def wire_to_hits(request: Mapping[str, Any], where: str = "request") -> tuple[Query, list[Hit]]:
    """The query and hits (ranked in list order) of one request; a missing field is a
    :class:`CascadeError` naming it. ``qid`` and ``docid`` may be numbers (rank_llm allows them)."""
    query = _field(request, "query", where)
    qid, text = _field(query, "qid", f"{where}.query"), _field(query, "text", f"{where}.query")
    cands = request.get("candidates", []) if isinstance(request, Mapping) else []
    if not isinstance(cands, list):
        raise CascadeError(f"{where}: 'candidates' must be a list")
    hits = []
    for rank, cand in enumerate(cands, 1):
        at = f"{where}.candidates[{rank - 1}]"
        docid = _field(cand, "docid", at)
        score = cand.get("score", 0.0)
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            raise CascadeError(f"{at}: 'score' must be a number")
        title, body, meta = _doc_fields(cand.get("doc"), at)
        hits.append(Hit(str(docid), float(score), rank, title, body, meta))
    return Query(str(qid), str(text)), hits


def wire_to_docs(request: Mapping[str, Any], where: str = "request") -> list[Doc]:
    """The candidates of one request as documents (to index, or to rerank elsewhere)."""
    return [Doc(h.id, h.text, h.title, h.meta) for h in wire_to_hits(request, where)[1]]


def write_wire(requests: Sequence[WireRequest], path: str | os.PathLike[str]) -> None:
    """Write requests as JSONL (``.jsonl``) or one JSON array (any other suffix)."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as f:
        if path.suffix == ".jsonl":
            for req in requests:
                f.write(json.dumps(req, ensure_ascii=False) + "\n")
        else:
            json.dump(list(requests), f, ensure_ascii=False, indent=2)


def read_wire(path: str | os.PathLike[str]) -> list[tuple[Query, list[Hit]]]:
    """Requests from a ``.jsonl`` file (one per line) or a JSON file (an array, or one object)."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CascadeError(f"{path}: cannot read ({exc})") from None
    try:
        if path.suffix == ".jsonl":
            items = [(f"{path}:{n}", json.loads(line)) for n, line in enumerate(raw.splitlines(), 1) if line.strip()]
        else:
            data = json.loads(raw)
            data = data if isinstance(data, list) else [data]
            items = [(f"{path}[{n}]", d) for n, d in enumerate(data)]
    except json.JSONDecodeError as exc:
        raise CascadeError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    return [wire_to_hits(obj, where) for where, obj in items]
