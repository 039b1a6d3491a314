"""Changing a published index: add, update and delete documents, merge segments.

Every change is one commit, made under the index's write lock (:mod:`cascade.index.lock`):

1. new data goes into files no manifest lists yet: a new segment built in ``.tmp-*`` and
   renamed to ``seg-<generation>``, tombstone files ``del-<generation>.npy`` in existing
   segments; each is fsync'd, and so are the directories holding them;
2. the new manifest is written to a temp file, fsync'd and renamed over ``MANIFEST.json``
   (then the directory is fsync'd): the commit point;
3. files the new manifest no longer lists are removed (also at the start of the next
   commit, in case a crash came between 2 and 3).

A crash before 2 leaves the previous commit; after it, the new one. Readers never lock:
they read whichever manifest is current when they open or ``refresh()``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from cascade.core.errors import CascadeError
from cascade.core.types import Doc, as_doc
from cascade.index import representations
from cascade.index.debris import remove_debris
from cascade.index.docstore import Docstore
from cascade.index.fsutil import file_digest, fsync_dir, fsync_file, fsync_tree
from cascade.index.hooks import run_segment_hooks
from cascade.index.manifest import FileEntry, Manifest, SegmentEntry
from cascade.index.passages import document_of, locate_document, passage_docs
from cascade.index.segment import Segment, SegmentWriter
from cascade.text.analyzer import Analyzer

ProgressFn = Callable[[int], None]
DocLike = Doc | Mapping[str, Any]  # what a build, add or update takes (see cascade.core.types.as_doc)


def temporary_index_dir() -> Path:
    """A fresh path for an index that lives as long as this process: inside a new temporary
    directory that is removed at interpreter exit (``Index.build(docs)`` without a path)."""
    root = Path(tempfile.mkdtemp(prefix="cascade-index-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root / "index"


def segment_name(generation: int) -> str:
    return f"seg-{generation:06d}"


def write_segment(docs: Iterable[DocLike], directory: Path, name: str, analyzer: Analyzer, fields: Sequence[str],
                  filter_fields: dict[str, str], progress: ProgressFn | None = None,
                  check: Callable[[Doc], None] | None = None) -> SegmentEntry:
    """Index ``docs`` (``Doc`` objects or dicts, see :func:`~cascade.core.types.as_doc`) into a
    new segment directory (not yet fsync'd or published). A bad record stops the write with a
    :class:`CascadeError` naming its position."""
    if isinstance(docs, (str, bytes, Doc, Mapping)):
        raise CascadeError(f"documents must be an iterable of cascade.Doc or dicts, not one {type(docs).__name__} "
                           "(wrap a single document in a list)")
    writer = SegmentWriter(directory, analyzer, fields, filter_fields)
    try:
        for position, record in enumerate(docs):
            doc = as_doc(record, position)
            if check is not None:
                check(doc)
            writer.add(doc)
            if progress is not None and writer.n_docs % 1000 == 0:
                progress(writer.n_docs)
        if progress is not None:
            progress(writer.n_docs)
        if writer.n_docs == 0:
            raise CascadeError("no documents to index")
        entry = writer.finish(name)
    except BaseException:
        writer.abort()  # close its files now: a removed file's space is freed only when closed
        raise
    store = Docstore(directory)
    try:
        extra = run_segment_hooks(directory, store)
    finally:
        store.close()
    for fname in extra:
        path = directory / fname
        entry.files[fname] = FileEntry(path.stat().st_size, file_digest(path))
    return entry


def publish_segment(path: Path, tmp: Path, name: str) -> None:
    """fsync a finished segment and move it into the index under ``name`` (not yet listed)."""
    fsync_tree(tmp)
    if (path / name).exists():
        shutil.rmtree(path / name)  # debris of a crashed commit: never listed in a manifest
    os.rename(tmp, path / name)
    fsync_dir(path)


def remove_unreferenced(path: Path) -> list[tuple[Path, int]]:
    """Delete what the current manifest does not list: segments, old tombstones, temp debris
    (see :func:`cascade.index.debris.remove_debris`); returns (path, bytes) of what went. Call
    it holding the write lock (only the writer puts unlisted files into an index)."""
    return remove_debris(path)


@dataclass
class Snapshot:
    """The index as the last commit left it, opened by a writer (under the lock)."""

    path: Path
    manifest: Manifest
    segments: list[Segment]

    @classmethod
    def open(cls, path: Path) -> "Snapshot":
        remove_unreferenced(path)  # debris of a crashed commit
        manifest = Manifest.read(path)
        return cls(path, manifest, [Segment(path / s.name, s) for s in manifest.segments])

    def close(self) -> None:
        for seg in self.segments:
            seg.close()

    def locate(self, doc_id: str) -> tuple[int, int] | None:
        """(segment position, local number) of the live document ``doc_id``."""
        for s, seg in enumerate(self.segments):
            local = seg.id_numbers.get(doc_id)
            if local is not None and seg.is_live(local):
                return s, local
        return None

    def commit(self, segments: list[SegmentEntry]) -> Manifest:
        """Publish a manifest listing ``segments`` as the next generation; tidy up after."""
        new = replace(self.manifest, segments=segments, generation=self.manifest.generation + 1)
        new.write(self.path)
        remove_unreferenced(self.path)
        return new

    @property
    def next_generation(self) -> int:
        return self.manifest.generation + 1


def tombstone(snap: Snapshot, dead: dict[int, np.ndarray]) -> list[SegmentEntry]:
    """Segment entries after also deleting ``dead[s]`` (local numbers) in segment s.

    New tombstone files are written and fsync'd; segments left with no live documents are
    dropped from the list.
    """
    out = []
    gen = snap.next_generation
    for s, (entry, seg) in enumerate(zip(snap.manifest.segments, snap.segments)):
        locals_ = dead.get(s)
        if locals_ is None or len(locals_) == 0:
            out.append(entry)
            continue
        deleted = np.zeros(seg.n_docs, dtype=bool) if seg.deleted is None else seg.deleted.copy()
        deleted[locals_] = True
        n_deleted = int(deleted.sum())
        if n_deleted == seg.n_docs:
            continue  # nothing live: the segment leaves the index
        name = f"del-{gen:06d}.npy"
        target = seg.dir / name
        np.save(target, deleted)
        fsync_file(target)
        files = {k: v for k, v in entry.files.items() if k != entry.deletes}
        files[name] = FileEntry(target.stat().st_size, file_digest(target))
        out.append(replace(entry, files=files, deletes=name, n_deleted=n_deleted,
                           deleted_length=int(np.asarray(seg.doclens)[deleted].sum())))
    for s in dead:
        fsync_dir(snap.segments[s].dir)
    return out


def add_documents(path: Path, docs: Iterable[DocLike], *, update: bool, progress: ProgressFn | None = None,
                  reporter: representations.Reporter | None = None) -> tuple[int, int]:
    """Index ``docs`` as a new segment in one commit; with ``update`` a document whose id is
    already live replaces it (otherwise that is an error). Returns (added, replaced).

    The new segment gets every representation the manifest lists in the same commit (its
    documents encoded, derived kinds built; progress through ``reporter``); when this process
    cannot build one, nothing is written. The files of existing segments it reads (ids,
    tombstones, lengths) are checked against their checksums on first use.

    In a passage index (:mod:`cascade.index.passages`) each document is split into passages
    first, a replaced document loses all its old passages, and the counts are of documents."""
    snap = Snapshot.open(path)
    try:
        m = snap.manifest
        if m.representations:
            representations.require_all(m, f"adding documents to {path}")
        seen: set[str] = set()
        dead: dict[int, list[int]] = {}
        documents = [0]

        def check(doc: Doc) -> None:
            if m.passages:
                doc_id, n = document_of(doc)
                if n:
                    return  # checked with its document's first passage
                documents[0] += 1
                if doc_id in seen:
                    raise CascadeError(f"document id {doc_id!r} appears twice in the documents to add")
                seen.add(doc_id)
                old = locate_document(snap.segments, doc_id)
                if old and not update:
                    raise CascadeError(f"document id {doc_id!r} is already in {path}; use update (CLI: "
                                       "cascade add --update) to replace it")
                for s, local in old:
                    dead.setdefault(s, []).append(local)
                return
            if doc.id in seen:
                raise CascadeError(f"document id {doc.id!r} appears twice in the documents to add")
            seen.add(doc.id)
            found = snap.locate(doc.id)
            if found is not None:
                if not update:
                    raise CascadeError(f"document id {doc.id!r} is already in {path}; use update (CLI: "
                                       "cascade add --update) to replace it")
                dead.setdefault(found[0], []).append(found[1])

        if m.passages:
            docs = passage_docs(docs, m.passages)
        name = segment_name(snap.next_generation)
        tmp = path / f".tmp-{uuid.uuid4().hex[:12]}"
        try:
            entry = write_segment(docs, tmp, name, Analyzer.from_dict(m.analyzer), m.fields, m.filter_fields,
                                  progress, check)
            if m.representations:
                new = Segment(tmp, entry, lazy=False)
                try:
                    representations.build_new_segment(m, new, snap.next_generation, m.fields, reporter)
                finally:
                    new.close()
            publish_segment(path, tmp, name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        kept = tombstone(snap, {s: np.array(v, dtype=np.int64) for s, v in dead.items()})
        snap.commit(kept + [entry])
        if m.passages:
            replaced = sum(1 for s, v in dead.items() for pid in snap.segments[s].doc_ids(v) if pid.endswith("#0"))
            return documents[0], replaced
        return entry.n_docs, sum(len(v) for v in dead.values())
    finally:
        snap.close()


def delete_documents(path: Path, ids: Iterable[str] = (), where: object = None) -> int:
    """Delete live documents by id and/or by filter in one commit; returns how many. In a
    passage index the ids are document ids, every passage of a document goes, and the count
    is of documents (a filter matches a document's passages alike: they share its metadata)."""
    from cascade.filters import compile_filter

    snap = Snapshot.open(path)
    try:
        expr = compile_filter(where, snap.manifest.filter_fields)  # type: ignore[arg-type]
        dead: dict[int, np.ndarray] = {}
        for doc_id in ids:
            found_all = locate_document(snap.segments, str(doc_id)) if snap.manifest.passages else \
                [f for f in [snap.locate(str(doc_id))] if f is not None]
            for found in found_all:
                dead.setdefault(found[0], np.empty(0, np.int64))
                dead[found[0]] = np.append(dead[found[0]], found[1])
        if expr is not None:
            for s, seg in enumerate(snap.segments):
                hit = expr.mask(seg.column, seg.n_docs)
                if seg.live is not None:
                    hit &= seg.live
                if hit.any():
                    dead[s] = np.union1d(dead.get(s, np.empty(0, np.int64)), np.flatnonzero(hit))
        count = sum(len(np.unique(v)) for v in dead.values())
        if count and snap.manifest.passages:  # documents: their first passages
            count = sum(1 for s, v in dead.items() for pid in snap.segments[s].doc_ids(np.unique(v))
                        if pid.endswith("#0"))
        if count:
            snap.commit(tombstone(snap, dead))
        return count
    finally:
        snap.close()
