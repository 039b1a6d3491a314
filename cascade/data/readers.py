"""Streaming readers for JSONL documents and queries, qrels, and corpus dispatch.

Every line-based reader opens its file in binary and decodes each line itself, so a
bad byte is reported with its line number. Bad records raise :class:`DataError`
(``path:line: reason``); with ``skip_bad=True`` they are skipped and counted in a
:class:`ReadReport` instead.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cascade.core.errors import DataError
from cascade.core.types import Doc, Qrels, Query, ReadReport

StrPath = str | os.PathLike[str]

DOC_ID_KEYS = ("_id", "id", "docid")
DOC_TEXT_KEYS = ("text", "contents", "body")
QUERY_ID_KEYS = ("_id", "id", "qid", "query_id")
QUERY_TEXT_KEYS = ("text", "query", "title")
HASH_CHUNK = 1 << 20


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


def _require_file(path: StrPath) -> None:
    p = Path(path)
    if not p.exists():
        raise DataError(path, "no such file or directory")
    if not p.is_file():
        raise DataError(path, "is a directory, expected a file")


def _text_lines(path: StrPath, sink: _Sink) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-blank line; bad UTF-8 goes to ``sink``."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise _open_error(path, exc) from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                sink.bad(lineno, f"invalid UTF-8 at byte {exc.start}")
                continue
            if text.strip():
                yield lineno, text.rstrip("\r\n")


def _json_objects(path: StrPath, sink: _Sink) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, text in _text_lines(path, sink):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            sink.bad(lineno, f"malformed JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict):
            sink.bad(lineno, f"expected a JSON object, got {type(obj).__name__}")
            continue
        yield lineno, obj


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
    """Stream documents from a JSONL file, one JSON object per line.

    >>> for doc in read_jsonl_docs("corpus.jsonl"):  # doctest: +SKIP
    ...     print(doc.id, doc.title, doc.text[:40])
    """
    _require_file(path)
    return _iter_docs(path, _Sink(path, skip_bad, report))


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


def _corpus_kind(path: StrPath) -> str:
    p = Path(path)
    if not p.exists():
        raise DataError(path, "no such file or directory")
    if p.is_dir():
        return "beir" if (p / "corpus.jsonl").is_file() else "folder"
    if p.suffix.lower() in (".jsonl", ".json"):
        return "jsonl"
    raise DataError(
        path,
        "unsupported corpus: expected a .jsonl file, a BEIR dataset directory "
        "(with corpus.jsonl) or a folder of .txt/.md files",
    )


def open_corpus(
    path: StrPath, *, skip_bad: bool = False, report: ReadReport | None = None
) -> Iterator[Doc]:
    """Stream the documents of a BEIR dir, a ``.jsonl`` file or a folder of text files.

    >>> sum(1 for _ in open_corpus("datasets/scifact"))  # doctest: +SKIP
    5183
    """
    from cascade.data.folder import read_folder

    kind = _corpus_kind(path)
    if kind == "beir":
        return read_jsonl_docs(Path(path) / "corpus.jsonl", skip_bad=skip_bad, report=report)
    if kind == "jsonl":
        return read_jsonl_docs(path, skip_bad=skip_bad, report=report)
    return read_folder(path, skip_bad=skip_bad, report=report)


def corpus_fingerprint(path: StrPath) -> str:
    """blake2b hex digest (16 bytes) of a corpus's bytes; for a folder, of its
    relative paths and contents in sorted order. Equals ``BeirDataset.content_hash()``.

    >>> len(corpus_fingerprint("datasets/scifact"))  # doctest: +SKIP
    32
    """
    from cascade.data.folder import folder_files

    kind = _corpus_kind(path)
    if kind == "beir":
        return hash_file(Path(path) / "corpus.jsonl").hexdigest()
    if kind == "jsonl":
        return hash_file(path).hexdigest()
    h = hashlib.blake2b(digest_size=16)
    for rel, file in folder_files(path):
        h.update(rel.encode("utf-8") + b"\0")
        h.update(file.stat().st_size.to_bytes(8, "little"))
        hash_file(file, h)
    return h.hexdigest()
