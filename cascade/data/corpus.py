"""A corpus whatever its form: which kind a path holds (BEIR directory, JSONL, TSV, folder of
text files, standard input), its documents, its size for progress and its fingerprint."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from cascade.core.errors import DataError
from cascade.core.types import Doc, ReadReport
from cascade.data.folder import folder_files, read_folder
from cascade.data.readers import (
    HASH_CHUNK,
    JSONL_SUFFIXES,
    STDIN,
    STDIN_NAME,
    TSV_SUFFIXES,
    StrPath,
    hash_file,
    is_gzip,
    read_jsonl_docs,
    read_tsv_docs,
)


def _corpus_kind(path: StrPath) -> str:
    """``stdin``, ``beir``, ``folder``, ``jsonl`` or ``tsv`` (by the file name's ending)."""
    if str(path) == STDIN:
        return "stdin"
    p = Path(path)
    if not p.exists():
        raise DataError(path, "no such file or directory")
    if p.is_dir():
        return "beir" if (p / "corpus.jsonl").is_file() else "folder"
    name = p.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(TSV_SUFFIXES):
        return "tsv"
    raise DataError(
        path,
        "unsupported corpus: expected a .jsonl or .jsonl.gz file, a .tsv or .tsv.gz file (id<TAB>text or "
        "id<TAB>title<TAB>text), a BEIR dataset directory (with corpus.jsonl), a folder of .txt/.md/.html/.pdf "
        "files, or - for JSONL on standard input",
    )


def open_corpus(
    path: StrPath, *, skip_bad: bool = False, report: ReadReport | None = None
) -> Iterator[Doc]:
    """Stream the documents of a BEIR dir, a ``.jsonl`` / ``.jsonl.gz`` file, a ``.tsv`` /
    ``.tsv.gz`` file (see :func:`read_tsv_docs`), a folder of text files, or JSONL on standard
    input (``path`` = ``-``).

    >>> sum(1 for _ in open_corpus("datasets/scifact"))  # doctest: +SKIP
    5183
    """
    kind = _corpus_kind(path)
    if kind == "beir":
        return read_jsonl_docs(Path(path) / "corpus.jsonl", skip_bad=skip_bad, report=report)
    if kind in ("jsonl", "stdin"):
        return read_jsonl_docs(path, skip_bad=skip_bad, report=report)
    if kind == "tsv":
        return read_tsv_docs(path, skip_bad=skip_bad, report=report)
    return read_folder(path, skip_bad=skip_bad, report=report)


def corpus_file(path: StrPath) -> Path | None:
    """The one file holding a corpus's documents (``corpus.jsonl`` of a BEIR dir), or None
    for standard input and folders."""
    kind = _corpus_kind(path)
    if kind == "beir":
        return Path(path) / "corpus.jsonl"
    return Path(path) if kind in ("jsonl", "tsv") else None


def count_lines(path: StrPath) -> int | None:
    """Lines of a corpus file, a cheap total for a progress bar; None when there is no plain
    file to count: standard input, folders, gzip files (counting would mean decompressing the
    whole file once more), or a file that cannot be read."""
    try:
        file = corpus_file(path)
        if file is None or is_gzip(file):
            return None
        with open(file, "rb") as fh:
            return sum(block.count(b"\n") for block in iter(lambda: fh.read(HASH_CHUNK), b""))
    except (OSError, DataError):
        return None


def corpus_fingerprint(path: StrPath) -> str:
    """blake2b hex digest (16 bytes) of a corpus's bytes; for a folder, of its
    relative paths and contents in sorted order. Equals ``BeirDataset.content_hash()``.

    >>> len(corpus_fingerprint("datasets/scifact"))  # doctest: +SKIP
    32
    """
    kind = _corpus_kind(path)
    if kind == "stdin":
        raise DataError(STDIN_NAME, "standard input has no fingerprint; save the corpus to a file")
    if kind == "beir":
        return hash_file(Path(path) / "corpus.jsonl").hexdigest()
    if kind in ("jsonl", "tsv"):
        return hash_file(path).hexdigest()
    h = hashlib.blake2b(digest_size=16)
    for rel, file in folder_files(path):
        h.update(rel.encode("utf-8") + b"\0")
        h.update(file.stat().st_size.to_bytes(8, "little"))
        hash_file(file, h)
    return h.hexdigest()
