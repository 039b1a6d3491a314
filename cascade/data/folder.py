"""Read a folder of plain-text / Markdown files as a corpus, one document per file."""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator
from pathlib import Path

from cascade.core.errors import DataError
from cascade.core.types import Doc, ReadReport
from cascade.data.readers import StrPath, _Sink

DEFAULT_SUFFIXES = (".txt", ".md")


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
    "/" separators; a ``.md`` file's title is its first ``# `` heading.

    >>> [d.id for d in read_folder("notes")]  # doctest: +SKIP
    ['a.md', 'sub/b.txt']
    """
    return _iter_folder(folder_files(path, suffixes), _Sink(path, skip_bad, report))


def _iter_folder(files: list[tuple[str, Path]], sink: _Sink) -> Iterator[Doc]:
    for rel, file in files:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            sink.bad(None, f"cannot read: {exc.strerror or exc}", path=file)
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
        if file.suffix.lower() == ".md":
            title = next((ln[2:].strip() for ln in text.splitlines() if ln.startswith("# ")), "")
        sink.report.read += 1
        yield Doc(id=rel, text=text, title=title)
