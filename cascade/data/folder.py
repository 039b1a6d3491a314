"""Read a folder of documents as a corpus, one document per file: plain text (``.txt``),
Markdown (``.md``, ``.markdown``), HTML (``.html``, ``.htm``: text extracted by
:mod:`cascade.data.html`, extra ``html``) and PDF (``.pdf``: the text layer, by
:mod:`cascade.data.pdf`, extra ``pdf``). A folder holding HTML or PDF files without its
extra installed is one error line naming the extra to install."""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator
from pathlib import Path

from cascade.core.errors import DataError
from cascade.core.types import Doc, ReadReport
from cascade.data.html import html_text
from cascade.data.pdf import pdf_text
from cascade.data.readers import StrPath, _Sink

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
PDF_SUFFIXES = (".pdf",)
DEFAULT_SUFFIXES = TEXT_SUFFIXES + HTML_SUFFIXES + PDF_SUFFIXES


def folder_files(path: StrPath, suffixes: tuple[str, ...] = DEFAULT_SUFFIXES) -> list[tuple[str, Path]]:
    """``(relative id, file)`` for every matching file under ``path``, sorted by id.
    Hidden files and folders (names starting with ".") are left out.

    >>> folder_files("notes")  # doctest: +SKIP
    [('a.md', PosixPath('notes/a.md')), ('sub/b.txt', PosixPath('notes/sub/b.txt'))]
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(path, "no such directory" if not root.exists() else "not a directory")
    wanted = tuple(s.lower() for s in suffixes)
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            file = Path(dirpath, name)
            if not name.startswith(".") and name.lower().endswith(wanted) and file.is_file():
                found.append((file.relative_to(root).as_posix(), file))
    return sorted(found)


def read_folder(
    path: StrPath,
    *,
    suffixes: tuple[str, ...] = DEFAULT_SUFFIXES,
    skip_bad: bool = False,
    report: ReadReport | None = None,
) -> Iterator[Doc]:
    """Stream one :class:`Doc` per file (recursive, sorted); id is the relative path with
    "/" separators; a Markdown file's title is its first ``# `` heading, an HTML page's its
    ``<title>`` (else its first ``h1``), a PDF's its ``/Title``.

    >>> [d.id for d in read_folder("notes")]  # doctest: +SKIP
    ['a.md', 'sub/b.txt']
    """
    return _iter_folder(folder_files(path, suffixes), _Sink(path, skip_bad, report))


def _iter_folder(files: list[tuple[str, Path]], sink: _Sink) -> Iterator[Doc]:
    for rel, file in files:
        suffix = file.suffix.lower()
        try:
            raw = file.read_bytes()
        except OSError as exc:
            sink.bad(None, f"cannot read: {exc.strerror or exc}", path=file)
            continue
        if suffix in HTML_SUFFIXES + PDF_SUFFIXES:
            try:
                title, text = html_text(raw) if suffix in HTML_SUFFIXES else pdf_text(file)
            except DataError as exc:
                sink.bad(None, exc.reason, path=file)
                continue
            if not text.strip():
                sink.bad(None, "no text (a PDF without a text layer?)" if suffix == ".pdf" else "no text", path=file)
                continue
            sink.report.read += 1
            yield Doc(id=rel, text=text, title=title)
            continue
        if raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            sink.bad(None, f"invalid UTF-8 at byte {exc.start}", path=file)
            continue
        if not text.strip():
            sink.bad(None, "empty file", path=file)
            continue
        title = ""
        if suffix in (".md", ".markdown"):
            title = next((ln[2:].strip() for ln in text.splitlines() if ln.startswith("# ")), "")
        sink.report.read += 1
        yield Doc(id=rel, text=text, title=title)
