"""One immutable index segment: CSR postings, document lengths, ids and docstore.

Files in a segment directory::

    terms.json          sorted list of terms; a term's position is its term number
    post_indptr.npy     int64[T+1]: postings of term t are [indptr[t], indptr[t+1])
    post_docs.npy       int32[P]: segment-local doc numbers, ascending within a term
    post_tfs.npy        int32[P]: term frequencies
    doclens.npy         int32[N]: document lengths in terms
    imp_values.npy      float32[P]: BM25 impacts for the settings in the manifest entry
    imp_block_*.npy, imp_term_max.npy   block maxima / last docs / offsets, term maxima
    ids.bin, ids_offsets.npy   utf-8 doc ids, concatenated, and int64[N+1] offsets
    docs.bin, docs_offsets.npy   stored documents: id, title, text, metadata (see docstore.py)
    col-<field>.npy, col-<field>.keys.json   filter columns (see cascade/index/columns.py)
    del-<generation>.npy   bool[N] tombstones (True = deleted), added by later commits

A segment's data files never change after it is published. Deleting documents publishes a
new tombstone file; the manifest entry names the current one. A reader opens every file it
needs when it opens the segment (memory maps, file handles), so a snapshot stays readable
after a writer removes the segment's directory (POSIX semantics).

**Checked on first use.** A segment opened with ``lazy=True`` (the default; ``Index.open``
with ``verify=False`` opens them unchecked) checks each file's checksum the first time its
data is read through the segment (postings for a search, the docstore for hits, a
representation for a neural stage, tombstones as they load), once per process: a damaged file
raises :class:`BadIndexError` naming it before any of its bytes reach a result. A file a
writer removed meanwhile is hashed from what the segment holds open.
"""

from __future__ import annotations

import json
import os
import threading
from array import array
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from cascade.core.errors import BadIndexError, CascadeError
from cascade.core.types import Doc
from cascade.filters.columns import Column
from cascade.index import bm25_formula
from cascade.index.columns import ColumnWriter
from cascade.index.docstore import DOCS_NAME, OFFSETS_NAME, Docstore, DocstoreWriter
from cascade.index.fsutil import buffer_digest, file_digest, remembered_digest
from cascade.index.impacts import Impacts, bm25_impacts, build_blocks
from cascade.index.manifest import FileEntry, SegmentEntry
from cascade.text.analyzer import Analyzer

INDEXABLE_FIELDS = ("title", "text")
SMALL_SEGMENT_POSTINGS = 2_000_000
DEFAULT_BM25 = {"kind": "bm25", "k1": bm25_formula.K1, "b": bm25_formula.B}
_IMPACT_FILES = {"values": "imp_values.npy", "block_indptr": "imp_block_indptr.npy",
                 "block_max": "imp_block_max.npy", "block_last": "imp_block_last.npy",
                 "term_max": "imp_term_max.npy"}


def doc_text(doc: Doc, fields: Sequence[str]) -> str:
    """The text of ``doc`` that gets indexed: the chosen fields joined by a space."""
    return " ".join(getattr(doc, f) for f in fields if getattr(doc, f))


class SegmentWriter:
    """Builds a segment from a stream of documents; postings are accumulated in compact arrays."""

    def __init__(self, directory: Path, analyzer: Analyzer, fields: Sequence[str],
                 filter_fields: dict[str, str] | None = None) -> None:
        bad = [f for f in fields if f not in INDEXABLE_FIELDS]
        if bad or not fields:
            raise CascadeError(f"cannot index fields {bad or fields}; choose from {', '.join(INDEXABLE_FIELDS)}")
        self.dir = directory
        self.dir.mkdir(parents=True)
        self.analyzer = analyzer
        self.fields = list(fields)
        self._vocab: dict[str, int] = {}
        self._term = array("i")
        self._tf = array("i")
        self._doc = array("i")
        self._lengths = array("i")
        self._ids = bytearray()
        self._id_offsets = array("q", [0])
        self._docstore = DocstoreWriter(self.dir)
        self._columns = ColumnWriter(filter_fields or {})

    @property
    def n_docs(self) -> int:
        return len(self._lengths)

    def add(self, doc: Doc) -> None:
        vocab = self._vocab
        terms = self.analyzer.terms(doc_text(doc, self.fields))
        counts = Counter(vocab.setdefault(t, len(vocab)) for t in terms)
        self._columns.add(doc.id, doc.meta)
        num = len(self._lengths)
        self._term.extend(counts.keys())
        self._tf.extend(counts.values())
        self._doc.extend([num] * len(counts))
        self._lengths.append(len(terms))
        self._ids += doc.id.encode()
        self._id_offsets.append(len(self._ids))
        self._docstore.add(doc)

    def abort(self) -> None:
        """Close what the writer holds open (after a failure; its directory is then removed)."""
        self._docstore.abort()

    def finish(self, name: str) -> SegmentEntry:
        """Write the arrays and return the segment's manifest entry."""
        self._docstore.close()
        small = len(self._term) <= SMALL_SEGMENT_POSTINGS
        if small:  # numpy is quicker than loading numba for a small segment
            from cascade.index.csr_numpy import csr_from_pairs_numpy as csr_from_pairs
        else:
            from cascade.index.csr import csr_from_pairs

        sorted_terms = sorted(self._vocab)
        remap = np.empty(len(sorted_terms), dtype=np.int32)
        remap[[self._vocab[t] for t in sorted_terms]] = np.arange(len(sorted_terms), dtype=np.int32)
        n_postings = len(self._term)
        indptr, post_docs, post_tfs = csr_from_pairs(
            np.frombuffer(self._term, dtype=np.int32) if n_postings else np.empty(0, np.int32),
            np.frombuffer(self._doc, dtype=np.int32) if n_postings else np.empty(0, np.int32),
            np.frombuffer(self._tf, dtype=np.int32) if n_postings else np.empty(0, np.int32),
            remap, len(sorted_terms))
        self._term, self._doc, self._tf = array("i"), array("i"), array("i")  # free the build buffers
        arrays = {
            "post_indptr.npy": indptr,
            "post_docs.npy": post_docs,
            "post_tfs.npy": post_tfs,
            "doclens.npy": np.frombuffer(self._lengths, dtype=np.int32),
            "ids_offsets.npy": np.frombuffer(self._id_offsets, dtype=np.int64),
        }
        lengths = arrays["doclens.npy"]
        avgdl = float(lengths.mean()) if len(lengths) else 0.0
        impacts = build_blocks(indptr, arrays["post_docs.npy"],
                               bm25_impacts(arrays["post_tfs.npy"], lengths, arrays["post_docs.npy"],
                                            bm25_formula.K1, bm25_formula.B, avgdl, compiled=not small))
        for attr, fname in _IMPACT_FILES.items():
            arrays[fname] = getattr(impacts, attr)
        for fname, arr in arrays.items():
            np.save(self.dir / fname, arr)
        self._columns.write(self.dir)
        (self.dir / "ids.bin").write_bytes(bytes(self._ids))
        (self.dir / "terms.json").write_text(json.dumps(sorted_terms, ensure_ascii=False), encoding="utf-8")
        files = {p.name: FileEntry(p.stat().st_size, file_digest(p)) for p in sorted(self.dir.iterdir())}
        return SegmentEntry(
            name=name,
            n_docs=self.n_docs,
            total_length=int(arrays["doclens.npy"].sum()),
            n_terms=len(sorted_terms),
            n_postings=n_postings,
            files=files,
            impacts={**DEFAULT_BM25, "avgdl": avgdl},
        )


def _checked(name: str, attr: str) -> Any:
    """A property giving the shared array ``attr``, checking file ``name`` on first use."""
    def get(self: "Segment") -> np.ndarray:
        data = self._data
        if data.lazy and name not in data.verified:
            self.use(name)
        return getattr(data, attr)

    return property(get)


class _SegmentData:
    """What a segment's immutable files hold, opened once and shared by every snapshot that
    lists the segment, with the values derived from them (term dictionary, id lookup, BM25
    impacts for given settings) cached alongside."""

    def __init__(self, directory: Path, entry: SegmentEntry, lazy: bool = True) -> None:
        self.dir = directory
        self.n_docs = entry.n_docs
        self.arrays: dict[str, np.ndarray] = {}  # file name -> its memory-mapped array
        self.indptr = self._array("post_indptr.npy")
        self.docs = self._array("post_docs.npy")
        self.tfs = self._array("post_tfs.npy")
        self.doclens = self._array("doclens.npy")
        self.id_offsets = self._array("ids_offsets.npy")
        self.impacts = (Impacts(**{attr: self._array(fname) for attr, fname in _IMPACT_FILES.items()})
                        if all(name in entry.files for name in _IMPACT_FILES.values()) else None)
        # open now, read later: the snapshot survives a writer removing this directory
        self.handles = {name: open(directory / name, "rb") for name in ("terms.json", "ids.bin")}
        self.column_files = {name: self._array(name) for name in entry.files
                             if name.startswith("col-") and name.endswith(".npy")}
        for name in entry.files:
            if name.endswith(".keys.json"):
                self.handles[name] = open(directory / name, "rb")
        self.docstore = Docstore(directory)
        self.derived: dict[Any, Any] = {}
        self.checked: set[str] = set()  # files whose sizes a snapshot already checked
        self._lock = threading.Lock()
        self.columns: dict[str, Column] = {}
        # checksums on first use (see the module docstring): files found intact
        self.lazy = lazy
        self.verified: set[str] = set()
        self._verify_lock = threading.Lock()

    def _array(self, name: str) -> np.ndarray:
        arr = self.arrays[name] = _load(self.dir, name)
        return arr

    def check(self, name: str, meta: FileEntry) -> None:
        """Raise :class:`BadIndexError` unless file ``name`` matches ``meta``'s checksum (hashed
        once per process; then remembered in ``verified``)."""
        with self._verify_lock:
            if name in self.verified:
                return
            problem = self.problem(name, meta, across_processes=True)
            if problem is not None:
                raise BadIndexError(f"{problem}; the index is damaged (cascade check lists every problem)")
            self.verified.add(name)

    def problem(self, name: str, meta: FileEntry, *, across_processes: bool = False) -> str | None:
        """What is wrong with file ``name`` (None when its checksum matches). A file removed
        since the segment was opened is hashed from the map or handle this segment holds.
        ``across_processes``: a digest an earlier process found for the unchanged file counts
        (see :func:`~cascade.index.fsutil.remembered_digest`); checks on first use take it,
        :meth:`Index.verify` does not."""
        path = self.dir / name
        try:
            found = remembered_digest(path, across_processes=across_processes)
        except FileNotFoundError:
            held = self.held_bytes(name, meta.size)
            if held is None:
                return f"{path}: missing"
            found = buffer_digest(held)
        except OSError as err:
            return f"{path}: unreadable ({err.strerror or err})"
        return None if found == meta.blake2b else f"{path}: checksum mismatch"

    def held_bytes(self, name: str, size: int) -> Any:
        """The whole content of file ``name`` as this segment holds it open (a memory map or a
        handle), or None when it holds no such thing."""
        if name in self.handles:
            fd = self.handles[name].fileno()
            return os.pread(fd, os.fstat(fd).st_size, 0)
        if name in (DOCS_NAME, OFFSETS_NAME):
            held = self.docstore.held_bytes(name)
        else:
            held = _mapped_file(self.arrays.get(name))
        return held if held is not None and len(held) == size else None

    def read(self, name: str) -> bytes:
        f = self.handles[name]
        return os.pread(f.fileno(), os.fstat(f.fileno()).st_size, 0)

    def cached(self, key: tuple[Any, ...], compute: Callable[[], Any], keep: int = 2) -> Any:
        """The value derived under ``key`` (computed on first use); of the keys sharing
        ``key[0]``, the ``keep`` most recent stay (BM25 impacts for an older avgdl go)."""
        with self._lock:
            if key in self.derived:
                return self.derived[key]
        value = compute()
        with self._lock:
            same_kind = [k for k in self.derived if k[0] == key[0]]
            for old in same_kind[: max(0, len(same_kind) - keep + 1)]:
                del self.derived[old]
            return self.derived.setdefault(key, value)

    def close(self) -> None:
        self.docstore.close()
        for f in self.handles.values():
            f.close()


class Segment:
    """Read side of one segment as one commit lists it: the shared immutable data plus this
    commit's tombstones and extra files (e.g. neural representations). Arrays are memory-mapped."""

    def __init__(self, directory: Path, entry: SegmentEntry, data: _SegmentData | None = None, *,
                 lazy: bool = True) -> None:
        self.dir = directory
        self.entry = entry
        self.n_docs = entry.n_docs
        self._check_sizes(skip=() if data is None else data.checked)
        self._data = data if data is not None else _SegmentData(directory, entry, lazy)
        self._data.checked |= set(entry.files)
        self.deleted = self._load_deletes()

    def with_entry(self, entry: SegmentEntry) -> "Segment":
        """This segment as a later commit lists it (new tombstones or files), sharing the data."""
        if entry == self.entry:
            return self
        if entry.name != self.entry.name or entry.n_docs != self.n_docs:
            return Segment(self.dir, entry, lazy=self._data.lazy)
        return Segment(self.dir, entry, self._data)

    # -- checksums on first use -----------------------------------------------------------

    @property
    def lazy(self) -> bool:
        """Whether files are checked on first use (see the module docstring)."""
        return self._data.lazy

    def use(self, *names: str) -> None:
        """About to read files ``names``: check those not yet found intact (when ``lazy``)."""
        data = self._data
        if not data.lazy:
            return
        for name in names:
            if name not in data.verified:
                meta = self.entry.files.get(name)
                if meta is not None:
                    data.check(name, meta)

    def check_files(self, names: Iterable[str] | None = None) -> None:
        """Check files ``names`` (default: every file this commit lists) against their checksums,
        whatever ``lazy`` says, each once per process: a :class:`BadIndexError` names the first
        damaged one. What a writer calls before reading segments it rewrites or encodes."""
        data = self._data
        for name in (self.entry.files if names is None else names):
            meta = self.entry.files.get(name)
            if meta is not None and name not in data.verified:
                data.check(name, meta)

    def problem(self, name: str) -> str | None:
        """What is wrong with listed file ``name`` (None when intact), hashing it now; an intact
        file counts as checked from then on."""
        data = self._data
        meta = self.entry.files[name]
        found = data.problem(name, meta)
        if found is None:
            data.verified.add(name)
        return found

    def is_verified(self, name: str) -> bool:
        return name in self._data.verified

    def mark_verified(self, name: str) -> None:
        """Record that file ``name`` was just hashed and found intact."""
        self._data.verified.add(name)

    # the immutable data, shared (each file checked on first use)
    indptr = _checked("post_indptr.npy", "indptr")
    docs = _checked("post_docs.npy", "docs")
    tfs = _checked("post_tfs.npy", "tfs")
    doclens = _checked("doclens.npy", "doclens")

    @property
    def docstore(self) -> Docstore:
        data = self._data
        if data.lazy and not (DOCS_NAME in data.verified and OFFSETS_NAME in data.verified):
            self.use(DOCS_NAME, OFFSETS_NAME)
        return data.docstore

    def read(self, name: str) -> bytes:
        """The whole content of a small file the segment holds open (terms, ids, keyword keys)."""
        self.use(name)
        return self._data.read(name)

    def cached(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """A value derived from this segment's immutable files, computed once per process for
        every snapshot that lists the segment (the key must name everything it depends on)."""
        return self._data.cached(key, compute)

    def _load_deletes(self) -> np.ndarray | None:
        name = self.entry.deletes
        if not name:
            return None
        self.use(name)
        deleted = np.array(_load(self.dir, name))  # a copy in memory: the file may go once superseded
        if deleted.dtype != np.bool_ or deleted.shape != (self.n_docs,) or int(deleted.sum()) != self.entry.n_deleted:
            raise BadIndexError(f"{self.dir / name}: tombstones do not match the manifest; the index is damaged")
        return deleted

    @property
    def n_live(self) -> int:
        return self.entry.n_live

    @cached_property
    def live(self) -> np.ndarray | None:
        """bool[n_docs], True for live documents; None when nothing is deleted."""
        return None if self.deleted is None else ~self.deleted

    def is_live(self, local: int) -> bool:
        return self.deleted is None or not bool(self.deleted[local])

    def column(self, field: str) -> Column:
        """The filter column of ``field`` (declared at index time)."""
        data = self._data
        col = data.columns.get(field)
        if col is None:
            values = data.column_files.get(f"col-{field}.npy")
            if values is None:
                raise BadIndexError(f"{self.dir}: no column for filter field {field!r}; the index is damaged")
            self.use(f"col-{field}.npy")
            keys_name = f"col-{field}.keys.json"
            if keys_name not in data.handles:
                kind = "float" if values.dtype == np.float64 else "int"
                col = Column(kind, values)
            else:
                col = Column("keyword", values, json.loads(self.read(keys_name)))
            if len(values) != self.n_docs:
                raise BadIndexError(f"{self.dir}: column {field!r} has {len(values)} rows for {self.n_docs} docs")
            data.columns[field] = col
        return col

    def close(self) -> None:
        self._data.close()

    def _check_sizes(self, skip: Iterable[str] = ()) -> None:
        if not self.dir.is_dir():
            raise BadIndexError(f"{self.dir}: segment directory missing from index")
        skipped = set(skip)
        for name, meta in self.entry.files.items():
            if name in skipped:
                continue
            path = self.dir / name
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise BadIndexError(f"{path}: file missing from index") from None
            if size != meta.size:
                raise BadIndexError(f"{path}: size {size}, manifest says {meta.size}; the index is damaged")

    def verify(self, max_size: int | None = None) -> list[str]:
        """Problems found by re-hashing every file (only those up to ``max_size`` bytes when
        given); empty when the segment is intact."""
        problems = []
        for name, meta in self.entry.files.items():
            path = self.dir / name
            if max_size is not None and meta.size > max_size:
                continue
            if not path.exists():
                problems.append(f"{path}: missing")
            elif file_digest(path) != meta.blake2b:
                problems.append(f"{path}: checksum mismatch")
        return problems

    def stored_impacts(self) -> Impacts | None:
        """The impacts written at build time (memory-mapped), if this segment has them."""
        data = self._data
        if data.lazy and data.impacts is not None and not data.verified.issuperset(_IMPACT_FILES.values()):
            self.use(*_IMPACT_FILES.values())
        return data.impacts

    @property
    def term_numbers(self) -> dict[str, int]:
        return self.cached(("terms",), self._term_numbers)

    def _term_numbers(self) -> dict[str, int]:
        try:
            terms = json.loads(self.read("terms.json").decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise BadIndexError(f"{self.dir / 'terms.json'}: unreadable ({err})") from None
        return {t: i for i, t in enumerate(terms)}

    def df(self, term: str) -> int:
        """Live documents of this segment containing ``term``."""
        t = self.term_numbers.get(term)
        if t is None:
            return 0
        return int(self.live_df[t])

    @cached_property
    def live_df(self) -> np.ndarray:
        """int64[T]: live documents containing each term, by term number."""
        df = np.diff(self.indptr)
        return df if self.deleted is None else df - self.dead_df

    @cached_property
    def dead_df(self) -> np.ndarray:
        """int64[T]: deleted documents containing each term (one pass over the postings)."""
        assert self.deleted is not None
        cum = np.zeros(len(self.docs) + 1, dtype=np.int64)
        np.cumsum(self.deleted[self.docs], out=cum[1:])
        return cum[self.indptr[1:]] - cum[self.indptr[:-1]]

    def doc_ids(self, nums: np.ndarray | Sequence[int]) -> list[str]:
        """External ids of local doc numbers."""
        nums = np.asarray(nums, dtype=np.int64)
        if not len(nums):
            return []
        data = self._data
        if data.lazy and "ids_offsets.npy" not in data.verified:
            self.use("ids_offsets.npy")
        blob, offsets = self.cached(("ids",), self._ids_blob), data.id_offsets
        starts, ends = offsets[nums].tolist(), offsets[nums + 1].tolist()
        return [blob[s:e].decode() for s, e in zip(starts, ends)]

    def _ids_blob(self) -> bytes:
        return self.read("ids.bin")

    @property
    def id_numbers(self) -> dict[str, int]:
        """Doc id -> segment-local number (built on first use, shared across snapshots)."""
        return self.cached(("id-numbers",), lambda: {id_: i for i, id_ in enumerate(self.doc_ids(range(self.n_docs)))})


def _mapped_file(arr: np.ndarray | None) -> Any:
    """The memory map under an array ``np.load(..., mmap_mode="r")`` made (it spans the whole
    .npy file, header included), or None."""
    while arr is not None:
        found = getattr(arr, "_mmap", None)
        if found is not None:
            return found
        arr = getattr(arr, "base", None)
    return None


def _load(directory: Path, name: str) -> np.ndarray:
    """A segment array, memory-mapped, as a plain ndarray view of the map: numba and numpy
    handle the np.memmap subclass through slow paths (about 0.5 us per array per call)."""
    try:
        return np.asarray(np.load(directory / name, mmap_mode="r"))
    except Exception as err:  # noqa: BLE001  (a damaged .npy header fails in many ways)
        raise BadIndexError(f"{directory / name}: unreadable ({err})") from None


def segment_impacts(seg: Segment, k1: float, b: float, avgdl: float, *, compiled: bool) -> Impacts:
    """BM25 impacts for ``seg``: the stored ones when they were made with these settings, else
    computed once per process (by the numba kernel when ``compiled``, else numpy: the same values)."""
    wanted = {**DEFAULT_BM25, "k1": k1, "b": b, "avgdl": avgdl}
    stored = seg.entry.impacts
    if stored and {k: stored.get(k) for k in wanted} == wanted:
        found = seg.stored_impacts()
        if found is not None:
            return found

    def compute() -> Impacts:
        values = bm25_impacts(seg.tfs, seg.doclens, seg.docs, k1, b, avgdl, compiled=compiled)
        return build_blocks(seg.indptr, seg.docs, values)

    return seg.cached(("bm25-impacts", k1, b, avgdl), compute)
