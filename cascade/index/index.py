"""An on-disk index: a directory whose MANIFEST.json lists immutable segments.

>>> import tempfile, cascade
>>> docs = [cascade.Doc("a", "cats purr"), cascade.Doc("b", "dogs bark at cats")]
>>> idx = cascade.Index.build(docs, tempfile.mkdtemp() + "/pets.idx")
>>> [h.id for h in idx.bm25().search("cat", k=2)]
['a', 'b']
"""

from __future__ import annotations

import os
import shutil
import uuid
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from cascade.data.types import Doc
from cascade.errors import CascadeError
from cascade.index.fsutil import fsync_dir, fsync_tree
from cascade.index.manifest import MANIFEST_NAME, Manifest
from cascade.index.segment import Segment, SegmentWriter
from cascade.text.analyzer import Analyzer

if TYPE_CHECKING:
    from cascade.retrieve.bm25 import BM25

ProgressFn = Callable[[int], None]


class Index:
    """A searchable index. Open one with :meth:`open`, make one with :meth:`build`."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest
        self.analyzer = Analyzer.from_dict(manifest.analyzer)
        self.fields = list(manifest.fields)
        self.segments = [Segment(path / s.name, s) for s in manifest.segments]
        self.bases = np.cumsum([0] + [s.n_docs for s in self.segments])

    # -- opening and building -------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "Index":
        """Open an existing index directory (memory-mapped; cheap)."""
        path = Path(path)
        return cls(path, Manifest.read(path))

    @classmethod
    def build(
        cls,
        docs: Iterable[Doc],
        path: str | os.PathLike[str],
        *,
        analyzer: Analyzer | None = None,
        fields: Sequence[str] = ("title", "text"),
        overwrite: bool = False,
        progress: ProgressFn | None = None,
        source: dict | None = None,
    ) -> "Index":
        """Index ``docs`` into the directory ``path`` and open it.

        The build happens in a temporary directory and is published by atomic rename: a
        crash part-way leaves any index already at ``path`` as it was. With
        ``overwrite=True`` an existing index at ``path`` is replaced; without it that is an
        error.
        """
        build_index(docs, Path(path), analyzer=analyzer or Analyzer(), fields=fields,
                    overwrite=overwrite, progress=progress, source=source or {})
        return cls.open(path)

    # -- statistics -----------------------------------------------------------------------

    @property
    def n_docs(self) -> int:
        return self.manifest.n_docs

    def __len__(self) -> int:
        return self.n_docs

    @property
    def avg_doc_length(self) -> float:
        return self.manifest.total_length / self.n_docs if self.n_docs else 0.0

    def df(self, term: str) -> int:
        """Number of documents containing ``term`` (an analysed term), over all segments."""
        return sum(seg.df(term) for seg in self.segments)

    @cached_property
    def version(self) -> str:
        return self.manifest.version_key()

    # -- documents ------------------------------------------------------------------------

    def _split(self, nums: Sequence[int] | np.ndarray) -> list[tuple[int, int, int]]:
        """(position, segment number, local number) for each global doc number."""
        nums = np.asarray(nums, dtype=np.int64)
        if len(nums) and (nums.min() < 0 or nums.max() >= self.n_docs):
            raise CascadeError(f"doc numbers must be in [0, {self.n_docs})")
        seg = np.searchsorted(self.bases, nums, side="right") - 1
        return list(zip(range(len(nums)), seg.tolist(), (nums - self.bases[seg]).tolist()))

    def doc_ids(self, nums: Sequence[int] | np.ndarray) -> list[str]:
        """External ids of global doc numbers."""
        if len(self.segments) == 1:
            return self.segments[0].doc_ids(np.asarray(nums, dtype=np.int64))
        return [self.segments[s].doc_ids([local])[0] for _, s, local in self._split(nums)]

    def docs(self, nums: Sequence[int] | np.ndarray) -> list[Doc]:
        """Stored documents for global doc numbers, in the order asked."""
        out: list[Doc | None] = [None] * len(nums)
        by_seg: dict[int, list[tuple[int, int]]] = {}
        for pos, s, local in self._split(nums):
            by_seg.setdefault(s, []).append((pos, local))
        for s, items in by_seg.items():
            for (pos, _), doc in zip(items, self.segments[s].docstore.get([l for _, l in items])):
                out[pos] = doc
        return out  # type: ignore[return-value]

    def doc_number(self, doc_id: str) -> int | None:
        """Global doc number of an external id, or None when absent."""
        for base, seg in zip(self.bases, self.segments):
            local = seg.id_numbers.get(doc_id)
            if local is not None:
                return int(base + local)
        return None

    def get(self, doc_id: str) -> Doc:
        """The stored document with id ``doc_id``."""
        num = self.doc_number(doc_id)
        if num is None:
            raise CascadeError(f"no document with id {doc_id!r} in {self.path}")
        return self.docs([num])[0]

    def verify(self) -> list[str]:
        """Re-hash every file against the manifest; returns the problems found."""
        return [p for seg in self.segments for p in seg.verify()]

    # -- retrieval ------------------------------------------------------------------------

    def bm25(self, k1: float = 0.9, b: float = 0.4, k: int = 1000) -> "BM25":
        """A BM25 retriever over this index (Lucene variant); ``k`` results per query as a stage."""
        from cascade.retrieve.bm25 import BM25

        return BM25(self, k1=k1, b=b, k=k)

    def close(self) -> None:
        for seg in self.segments:
            seg.docstore.close()

    def __repr__(self) -> str:
        return f"Index({str(self.path)!r}, docs={self.n_docs}, segments={len(self.segments)})"


def _write_segment(docs: Iterable[Doc], directory: Path, name: str, analyzer: Analyzer,
                   fields: Sequence[str], progress: ProgressFn | None):  # type: ignore[no-untyped-def]
    writer = SegmentWriter(directory, analyzer, fields)
    for doc in docs:
        writer.add(doc)
        if progress is not None and writer.n_docs % 1000 == 0:
            progress(writer.n_docs)
    if progress is not None:
        progress(writer.n_docs)
    if writer.n_docs == 0:
        raise CascadeError("no documents to index")
    return writer.finish(name)


def build_index(docs: Iterable[Doc], path: Path, *, analyzer: Analyzer, fields: Sequence[str],
                overwrite: bool, progress: ProgressFn | None, source: dict) -> None:
    """Build an index at ``path``; see :meth:`Index.build`."""
    if path.exists() and (path / MANIFEST_NAME).exists():
        if not overwrite:
            raise CascadeError(f"{path} already holds an index; use overwrite=True (CLI: --overwrite) to rebuild it")
        _replace_index(docs, path, analyzer, fields, progress, source)
        return
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise CascadeError(f"{path} exists and is not a Cascade index; choose a new or empty directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        entry = _write_segment(docs, tmp / "seg-000001", "seg-000001", analyzer, fields, progress)
        manifest = Manifest(analyzer=analyzer.to_dict(), fields=list(fields), segments=[entry], source=source)
        (tmp / MANIFEST_NAME).write_bytes(manifest.to_json())
        fsync_tree(tmp)
        if path.exists():
            path.rmdir()  # empty directory left by the user; rename cannot replace it on every OS
        try:
            os.rename(tmp, path)
        except OSError:
            raise CascadeError(f"{path} appeared while this build ran (another process?); not replaced") from None
        fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_index(docs: Iterable[Doc], path: Path, analyzer: Analyzer, fields: Sequence[str],
                   progress: ProgressFn | None, source: dict) -> None:
    """Rebuild in a new segment, then swap the manifest; old segments go only after the swap."""
    old = Manifest.read(path)
    name = f"seg-{old.generation + 1:06d}"
    tmp = path / f".tmp-{uuid.uuid4().hex[:12]}"
    try:
        entry = _write_segment(docs, tmp, name, analyzer, fields, progress)
        fsync_tree(tmp)
        if (path / name).exists():
            shutil.rmtree(path / name)  # debris of an earlier crashed rebuild, never in a manifest
        os.rename(tmp, path / name)
        fsync_dir(path)
        Manifest(analyzer=analyzer.to_dict(), fields=list(fields), segments=[entry],
                 generation=old.generation + 1, source=source).write(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    remove_unreferenced(path)


def remove_unreferenced(path: Path) -> None:
    """Delete segment directories and temporary debris the current manifest does not list."""
    live = {s.name for s in Manifest.read(path).segments}
    for child in path.iterdir():
        if child.is_dir() and child.name not in live and (child.name.startswith(("seg-", ".tmp-"))):
            shutil.rmtree(child, ignore_errors=True)
