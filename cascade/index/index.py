"""An on-disk index: a directory whose MANIFEST.json lists immutable segments.

An opened :class:`Index` is a snapshot of one commit and never changes (Lucene's reader
model): writes (:meth:`Index.add`, :meth:`~Index.update`, :meth:`~Index.delete`,
:meth:`~Index.optimize`) commit to the directory, and :meth:`Index.refresh` returns a new
snapshot that sees them, sharing everything of the segments that did not change.

>>> import tempfile, cascade
>>> docs = [cascade.Doc("a", "cats purr"), cascade.Doc("b", "dogs bark at cats")]
>>> idx = cascade.Index.build(docs, tempfile.mkdtemp() + "/pets.idx")
>>> [h.id for h in cascade.BM25(idx).search("cat", k=2)]
['a', 'b']
>>> idx.add([cascade.Doc("c", "a cat and a dog")]); idx.delete(ids=["a"])
1
1
>>> [h.id for h in cascade.BM25(idx).search("cat", k=2)]   # this snapshot is unchanged
['a', 'b']
>>> idx = idx.refresh()
>>> [h.id for h in cascade.BM25(idx).search("cat", k=2)]
['c', 'b']
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np

from cascade.core.errors import BadIndexError, CascadeError
from cascade.core.types import Doc
from cascade.filters import compile_filter
from cascade.filters.columns import check_filter_fields
from cascade.index.fsutil import (
    DiskError,
    claim_temp_dir,
    disk_errors,
    file_digest,
    fsync_dir,
    fsync_tree,
    remove_dead_temp_dirs,
)
from cascade.index.lock import writer_lock
from cascade.index.manifest import MANIFEST_NAME, Manifest
from cascade.index.merge import TieredMergePolicy, apply_policy, live_docs, merge_segments
from cascade.index.passages import passage_docs, passage_settings
from cascade.index.representations import Reporter
from cascade.index.segment import Segment
from cascade.index.writer import (
    DocLike,
    add_documents,
    delete_documents,
    publish_segment,
    remove_debris,
    remove_unreferenced,
    segment_name,
    temporary_index_dir,
    write_segment,
)
from cascade.text.analyzer import Analyzer

if TYPE_CHECKING:
    from cascade.filters.expr import Expr

# Index.open(verify=None) re-hashes every file when the index is at most this big, and
# otherwise only the files up to SMALL_FILE bytes (tombstones, keys, ...); sizes always.
VERIFY_ALL_UP_TO = 64 << 20
SMALL_FILE = 1 << 20
OPEN_ATTEMPTS = 10  # an open that races a writer's clean-up retries on the newer manifest

ProgressFn = Callable[[int], None]
PhaseFn = Callable[[str, "int | None"], None]  # a new phase of work: (label, total)


class Index:
    """A searchable snapshot of an index directory. Open one with :meth:`open`, make one with
    :meth:`build`; change the directory with :meth:`add`, :meth:`update`, :meth:`delete` and
    :meth:`optimize` (each one commit) and see commits with :meth:`refresh`."""

    def __init__(self, path: Path, manifest: Manifest, segments: list[Segment], *, lazy: bool = True) -> None:
        self.path = path
        self.lazy = lazy  # files checked on first use (see cascade.index.segment)
        self.manifest = manifest
        self.segments = segments
        self.analyzer = Analyzer.from_dict(manifest.analyzer)
        self.fields = list(manifest.fields)
        self.bases = np.cumsum([0] + [s.n_docs for s in segments])

    @classmethod
    def _snapshot(cls, path: Path, manifest: Manifest, previous: "Index | None" = None, lazy: bool = True) -> "Index":
        """A snapshot of ``manifest``, reusing the segments ``previous`` already has open."""
        known = {seg.entry.name: seg for seg in previous.segments} if previous is not None else {}
        opened: list[Segment] = []
        try:
            for entry in manifest.segments:
                old = known.get(entry.name)
                opened.append(old.with_entry(entry) if old is not None else
                              Segment(path / entry.name, entry, lazy=lazy))
        except BaseException:
            for seg in opened:
                if seg.entry.name not in known:
                    seg.close()
            raise
        return cls(path, manifest, opened, lazy=lazy)

    @classmethod
    def _latest(cls, path: Path, previous: "Index | None" = None, lazy: bool = True) -> "Index":
        """A snapshot of the directory's current commit (retrying when a writer races the open:
        it may publish a new manifest and remove files the one we read lists)."""
        if previous is not None:
            lazy = previous.lazy
        for attempt in range(OPEN_ATTEMPTS):
            manifest = _read_manifest(path)
            if previous is not None and manifest.to_json() == previous.manifest.to_json():
                return previous
            try:
                return cls._snapshot(path, manifest, previous, lazy)
            except (BadIndexError, OSError) as err:
                if attempt < OPEN_ATTEMPTS - 1 and _read_manifest(path).to_json() != manifest.to_json():
                    continue  # a newer commit: open that one
                if isinstance(err, OSError):
                    raise _unreadable(path, err) from None
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- opening and building -------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, verify: bool | None = None) -> "Index":
        """Open an existing index directory (memory-mapped; cheap).

        File sizes are always checked against the manifest. Checksums: ``verify=True``
        re-hashes every file now, ``None`` (default) every file of an index up to 64 MiB and
        the small files (tombstones, keyword dictionaries) of a bigger one now, and every
        other file on its first use (the first search reading postings, the first hit read
        from the docstore, a neural stage loading a representation; once per process and
        file), ``False`` none, now or later. A damaged file raises :class:`BadIndexError`
        naming it, before any of its bytes reach a result.

        An open that races a writer (whose clean-up removes the files a new commit no longer
        lists) retries on the newer commit, the checksums included; a file the current commit
        lists that is missing or damaged is always reported. The temporary directory of a
        killed first build of ``path`` is removed (see :func:`build_index`).
        """
        path = Path(path)
        remove_dead_temp_dirs(path.parent, path.name)
        index, problems = _open_verified(path, verify)
        if problems:
            index.close()
            raise _damaged(problems)
        return index

    def check(self, verify: bool | None = None) -> None:
        """Raise :class:`BadIndexError` naming damaged files (see :meth:`open` for ``verify``).

        A file that a newer commit no longer lists and the writer removed after this snapshot
        opened it is not damage (this snapshot holds it open); it is not reported."""
        problems = self._current(self._problems(verify))
        if problems:
            self.close()
            raise _damaged(problems)

    def _problems(self, verify: bool | None, good: set[tuple[str, str, str]] | None = None,
                  opening: bool = False) -> list[tuple[str, str, str]]:
        """(segment, file, problem) for each file whose checksum does not match (see :meth:`open`
        for ``verify``); files in ``good`` are skipped and those found intact are added to it.
        ``opening``: files this process already found intact are not hashed again."""
        if verify is False:
            return []
        total = sum(f.size for s in self.manifest.segments for f in s.files.values())
        limit = None if verify or total <= VERIFY_ALL_UP_TO else SMALL_FILE
        found = []
        for seg in self.segments:
            for name, meta in seg.entry.files.items():
                key = (seg.entry.name, name, meta.blake2b)
                if (limit is not None and meta.size > limit) or (good is not None and key in good):
                    continue
                if opening and verify is None and seg.is_verified(name):  # checked in this process already
                    continue
                problem = seg.problem(name) if opening and verify is None else \
                    _file_problem(seg.dir / name, meta.blake2b)
                if problem is None:
                    seg.mark_verified(name)
                if problem is not None:
                    found.append((seg.entry.name, name, problem))
                elif good is not None:
                    good.add(key)
        return found

    def _current(self, found: list[tuple[str, str, str]], superseded: list[str] | None = None) -> list[str]:
        """The problems of ``found`` that concern files the directory's newest commit still lists
        as this snapshot does (damage); the others (files a newer commit dropped, which its
        clean-up may remove at any moment) go to ``superseded``."""
        if not found:
            return []
        try:
            latest = _read_manifest(self.path)
        except BadIndexError:
            latest = self.manifest
        if latest.to_json() == self.manifest.to_json():
            return [problem for *_, problem in found]
        listed = {(s.name, n): f for s in latest.segments for n, f in s.files.items()}
        mine = {(s.name, n): f for s in self.manifest.segments for n, f in s.files.items()}
        current = []
        for seg, name, problem in found:
            if listed.get((seg, name)) == mine[(seg, name)]:
                current.append(problem)
            elif superseded is not None:
                superseded.append(problem)
        return current

    def refresh(self) -> "Index":
        """A snapshot of the latest commit: a new :class:`Index` when there were commits since
        this one, else this same object. Segments that did not change are shared, with
        everything derived from them; this snapshot stays valid and unchanged."""
        return self._latest(self.path, self)

    reopen = refresh

    @property
    def passages(self) -> dict[str, int] | None:
        """A passage index's settings ``{"tokens": N, "overlap": M}``, else None (one entry per
        document); see :mod:`cascade.index.passages`."""
        found = self.manifest.passages
        return {"tokens": found["tokens"], "overlap": found.get("overlap", 0)} if found else None

    @property
    def generation(self) -> int:
        """The commit this snapshot shows (grows by one with every commit)."""
        return self.manifest.generation

    @classmethod
    def build(
        cls,
        docs: Iterable[DocLike],
        path: str | os.PathLike[str] | None = None,
        *,
        analyzer: Analyzer | None = None,
        fields: Sequence[str] = ("title", "text"),
        filter_fields: dict[str, str] | None = None,
        overwrite: bool = False,
        progress: ProgressFn | None = None,
        source: dict | None = None,
        passages: "int | dict[str, int] | None" = None,
    ) -> "Index":
        """Index ``docs`` into the directory ``path`` and open it.

        ``docs`` is any iterable (streamed, never held in memory) of :class:`~cascade.Doc` or
        dicts ``{"_id" or "id", "text", "title"?, ...}`` whose other keys become metadata; a
        record that is neither, or whose id or text is not a string, stops the build with a
        :class:`CascadeError` naming its position.

        Without ``path`` the index goes into a new temporary directory that is removed when
        the interpreter exits: for quick use (``cascade.BM25(cascade.Index.build(docs))``),
        tests and notebooks; ``index.path`` says where it is meanwhile.

        ``filter_fields`` declares metadata fields that filters can use, e.g.
        ``{"year": "int", "lang": "keyword", "published": "date", "score": "float"}``; values
        come from each document's ``meta``.

        The build happens in a temporary directory and is published by atomic rename: a
        crash part-way leaves any index already at ``path`` as it was. With
        ``overwrite=True`` an existing index at ``path`` is replaced; without it that is an
        error.

        ``passages`` makes a passage index: ``{"tokens": N, "overlap": M}`` (or just N) splits
        every document into passages of at most N words overlapping by up to M, at sentence
        and paragraph boundaries, Markdown headings kept in each passage's title; stages then
        search passages, and ``to_docs`` (added by default to pipeline strings) makes them
        documents again (see :mod:`cascade.index.passages`; progress counts passages).
        """
        target = temporary_index_dir() if path is None else Path(path)
        settings = passage_settings(passages)
        if settings is not None:
            docs = passage_docs(docs, settings)
        build_index(docs, target, analyzer=analyzer or Analyzer(), fields=fields,
                    filter_fields=check_filter_fields(filter_fields), overwrite=overwrite,
                    progress=progress, source=source or {}, passages=settings or {})
        return cls.open(target)

    # -- changing the index (each call is one commit, under the write lock) ----------------

    def add(self, docs: Iterable[DocLike], *, wait: float = 0.0, merge: bool = True,
            progress: ProgressFn | None = None, phase: PhaseFn | None = None) -> int:
        """Add documents (new ids only; ``Doc`` objects or dicts, as :meth:`build` takes) as
        one commit; returns how many. With ``merge`` the tiered merge policy then runs.
        ``wait``: seconds to wait for another writer. This snapshot does not change:
        :meth:`refresh` gives one that sees the new documents.

        The new documents get every stored representation in the same commit (encoded with
        the representation's model, progress on stderr, or through ``phase(label, total)`` then
        ``progress(done)`` when ``phase`` is given); a process that cannot build one (its
        extra is not installed) gets a :class:`CascadeError` and nothing changes."""
        return self.write(docs, update=False, wait=wait, merge=merge, progress=progress, phase=phase)[0]

    def update(self, docs: Iterable[DocLike], *, wait: float = 0.0, merge: bool = True,
               progress: ProgressFn | None = None, phase: PhaseFn | None = None) -> int:
        """Add or replace documents by id in one commit; returns how many replaced an old one."""
        return self.write(docs, update=True, wait=wait, merge=merge, progress=progress, phase=phase)[1]

    def write(self, docs: Iterable[DocLike], *, update: bool, wait: float = 0.0, merge: bool = True,
              progress: ProgressFn | None = None, phase: PhaseFn | None = None) -> tuple[int, int]:
        """Add (``update=False``) or add-or-replace documents as one commit: (added, replaced).
        A full or read-only disk is one :class:`CascadeError` line; the last commit stays."""
        reporter = _reporter(progress, phase)
        with _writing(self.path), writer_lock(self.path, wait):
            counts = add_documents(self.path, docs, update=update, progress=progress, reporter=reporter)
            if merge:
                apply_policy(self.path, TieredMergePolicy(), reporter=reporter)
        return counts

    def delete(self, ids: Iterable[str] = (), *, where: "str | Expr | None" = None, wait: float = 0.0) -> int:
        """Delete live documents by id and/or matching a filter, in one commit; returns how
        many were deleted (ids not in the index are ignored)."""
        if isinstance(ids, str):
            ids = [ids]
        with _writing(self.path), writer_lock(self.path, wait):
            return delete_documents(self.path, ids, where)

    def optimize(self, *, policy: TieredMergePolicy | None = None, wait: float = 0.0,
                 background: bool = False) -> threading.Thread | None:
        """Merge segments: all into one, dropping deleted documents (default), or only what
        ``policy`` selects. ``background=True`` runs it in a thread and returns the started
        thread (``refresh()`` after ``join()`` shows the result).

        Stored representations move into the merged segment (derived ones, such as HNSW
        graphs, are rebuilt for it); the segments merged are checked against their checksums
        first, so damage stops the merge (:class:`BadIndexError` naming the file)."""
        if background:
            thread = threading.Thread(target=self._optimize, args=(policy, wait), daemon=False,
                                      name=f"cascade-merge-{self.path.name}")
            thread.start()
            return thread
        self._optimize(policy, wait)
        return None

    def _optimize(self, policy: TieredMergePolicy | None, wait: float) -> int:
        with _writing(self.path), writer_lock(self.path, wait):
            if policy is None:
                return int(merge_segments(self.path, None))
            return apply_policy(self.path, policy)

    # -- statistics -----------------------------------------------------------------------

    @property
    def n_docs(self) -> int:
        """Live documents."""
        return self.manifest.n_docs

    @property
    def n_slots(self) -> int:
        """Size of the doc-number space: live and deleted documents of the listed segments."""
        return int(self.bases[-1])

    def __len__(self) -> int:
        return self.n_docs

    @property
    def avg_doc_length(self) -> float:
        """Average length of the live documents."""
        return self.manifest.total_length / self.n_docs if self.n_docs else 0.0

    @property
    def filter_fields(self) -> dict[str, str]:
        return dict(self.manifest.filter_fields)

    def df(self, term: str) -> int:
        """Number of live documents containing ``term`` (an analysed term), over all segments."""
        return sum(seg.df(term) for seg in self.segments)

    @cached_property
    def version(self) -> str:
        """Names this snapshot's content exactly (part of every stage's key)."""
        return self.manifest.version_key()

    # -- filters --------------------------------------------------------------------------

    def allowed_docs(self, where: "str | Expr | None" = None) -> list[np.ndarray | None]:
        """Per segment, bool[segment.n_docs]: the documents a first stage may return (live,
        and matching ``where``); None for a segment where every document is allowed.

        This is the pre-filter any first stage consumes: segment i's local doc number j is
        global doc number ``bases[i] + j``. A filter string or ``cascade.F`` expression is
        checked against the declared filter fields (CascadeError when it does not fit).
        """
        expr = compile_filter(where, self.manifest.filter_fields)
        out: list[np.ndarray | None] = []
        for seg in self.segments:
            mask = seg.live
            if expr is not None:
                hit = expr.mask(seg.column, seg.n_docs)
                mask = hit if mask is None else hit & mask
            out.append(mask)
        return out

    def allowed_numbers(self, where: "str | Expr | None" = None) -> np.ndarray:
        """Global doc numbers (int64, ascending) of the live documents matching ``where``."""
        parts = [np.arange(base, base + seg.n_docs) if mask is None else np.flatnonzero(mask) + base
                 for base, seg, mask in zip(self.bases, self.segments, self.allowed_docs(where))]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)

    # -- documents ------------------------------------------------------------------------

    def _split(self, nums: Sequence[int] | np.ndarray) -> list[tuple[int, int, int]]:
        """(position, segment number, local number) for each global doc number."""
        nums = np.asarray(nums, dtype=np.int64)
        if len(nums) and (nums.min() < 0 or nums.max() >= self.n_slots):
            raise CascadeError(f"doc numbers must be in [0, {self.n_slots})")
        seg = np.searchsorted(self.bases, nums, side="right") - 1
        return list(zip(range(len(nums)), seg.tolist(), (nums - self.bases[seg]).tolist()))

    def doc_ids(self, nums: Sequence[int] | np.ndarray) -> list[str]:
        """External ids of global doc numbers."""
        nums = np.asarray(nums, dtype=np.int64)
        if len(self.segments) == 1:
            return self.segments[0].doc_ids(nums)
        if len(nums) and (nums.min() < 0 or nums.max() >= self.n_slots):
            raise CascadeError(f"doc numbers must be in [0, {self.n_slots})")
        seg = np.searchsorted(self.bases, nums, side="right") - 1
        out: list[str] = [""] * len(nums)
        for s in np.unique(seg).tolist():
            where = np.flatnonzero(seg == s)
            for i, doc_id in zip(where.tolist(), self.segments[s].doc_ids(nums[where] - self.bases[s])):
                out[i] = doc_id
        return out

    def docs(self, nums: Sequence[int] | np.ndarray) -> list[Doc]:
        """Stored documents for global doc numbers, in the order asked."""
        return [Doc(i, text, title, meta) for i, title, text, meta in self.doc_fields(nums)]

    def doc_fields(self, nums: Sequence[int] | np.ndarray) -> list[tuple[str, str, str, dict]]:  # type: ignore[type-arg]
        """(id, title, text, meta) of the stored documents for global doc numbers, in order."""
        if len(self.segments) == 1:
            try:
                return self.segments[0].docstore.fields(nums)
            except IndexError:
                raise CascadeError(f"doc numbers must be in [0, {self.n_slots})") from None
        out: list[tuple[str, str, str, dict] | None] = [None] * len(nums)  # type: ignore[type-arg]
        by_seg: dict[int, list[tuple[int, int]]] = {}
        for pos, s, local in self._split(nums):
            by_seg.setdefault(s, []).append((pos, local))
        for s, items in by_seg.items():
            for (pos, _), fields in zip(items, self.segments[s].docstore.fields([l for _, l in items])):
                out[pos] = fields
        return out  # type: ignore[return-value]

    def __iter__(self) -> Iterator[Doc]:
        """The live documents, in doc-number order."""
        return live_docs(self.segments)

    def doc_number(self, doc_id: str) -> int | None:
        """Global doc number of the live document with this external id, or None."""
        for base, seg in zip(self.bases, self.segments):
            local = seg.id_numbers.get(doc_id)
            if local is not None and seg.is_live(local):
                return int(base + local)
        return None

    def doc_numbers(self, ids: Sequence[str]) -> np.ndarray:
        """Global doc numbers of live documents by external id (int64; -1 where absent)."""
        out = np.full(len(ids), -1, dtype=np.int64)
        for base, seg in zip(self.bases, self.segments):
            lookup = seg.id_numbers
            for i, doc_id in enumerate(ids):
                if out[i] < 0:
                    local = lookup.get(doc_id)
                    if local is not None and seg.is_live(local):
                        out[i] = base + local
        return out

    def docs_by_id(self, ids: Sequence[str]) -> list[Doc | None]:
        """Stored live documents by external id, in the order asked (None where absent)."""
        nums = self.doc_numbers(ids)
        found = self.docs(nums[nums >= 0])
        it = iter(found)
        return [next(it) if n >= 0 else None for n in nums.tolist()]

    def get(self, doc_id: str) -> Doc:
        """The stored document with id ``doc_id``."""
        num = self.doc_number(doc_id)
        if num is None:
            hint = f" (a passage index: its entries are passages, {doc_id!r}'s first is '{doc_id}#0')" \
                if self.passages and "#" not in doc_id else ""
            raise CascadeError(f"no document with id {doc_id!r} in {self.path}{hint}")
        return self.docs([num])[0]

    def verify(self) -> list[str]:
        """Re-hash every file against the manifest; returns the problems found (files a newer
        commit dropped and its clean-up removed are not problems: see :meth:`check`).
        :func:`verify_latest` checks a directory's newest commit."""
        return self._current(self._problems(True))

    def close(self) -> None:
        """Close this snapshot's files now (also those of snapshots sharing its segments);
        otherwise they close when no snapshot uses them any more."""
        for seg in self.segments:
            seg.close()

    def __repr__(self) -> str:
        return f"Index({str(self.path)!r}, docs={self.n_docs}, segments={len(self.segments)})"


# -- opening and checking: module helpers ---------------------------------------------------


def _read_manifest(path: Path) -> Manifest:
    try:
        return Manifest.read(path)
    except OSError as err:
        raise _unreadable(path, err) from None


def _unreadable(path: Path, err: OSError) -> BadIndexError:
    """An OSError met reading an index, as the one-line error the CLI prints."""
    where = err.filename or path
    if isinstance(err, FileNotFoundError):
        return BadIndexError(f"{where}: file missing from index; the index is damaged")
    return BadIndexError(f"{where}: cannot be read ({err.strerror or err})")


def _damaged(problems: list[str]) -> BadIndexError:
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return BadIndexError(f"{problems[0]}{more}; the index is damaged (cascade check lists every problem)")


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A write to the index ``path``: a full or read-only disk is one CascadeError line, and
    what the failed commit wrote (unlisted) is removed at once."""
    try:
        with disk_errors(path):
            yield
    except DiskError:
        _tidy(path)
        raise


def _tidy(path: Path) -> None:
    """Remove what no commit lists, if no other writer holds the index (tidying never fails)."""
    try:
        with writer_lock(path, 0.0):
            remove_debris(path)
    except Exception:  # noqa: BLE001
        pass


def _reporter(progress: ProgressFn | None, phase: PhaseFn | None) -> "Reporter | None":
    """Progress of the encoding phases of a write: through the caller's display when it gives
    ``phase`` (and ``progress``), else the default bar or line on stderr."""
    if phase is None or progress is None:
        return None

    @contextmanager
    def report(label: str, total: int) -> Iterator[ProgressFn]:
        phase(label, total)
        yield progress

    return report


def _file_problem(path: Path, digest: str) -> str | None:
    """What is wrong with one listed file (None when its checksum matches)."""
    try:
        found = file_digest(path)
    except FileNotFoundError:
        return f"{path}: missing"
    except OSError as err:
        return f"{path}: unreadable ({err.strerror or err})"
    return None if found == digest else f"{path}: checksum mismatch"


def _open_verified(path: Path, verify: bool | None) -> tuple[Index, list[str]]:
    """The newest commit of ``path``, opened and checked (see :meth:`Index.open`), and its
    problems. A problem with a file that a newer commit no longer lists means a writer
    committed and cleaned up meanwhile, not damage: the newer commit is opened and checked in
    turn (files already found intact are not re-hashed)."""
    good: set[tuple[str, str, str]] = set()
    for attempt in range(OPEN_ATTEMPTS):
        index = Index._latest(path, lazy=verify is not False)
        superseded: list[str] = []
        problems = index._current(index._problems(verify, good, opening=True), superseded)
        if not superseded or problems or attempt == OPEN_ATTEMPTS - 1:
            return index, problems
        index.close()
    raise AssertionError("unreachable")  # pragma: no cover


def verify_latest(path: str | os.PathLike[str]) -> tuple[Index, list[str]]:
    """Open the newest commit of ``path`` and re-hash every file it lists; returns the snapshot
    and every problem found (what ``cascade check`` reports). Races with a writer are retried
    as :meth:`Index.open` does. Raises :class:`BadIndexError` when the index cannot be opened."""
    return _open_verified(Path(path), True)


def repair_index(path: str | os.PathLike[str], *, wait: float = 10.0) -> list[tuple[Path, int]]:
    """Remove what no commit of ``path`` lists: the temporary directories of killed builds
    beside it, and inside it (under the write lock, waiting up to ``wait`` seconds for a
    writer) unlisted segments, files and temporary files; returns (path, bytes) of each."""
    path = Path(path)
    removed = remove_dead_temp_dirs(path.parent, path.name)
    if (path / MANIFEST_NAME).exists():
        with writer_lock(path, wait):
            removed += remove_debris(path)
    return removed


# -- building ---------------------------------------------------------------------------------


def build_index(docs: Iterable[Doc], path: Path, *, analyzer: Analyzer, fields: Sequence[str],
                filter_fields: dict[str, str], overwrite: bool, progress: ProgressFn | None,
                source: dict, wait: float = 0.0, passages: dict[str, int] | None = None) -> None:
    """Build an index at ``path``; see :meth:`Index.build`.

    A new index is built in a sibling directory ``.<name>.tmp-*`` that the build holds locked
    (``fsutil.claim_temp_dir``), then renamed into place. Of two processes building the same
    new path, one publishes and the other gets a :class:`CascadeError` saying so (with
    ``overwrite`` it replaces that index in a commit, as a later rebuild would); what a
    killed build left (no process holds it) is removed by the next build or open of ``path``
    or by ``cascade check --repair``. Over an existing index (``overwrite``) the rebuild is
    one commit under the write lock (waiting ``wait`` seconds for another writer). A full or
    read-only disk is a :class:`CascadeError` that leaves what was published as it was.
    """
    started = time.time()
    if (path / MANIFEST_NAME).exists():
        if not overwrite:
            raise CascadeError(f"{path} already holds an index; use overwrite=True (CLI: --overwrite) to rebuild it")
        with disk_errors(path), writer_lock(path, wait):
            _replace_index(docs, path, analyzer, fields, filter_fields, progress, source, passages or {})
        remove_dead_temp_dirs(path.parent, path.name, before=started)
        return
    with disk_errors(path, "nothing was published"):
        if not _empty_or_absent(path):
            raise CascadeError(f"{path} exists and is not a Cascade index; choose a new or empty directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_temp_dirs(path.parent, path.name, before=started)
        tmp, held = claim_temp_dir(path.parent, path.name)
        try:
            name = segment_name(1)
            entry = write_segment(docs, tmp / name, name, analyzer, fields, filter_fields, progress)
            manifest = Manifest(analyzer=analyzer.to_dict(), fields=list(fields), segments=[entry], source=source,
                                filter_fields=filter_fields, passages=dict(passages or {}))
            (tmp / MANIFEST_NAME).write_bytes(manifest.to_json())
            fsync_tree(tmp)
            try:
                _publish_new(tmp, path)
            except _PathTaken:
                if not (overwrite and (path / MANIFEST_NAME).exists()):
                    raise
                with writer_lock(path, wait):  # another build published first: replace it
                    _commit_rebuilt(path, tmp / name, manifest)
                return
            os.close(held)  # the lock now sits on the published directory: release it at once
            held = -1
            fsync_dir(path.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if held >= 0:
                os.close(held)


def _empty_or_absent(path: Path) -> bool:
    try:
        return not any(path.iterdir())
    except FileNotFoundError:
        return True
    except NotADirectoryError:
        return False


_TAKEN = (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR)


class _PathTaken(CascadeError):
    """Another build published at the path while this one ran."""


def _publish_new(tmp: Path, path: Path) -> None:
    """Rename the finished build ``tmp`` to ``path`` (absent or an empty directory)."""
    taken = _PathTaken(f"{path}: another process published an index there while this build ran; "
                       "this build was not published (open that index, or rebuild it with overwrite=True)")
    try:
        path.rmdir()  # an empty directory left by the user; rename cannot replace it on every OS
    except FileNotFoundError:
        pass
    except OSError as err:
        if err.errno in _TAKEN:
            raise taken from None
        raise
    try:
        os.rename(tmp, path)
    except OSError as err:
        if err.errno in _TAKEN:
            raise taken from None
        raise


def _commit_rebuilt(path: Path, segment: Path, built: Manifest) -> None:
    """Publish the single-segment build ``built`` (its segment in ``segment``) over the index at
    ``path`` as its next commit. The caller holds the write lock."""
    old = Manifest.read(path)
    name = segment_name(old.generation + 1)
    try:
        publish_segment(path, segment, name)
        dataclasses.replace(built, segments=[dataclasses.replace(built.segments[0], name=name)],
                            generation=old.generation + 1).write(path)
    except BaseException:
        try:  # free what the failed commit wrote (a full disk): no manifest lists it
            remove_unreferenced(path)
        except Exception:  # noqa: BLE001  (tidying must not hide the error)
            pass
        raise
    remove_unreferenced(path)


def _replace_index(docs: Iterable[Doc], path: Path, analyzer: Analyzer, fields: Sequence[str],
                   filter_fields: dict[str, str], progress: ProgressFn | None, source: dict,
                   passages: dict[str, int] | None = None) -> None:
    """Rebuild in a new segment, then swap the manifest; old segments go only after the swap.
    The caller holds the write lock."""
    old = Manifest.read(path)
    name = segment_name(old.generation + 1)
    tmp = path / f".tmp-{uuid.uuid4().hex[:12]}"
    try:
        entry = write_segment(docs, tmp, name, analyzer, fields, filter_fields, progress)
        publish_segment(path, tmp, name)
        Manifest(analyzer=analyzer.to_dict(), fields=list(fields), segments=[entry],
                 generation=old.generation + 1, source=source, filter_fields=filter_fields,
                 passages=dict(passages or {})).write(path)
    except BaseException:
        try:  # free what the failed rebuild wrote (a full disk): no manifest lists it
            remove_unreferenced(path)
        except Exception:  # noqa: BLE001  (tidying must not hide the error)
            pass
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    remove_unreferenced(path)
