"""Per-segment document store: id, title, text and metadata by doc number, memory-mapped.

Two files per segment: ``docs.bin``, every document's four fields as UTF-8 one after the
other (id, title, text, metadata as JSON, empty when there is none), and
``docs_offsets.npy``, int64[4N + 1]: field f of document n is ``docs.bin[o[4n+f]:o[4n+f+1]]``.
Reading a document is two slices of a memory map and a decode per field, so a search's ten
hits cost microseconds (about a third of a SQLite row lookup per document, measured when this
store replaced one); the files never change once published, like every segment file.

>>> import tempfile, pathlib
>>> from cascade.core.types import Doc
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> w = DocstoreWriter(d)
>>> w.add(Doc("a", "first text", "A title")); w.add(Doc("b", "second", meta={"year": 2020}))
>>> w.close()
>>> [(doc.id, doc.title, doc.meta) for doc in Docstore(d).get([1, 0])]
[('b', '', {'year': 2020}), ('a', 'A title', {})]
"""

from __future__ import annotations

import json
import mmap
import os
from array import array
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from cascade.core.errors import BadIndexError
from cascade.core.types import Doc

DOCS_NAME = "docs.bin"
OFFSETS_NAME = "docs_offsets.npy"
FIELDS = 4  # id, title, text, meta
BATCH = 2000  # documents read per step when iterating
FEW = 64  # up to this many documents per read (a search's hits) take the path without numpy reductions
_FIELD_STEPS = np.arange(FIELDS + 1)


class DocstoreWriter:
    """Appends documents in order; doc numbers are 0, 1, 2, ..."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file = open(directory / DOCS_NAME, "wb", buffering=1 << 20)
        self._offsets = array("q", [0])
        self._size = 0

    def add(self, doc: Doc) -> None:
        meta = json.dumps(doc.meta, ensure_ascii=False, default=str) if doc.meta else ""
        for field in (doc.id, doc.title, doc.text, meta):
            data = field.encode()
            self._file.write(data)
            self._size += len(data)
            self._offsets.append(self._size)

    def close(self) -> None:
        self._file.close()
        np.save(self.directory / OFFSETS_NAME, np.frombuffer(self._offsets, dtype=np.int64))

    def abort(self) -> None:
        """Close the file without finishing the store (after a failure; a full disk may refuse
        to write what is still buffered)."""
        try:
            self._file.close()
        except OSError:
            pass


class Docstore:
    """Read-only access to a segment's documents. Both files are opened (and mapped) when the
    store is made, so the store stays readable after a writer removes the segment."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / DOCS_NAME
        offsets_path = directory / OFFSETS_NAME
        try:
            # a plain ndarray view of the map: indexing a np.memmap costs several microseconds more
            self._offsets = np.asarray(np.load(offsets_path, mmap_mode="r"))
        except Exception as err:  # noqa: BLE001  (a damaged .npy header fails in many ways)
            raise BadIndexError(f"{offsets_path}: unreadable ({err}); the index is damaged") from None
        try:
            self._file = open(self._path, "rb")
        except OSError as err:
            raise BadIndexError(f"{self._path}: unreadable ({err})") from None
        size = int(self._offsets[-1]) if self._offsets.ndim == 1 and len(self._offsets) else -1
        if self._offsets.dtype != np.int64 or (len(self._offsets) - 1) % FIELDS or \
                size != os.fstat(self._file.fileno()).st_size:
            self._file.close()
            raise BadIndexError(f"{offsets_path}: does not match {DOCS_NAME}; the index is damaged")
        self._blob: mmap.mmap | bytes = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""

    def __len__(self) -> int:
        return (len(self._offsets) - 1) // FIELDS

    def held_bytes(self, name: str) -> Any:
        """The whole content of ``docs.bin`` or ``docs_offsets.npy`` as this store holds it
        mapped (so it can be checked after a writer removed the file), or None."""
        if name == DOCS_NAME:
            return self._blob
        base: Any = self._offsets
        while base is not None and getattr(base, "_mmap", None) is None:
            base = getattr(base, "base", None)
        return None if base is None else base._mmap

    def get(self, nums: Iterable[int] | np.ndarray) -> list[Doc]:
        """The documents numbered ``nums``, in that order."""
        return [Doc(i, text, title, meta) for i, title, text, meta in self.fields(nums)]

    def fields(self, nums: Iterable[int] | np.ndarray) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(id, title, text, meta) of the documents numbered ``nums``, in that order (what a
        search's hits are made of, without a Doc in between)."""
        if isinstance(nums, np.ndarray) and nums.ndim == 1 and nums.dtype.kind in "iu" and len(nums) <= FEW:
            # a search's few hits: their numbers and offsets as Python ints, no numpy reductions
            numbers = nums.tolist()
            if not numbers:
                return []
            if min(numbers) < 0 or max(numbers) >= len(self):
                raise IndexError(f"doc numbers must be in [0, {len(self)})")
            offsets = self._offset_view
            bounds = [offsets[FIELDS * n:FIELDS * n + FIELDS + 1] for n in numbers]
        else:
            base = FIELDS * np.asarray(nums if isinstance(nums, np.ndarray) else list(nums), dtype=np.int64)
            if not len(base):
                return []
            if base.min() < 0 or base.max() >= len(self._offsets) - 1:
                raise IndexError(f"doc numbers must be in [0, {len(self)})")
            bounds = self._offsets[base[:, None] + _FIELD_STEPS].tolist()
        blob = self._blob
        try:  # each field decoded on its own: fewer copies than one decode and slices of the str
            return [(blob[a:b].decode(), blob[b:c].decode(), blob[c:d].decode(), json.loads(blob[d:e]) if e > d else {})
                    for a, b, c, d, e in bounds]
        except (UnicodeDecodeError, ValueError) as err:
            raise BadIndexError(f"{self._path}: unreadable document ({err}); the index is damaged") from None

    @cached_property
    def _offset_view(self) -> memoryview:
        """The offsets as a memoryview: a slice of it unpacks into Python ints (cheaper than a
        numpy slice and its ``.tolist()``)."""
        return memoryview(self._offsets)

    def __iter__(self) -> Iterator[Doc]:
        for start in range(0, len(self), BATCH):
            yield from self.get(np.arange(start, min(start + BATCH, len(self))))

    def close(self) -> None:
        if isinstance(self._blob, mmap.mmap):
            self._blob.close()
        self._file.close()
