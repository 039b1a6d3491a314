"""TREC formats: run files (read and atomic write) and topic files (SGML or TSV)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from cascade.core.errors import DataError
from cascade.core.types import Query, ReadReport, Run
from cascade.data.readers import StrPath, _require_file, _Sink, _text_lines


def read_trec_run(path: StrPath, *, skip_bad: bool = False, report: ReadReport | None = None) -> Run:
    """Read a TREC run file (``qid Q0 docid rank score tag`` per line); ranks are ignored,
    scores kept. A document listed twice for one query is a bad line.

    >>> read_trec_run("runs/BM25.top100.trec")["264014"]["5611210"]  # doctest: +SKIP
    15.780599594116211
    """
    sink = _Sink(path, skip_bad, report)
    run: Run = {}
    for lineno, text in _text_lines(path, sink):
        cols = text.split()
        if len(cols) < 6:
            sink.bad(lineno, f"expected 6 columns (qid Q0 docid rank score tag), got {len(cols)}")
            continue
        qid, doc_id, raw = cols[0], cols[2], cols[4]
        try:
            score = float(raw)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            sink.bad(lineno, f"score {raw!r} is not a finite number")
            continue
        ranking = run.setdefault(qid, {})
        if doc_id in ranking:
            sink.bad(lineno, f"duplicate document {doc_id!r} for query {qid!r}")
            continue
        ranking[doc_id] = score
        sink.report.read += 1
    return run


def write_trec_run(run: Run, path: StrPath, tag: str = "cascade") -> None:
    """Write ``run`` in TREC format, each query ranked by descending score (ties by doc id
    ascending), ranks from 1. Writes ``path + ".tmp"`` then renames it over ``path``.

    >>> write_trec_run({"q1": {"d1": 2.0, "d2": 1.5}}, "out.trec", tag="bm25")  # doctest: +SKIP
    """
    for name, value in [("tag", tag), *((f"query id {q!r}", q) for q in run)]:
        if not value or any(ch.isspace() for ch in value):
            raise DataError(path, f"{name} must be non-empty without whitespace")
    target = Path(path)
    tmp = Path(str(path) + ".tmp")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            for qid, ranking in run.items():
                ranked = sorted(ranking.items(), key=lambda kv: (-kv[1], kv[0]))
                for rank, (doc_id, score) in enumerate(ranked, start=1):
                    score = float(score)
                    if not math.isfinite(score) or not doc_id or any(c.isspace() for c in doc_id):
                        raise DataError(path, f"query {qid}: bad entry {doc_id!r} -> {score}")
                    fh.write(f"{qid} Q0 {doc_id} {rank} {score!r} {tag}\n")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


_TOP = re.compile(r"<top>(.*?)</top>", re.I | re.S)
_NUM = re.compile(r"<num>\s*(?:number\s*:)?\s*([^<\s]*)", re.I)
_TITLE = re.compile(r"<title>\s*(?:topic\s*:)?(.*?)(?=<|\Z)", re.I | re.S)


def read_trec_topics(
    path: StrPath, *, skip_bad: bool = False, report: ReadReport | None = None
) -> list[Query]:
    """Read TREC topics: SGML (``<top> <num> Number: 301 <title> text ... </top>``, the
    title becomes the query text) or, when the file has no ``<top>``, ``qid<TAB>text`` lines.

    >>> read_trec_topics("topics.301-350.txt")[0]  # doctest: +SKIP
    Query(id='301', text='International Organized Crime')
    """
    _require_file(path)
    sink = _Sink(path, skip_bad, report)
    lines = list(_text_lines(path, sink))
    if any("<top>" in text.lower() for _, text in lines):
        found = _sgml_topics(lines, sink)
    else:
        found = []
        for lineno, text in lines:
            qid, _, query = text.partition("\t")
            if not qid.strip() or not query.strip():
                sink.bad(lineno, "expected 'qid<TAB>text'")
                continue
            found.append((lineno, Query(qid.strip(), query.strip())))
    topics: list[Query] = []
    seen: set[str] = set()
    for lineno, query in found:
        if query.id in seen:
            sink.bad(lineno, f"duplicate topic id {query.id!r}")
            continue
        seen.add(query.id)
        topics.append(query)
        sink.report.read += 1
    return topics


def _sgml_topics(lines: list[tuple[int, str]], sink: _Sink) -> list[tuple[int, Query]]:
    numbered = [""] * (lines[-1][0] if lines else 0)
    for lineno, text in lines:
        numbered[lineno - 1] = text
    doc = "\n".join(numbered)

    def line_at(offset: int) -> int:
        return doc.count("\n", 0, offset) + 1

    found: list[tuple[int, Query]] = []
    end = 0
    for match in _TOP.finditer(doc):
        end = match.end()
        lineno = line_at(match.start())
        num, title = _NUM.search(match.group(1)), _TITLE.search(match.group(1))
        if num is None or not num.group(1):
            sink.bad(lineno, "topic has no <num>")
        elif title is None or not title.group(1).strip():
            sink.bad(lineno, f"topic {num.group(1)} has no <title>")
        else:
            found.append((lineno, Query(num.group(1), " ".join(title.group(1).split()))))
    tail = doc.lower().find("<top>", end)
    if tail != -1:
        sink.bad(line_at(tail), "<top> without </top>")
    return found
