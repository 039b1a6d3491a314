"""Per-segment document store (SQLite): id, title, text and metadata by doc number."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator

from cascade.core.types import Doc

DOCSTORE_NAME = "docstore.sqlite"
MMAP_BYTES = 1 << 30
_SCHEMA = "CREATE TABLE docs (num INTEGER PRIMARY KEY, id TEXT NOT NULL, title TEXT, text TEXT, meta TEXT)"


class DocstoreWriter:
    """Appends documents in order; doc numbers are 0, 1, 2, ..."""

    def __init__(self, path: Path, batch: int = 2000) -> None:
        self._conn = sqlite3.connect(path)
        self._conn.execute("PRAGMA journal_mode=OFF")
        self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.execute(_SCHEMA)
        self._rows: list[tuple[int, str, str, str, str | None]] = []
        self._batch = batch
        self._next = 0

    def add(self, doc: Doc) -> None:
        meta = json.dumps(doc.meta, ensure_ascii=False, default=str) if doc.meta else None
        self._rows.append((self._next, doc.id, doc.title, doc.text, meta))
        self._next += 1
        if len(self._rows) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        self._conn.executemany("INSERT INTO docs VALUES (?,?,?,?,?)", self._rows)
        self._rows.clear()

    def close(self) -> None:
        self._flush()
        self._conn.commit()
        self._conn.close()


def _select(n: int) -> str:
    return f"SELECT num, id, title, text, meta FROM docs WHERE num IN ({','.join('?' * n)})"


_SELECT = [_select(n) for n in range(101)]  # the statements of common sizes, made once


class Docstore:
    """Read-only access to a segment's documents."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            # check_same_thread=False: read-only, so sharing across threads is safe
            self._conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, check_same_thread=False)
            # the file never changes once published: read its pages through a memory map
            self._conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        return self._conn

    def get(self, nums: Iterable[int]) -> list[Doc]:
        """The documents numbered ``nums``, in that order."""
        nums = [int(n) for n in nums]
        found: dict[int, Doc] = {}
        for start in range(0, len(nums), 900):  # SQLite's bound-parameter limit
            chunk = nums[start : start + 900]
            rows = self.conn.execute(_SELECT[len(chunk)] if len(chunk) < len(_SELECT) else
                                     _select(len(chunk)), chunk).fetchall()
            for num, id_, title, text, meta in rows:
                found[num] = Doc(id_, text, title or "", json.loads(meta) if meta else {})
        return [found[n] for n in nums]

    def __iter__(self) -> Iterator[Doc]:
        for id_, title, text, meta in self.conn.execute("SELECT id, title, text, meta FROM docs ORDER BY num"):
            yield Doc(id=id_, text=text, title=title or "", meta=json.loads(meta) if meta else {})

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
