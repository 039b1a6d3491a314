"""Streaming readers for JSONL and TSV documents, queries and qrels.

Every line-based reader opens its file in binary and decodes each line itself, so a
bad byte is reported with its line number. Bad records raise :class:`DataError`
(``path:line: reason``); with ``skip_bad=True`` they are skipped and counted in a
:class:`ReadReport` instead. A file whose name ends in ``.gz`` is read through gzip, and
the path ``-`` reads standard input (named ``<stdin>`` in messages).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import os
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from cascade.core.errors import DataError
from cascade.core.types import Doc, Qrels, Query, ReadReport

StrPath = str | os.PathLike[str]

DOC_ID_KEYS = ("_id", "id", "docid")
DOC_TEXT_KEYS = ("text", "contents", "body")
QUERY_ID_KEYS = ("_id", "id", "qid", "query_id")
QUERY_TEXT_KEYS = ("text", "query", "title")
HASH_CHUNK = 1 << 20
STDIN = "-"  # the path that means standard input
STDIN_NAME = "<stdin>"
JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
TSV_SUFFIXES = (".tsv", ".tsv.gz")
TSV_HEADER_IDS = ("id", "_id", "docid", "doc_id", "pid")


class _Sink:
    """Raises a :class:`DataError` for a bad record, or records it when skipping."""

    def __init__(self, path: StrPath, skip_bad: bool, report: ReadReport | None) -> None:
        self.path = str(path)
        self.skip_bad = skip_bad
        self.report = report if report is not None else ReadReport()

    def bad(self, line: int | None, reason: str, path: StrPath | None = None) -> None:
        err = DataError(self.path if path is None else path, reason, line=line)
        if not self.skip_bad:
            raise err
        self.report.skip(str(err))


def _open_error(path: StrPath, exc: OSError) -> DataError:
    if isinstance(exc, FileNotFoundError):
        return DataError(path, "no such file or directory")
    if isinstance(exc, IsADirectoryError):
        return DataError(path, "is a directory, expected a file")
    return DataError(path, f"cannot read: {exc.strerror or exc}")


def display_name(path: StrPath) -> str:
    """How messages name ``path``: ``<stdin>`` for ``-``."""
    return STDIN_NAME if str(path) == STDIN else str(path)


def is_gzip(path: StrPath) -> bool:
    return str(path).lower().endswith(".gz")


def _require_file(path: StrPath) -> None:
    if str(path) == STDIN:
        return
    p = Path(path)
    if not p.exists():
        raise DataError(path, "no such file or directory")
    if not p.is_file():
        raise DataError(path, "is a directory, expected a file")


@contextmanager
def _open_binary(path: StrPath) -> Iterator[IO[bytes]]:
    """``path`` opened for reading bytes: standard input for ``-`` (left open when done), a
    gzip stream for ``*.gz``, else the file."""
    if str(path) == STDIN:
        yield sys.stdin.buffer
        return
    try:
        fh = gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")
    except OSError as exc:
        raise _open_error(path, exc) from None
    with fh:
        yield fh


def _raw_lines(path: StrPath, fh: IO[bytes]) -> Iterator[bytes]:
    """The lines of ``fh``; damaged gzip data is a :class:`DataError` naming the line it follows."""
    lineno = 0
    try:
        for lineno, raw in enumerate(fh, start=1):
            yield raw
    except (OSError, EOFError, zlib.error) as exc:
        what = "damaged or truncated gzip data" if is_gzip(path) else "cannot read"
        raise DataError(display_name(path), f"{what} after line {lineno} ({exc})") from None


def _text_lines(path: StrPath, sink: _Sink) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-blank line; bad UTF-8 goes to ``sink``."""
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(_raw_lines(path, fh), start=1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                sink.bad(lineno, f"invalid UTF-8 at byte {exc.start}")
                continue
            if text.strip():
                yield lineno, text.rstrip("\r\n")


MAX_JSON_DEPTH = 100  # a record nested deeper is bad (parsing, storing and reading it recurse)


def _json_objects(path: StrPath, sink: _Sink) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each line of a JSONL file; a line that is not a JSON object,
    or is nested more than MAX_JSON_DEPTH levels deep, is a bad record naming file and line."""
    for lineno, text in _text_lines(path, sink):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            sink.bad(lineno, f"malformed JSON ({exc.msg})")
            continue
        except RecursionError:
            sink.bad(lineno, f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
            continue
        if not isinstance(obj, dict):
            sink.bad(lineno, f"expected a JSON object, got {type(obj).__name__}")
            continue
        if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _json_depth(obj) > MAX_JSON_DEPTH:
            sink.bad(lineno, f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
            continue
        yield lineno, obj


def _json_depth(obj: Any) -> int:
    """Levels of lists and objects in a parsed JSON value (iterative: no recursion)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        elif not isinstance(value, list):
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((item, depth + 1) for item in value)
    return deepest


def _pick(obj: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in keys:
        if obj.get(key) is not None:
            return key, obj[key]
    return None, None


def _id_of(obj: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, str | None, str]:
    """Return ``(key, id, problem)``; ``id`` is None when ``problem`` says why."""
    key, value = _pick(obj, keys)
    if isinstance(value, bool) or not isinstance(value, str | int | None):
        return key, None, f"id must be a string or integer, got {type(value).__name__}"
    doc_id = "" if value is None else str(value).strip()
    if not doc_id:
        return key, None, f"missing id (one of {', '.join(keys)})"
    return key, doc_id, ""


def read_jsonl_docs(
    path: StrPath, *, skip_bad: bool = False, report: ReadReport | None = None
) -> Iterator[Doc]:
    """Stream documents from a JSONL file (``.jsonl.gz``: gzip; ``-``: standard input), one
    JSON object per line.

    >>> for doc in read_jsonl_docs("corpus.jsonl"):  # doctest: +SKIP
    ...     print(doc.id, doc.title, doc.text[:40])
    """
    _require_file(path)
    return _iter_docs(path, _Sink(display_name(path), skip_bad, report))


def _iter_docs(path: StrPath, sink: _Sink) -> Iterator[Doc]:
    seen: set[str] = set()
    for lineno, obj in _json_objects(path, sink):
        id_key, doc_id, problem = _id_of(obj, DOC_ID_KEYS)
        if doc_id is None:
            sink.bad(lineno, problem)
            continue
        text_key, text = _pick(obj, DOC_TEXT_KEYS)
        title = obj.get("title")
        if not isinstance(text, str | None) or not isinstance(title, str | None):
            sink.bad(lineno, f"document {doc_id}: text and title must be strings")
            continue
        text, title = text or "", title or ""
        if not text.strip() and not title.strip():
            sink.bad(lineno, f"document {doc_id} is empty (no title or text)")
            continue
        if doc_id in seen:
            sink.bad(lineno, f"duplicate document id {doc_id!r}")
            continue
        seen.add(doc_id)
        meta = _meta(obj, {id_key, text_key, "title", "metadata"})
        sink.report.read += 1
        yield Doc(id=doc_id, text=text, title=title, meta=meta)


def read_tsv_docs(
    path: StrPath, *, skip_bad: bool = False, report: ReadReport | None = None
) -> Iterator[Doc]:
    """Stream documents from a tab-separated file (MS MARCO's ``collection.tsv`` style;
    ``.tsv.gz``: gzip; ``-``: standard input).

    The rule: the first line fixes the layout, ``id<TAB>text`` (2 columns) or
    ``id<TAB>title<TAB>text`` (3 columns); every later line is split into that many columns
    at its first tabs (so a text keeps any further tabs), and a line with fewer columns, an
    empty id, an empty document or a repeated id is a bad record. A first line whose first
    column is a header name (``id``, ``_id``, ``docid``, ``doc_id``, ``pid``) is a header and
    skipped. There is no quoting: a field is the bytes between tabs.

    >>> next(read_tsv_docs("collection.tsv"))  # doctest: +SKIP
    Doc(id='0', text='The presence of communication amid scientific minds ...', title='', meta={})
    """
    _require_file(path)
    return _iter_tsv_docs(path, _Sink(display_name(path), skip_bad, report))


def _iter_tsv_docs(path: StrPath, sink: _Sink) -> Iterator[Doc]:
    seen: set[str] = set()
    columns = 0
    for lineno, text in _text_lines(path, sink):
        if not columns:
            columns = min(text.count("\t") + 1, 3)
            if columns < 2:
                raise DataError(sink.path, "expected tab-separated columns: id<TAB>text or id<TAB>title<TAB>text",
                                line=lineno)
            if text.split("\t", 1)[0].strip().lower() in TSV_HEADER_IDS:
                continue
        fields = text.split("\t", columns - 1)
        if len(fields) < columns:
            sink.bad(lineno, f"expected {columns} tab-separated columns "
                             f"({'id, title, text' if columns == 3 else 'id, text'}), got {len(fields)}")
            continue
        doc_id, title, body = fields[0].strip(), fields[1] if columns == 3 else "", fields[-1]
        if not doc_id:
            sink.bad(lineno, "missing id (the first column)")
        elif not body.strip() and not title.strip():
            sink.bad(lineno, f"document {doc_id} is empty (no title or text)")
        elif doc_id in seen:
            sink.bad(lineno, f"duplicate document id {doc_id!r}")
        else:
            seen.add(doc_id)
            sink.report.read += 1
            yield Doc(id=doc_id, text=body, title=title)


def _meta(obj: dict[str, Any], used: set[str | None]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if isinstance(obj.get("metadata"), dict):
        meta.update(obj["metadata"])
    elif "metadata" in obj:
        used = used - {"metadata"}
    for key, value in obj.items():
        if key not in used and isinstance(value, str | int | float | bool):
            meta.setdefault(key, value)
    return meta


def read_jsonl_queries(
    path: StrPath, *, skip_bad: bool = False, report: ReadReport | None = None
) -> list[Query]:
    """Read all queries from a JSONL file (``{"_id": ..., "text": ...}`` per line).

    >>> read_jsonl_queries("queries.jsonl")[0]  # doctest: +SKIP
    Query(id='1', text='0-dimensional biomaterials show inductive properties.')
    """
    _require_file(path)
    sink = _Sink(path, skip_bad, report)
    queries: list[Query] = []
    seen: set[str] = set()
    for lineno, obj in _json_objects(path, sink):
        _, qid, problem = _id_of(obj, QUERY_ID_KEYS)
        if qid is None:
            sink.bad(lineno, problem)
            continue
        _, text = _pick(obj, QUERY_TEXT_KEYS)
        if not isinstance(text, str) or not text.strip():
            sink.bad(lineno, f"query {qid} has no text")
            continue
        if qid in seen:
            sink.bad(lineno, f"duplicate query id {qid!r}")
            continue
        seen.add(qid)
        queries.append(Query(id=qid, text=text))
        sink.report.read += 1
    return queries


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_qrels(path: StrPath, *, skip_bad: bool = False, report: ReadReport | None = None) -> Qrels:
    """Read relevance judgments: BEIR TSV (``qid docid rel``, optional header) or
    TREC qrels (``qid iter docid rel``), detected from the first data line.

    >>> read_qrels("qrels/test.tsv")["1"]  # doctest: +SKIP
    {'31715818': 1}
    """
    sink = _Sink(path, skip_bad, report)
    qrels: Qrels = {}
    ncols: int | None = None
    first = True
    for lineno, text in _text_lines(path, sink):
        cols = text.split()
        if first and len(cols) == 3 and not _is_int(cols[-1]):
            first = False
            continue  # header line, e.g. "query-id\tcorpus-id\tscore"
        first = False
        if ncols is None:
            if len(cols) not in (3, 4):
                sink.bad(lineno, f"expected 3 (BEIR) or 4 (TREC) columns, got {len(cols)}")
                continue
            ncols = len(cols)
        if len(cols) != ncols:
            sink.bad(lineno, f"expected {ncols} columns, got {len(cols)}")
            continue
        qid, doc_id, rel = cols[0], cols[-2], cols[-1]
        if not _is_int(rel):
            sink.bad(lineno, f"relevance {rel!r} is not an integer")
            continue
        qrels.setdefault(qid, {})[doc_id] = int(rel)
        sink.report.read += 1
    return qrels


def hash_file(path: StrPath, h: Any | None = None) -> Any:
    """Feed a file's bytes to a blake2b hash (16-byte digest) in 1 MiB chunks; return it.

    >>> hash_file("corpus.jsonl").hexdigest()  # doctest: +SKIP
    '3f2a...'
    """
    h = h if h is not None else hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(HASH_CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise _open_error(path, exc) from None
    return h
