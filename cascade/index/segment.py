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
    docstore.sqlite     id, title, text, metadata
    col-<field>.npy, col-<field>.keys.json   filter columns (see cascade/index/columns.py)
    del-<generation>.npy   bool[N] tombstones (True = deleted), added by later commits

A segment's data files never change after it is published. Deleting documents publishes a
new tombstone file; the manifest entry names the current one. A reader opens every file it
needs when it opens the segment (memory maps, file handles, the SQLite connection), so a
snapshot stays readable after a writer removes the segment's directory (POSIX semantics).
"""

from __future__ import annotations

import json
import os
import sys
from array import array
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from cascade.data.types import Doc
from cascade.errors import BadIndexError, CascadeError
from cascade.index.columns import Column, ColumnWriter
from cascade.index.docstore import DOCSTORE_NAME, Docstore, DocstoreWriter
from cascade.index.fsutil import file_digest
from cascade.index.impacts import Impacts, bm25_impacts, bm25_impacts_numpy, build_blocks
from cascade.index.manifest import FileEntry, SegmentEntry
from cascade.text.analyzer import Analyzer

INDEXABLE_FIELDS = ("title", "text")
SMALL_SEGMENT_POSTINGS = 2_000_000
DEFAULT_BM25 = {"kind": "bm25", "k1": 0.9, "b": 0.4}
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
        self._docstore = DocstoreWriter(self.dir / DOCSTORE_NAME)
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

    def finish(self, name: str) -> SegmentEntry:
        """Write the arrays and return the segment's manifest entry."""
        self._docstore.close()
        small = len(self._term) <= SMALL_SEGMENT_POSTINGS and "numba" not in sys.modules
        if small:  # a small add in a fresh process: numpy is quicker than loading numba
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
                               (bm25_impacts_numpy if small else bm25_impacts)(
                                   arrays["post_tfs.npy"], lengths, arrays["post_docs.npy"],
                                            DEFAULT_BM25["k1"], DEFAULT_BM25["b"], avgdl))
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


class Segment:
    """Read side of a segment; arrays are memory-mapped."""

    def __init__(self, directory: Path, entry: SegmentEntry) -> None:
        self.dir = directory
        self.entry = entry
        self.n_docs = entry.n_docs
        self._check_sizes()
        self.indptr = self._load("post_indptr.npy")
        self.docs = self._load("post_docs.npy")
        self.tfs = self._load("post_tfs.npy")
        self.doclens = self._load("doclens.npy")
        self._id_offsets = self._load("ids_offsets.npy")
        self.deleted = self._load_deletes()
        self._impacts = (Impacts(**{attr: self._load(fname) for attr, fname in _IMPACT_FILES.items()})
                         if all(name in entry.files for name in _IMPACT_FILES.values()) else None)
        # open now, read later: the snapshot survives a writer removing this directory
        self._handles = {name: open(self.dir / name, "rb") for name in ("terms.json", "ids.bin")}
        self._columns: dict[str, Column] = {}
        self._column_files = {name: self._load(name) for name in entry.files if name.startswith("col-")
                              and name.endswith(".npy")}
        self._keys_files = {name: self._handles.setdefault(name, open(self.dir / name, "rb"))
                            for name in entry.files if name.endswith(".keys.json")}
        self.docstore = Docstore(self.dir / DOCSTORE_NAME)
        self.docstore.conn  # noqa: B018  (connect now, for the same reason)

    def _load_deletes(self) -> np.ndarray | None:
        name = self.entry.deletes
        if not name:
            return None
        deleted = np.array(self._load(name))  # a copy in memory: the file may go once superseded
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
        col = self._columns.get(field)
        if col is None:
            values = self._column_files.get(f"col-{field}.npy")
            if values is None:
                raise BadIndexError(f"{self.dir}: no column for filter field {field!r}; the index is damaged")
            keys_file = self._keys_files.get(f"col-{field}.keys.json")
            if keys_file is None:
                kind = "float" if values.dtype == np.float64 else "int"
                col = Column(kind, values)
            else:
                col = Column("keyword", values, json.loads(self._read(f"col-{field}.keys.json")))
            if len(values) != self.n_docs:
                raise BadIndexError(f"{self.dir}: column {field!r} has {len(values)} rows for {self.n_docs} docs")
            self._columns[field] = col
        return col

    def _read(self, name: str) -> bytes:
        f = self._handles[name]
        return os.pread(f.fileno(), os.fstat(f.fileno()).st_size, 0)

    def close(self) -> None:
        self.docstore.close()
        for f in self._handles.values():
            f.close()

    def _check_sizes(self) -> None:
        if not self.dir.is_dir():
            raise BadIndexError(f"{self.dir}: segment directory missing from index")
        for name, meta in self.entry.files.items():
            path = self.dir / name
            if not path.exists():
                raise BadIndexError(f"{path}: file missing from index")
            if path.stat().st_size != meta.size:
                raise BadIndexError(f"{path}: size {path.stat().st_size}, manifest says {meta.size}; the index is damaged")

    def _load(self, name: str) -> np.ndarray:
        try:
            return np.load(self.dir / name, mmap_mode="r")
        except Exception as err:  # noqa: BLE001  (a damaged .npy header fails in many ways)
            raise BadIndexError(f"{self.dir / name}: unreadable ({err})") from None

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
        return self._impacts

    @cached_property
    def term_numbers(self) -> dict[str, int]:
        try:
            terms = json.loads(self._read("terms.json").decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise BadIndexError(f"{self.dir / 'terms.json'}: unreadable ({err})") from None
        return {t: i for i, t in enumerate(terms)}

    @cached_property
    def _ids_blob(self) -> bytes:
        return self._read("ids.bin")

    def df(self, term: str) -> int:
        """Live documents of this segment containing ``term``."""
        t = self.term_numbers.get(term)
        if t is None:
            return 0
        return int(self.indptr[t + 1] - self.indptr[t]) - (0 if self.deleted is None else int(self.dead_df[t]))

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
        blob, off = self._ids_blob, self._id_offsets
        return [blob[off[n] : off[n + 1]].decode() for n in nums]

    @cached_property
    def id_numbers(self) -> dict[str, int]:
        """Doc id -> segment-local number (built on first use)."""
        return {id_: i for i, id_ in enumerate(self.doc_ids(range(self.n_docs)))}


def segment_impacts(seg: Segment, k1: float, b: float, avgdl: float) -> Impacts:
    """BM25 impacts for ``seg``: the stored ones when they were made with these settings."""
    wanted = {**DEFAULT_BM25, "k1": k1, "b": b, "avgdl": avgdl}
    stored = seg.entry.impacts
    if stored and {k: stored.get(k) for k in wanted} == wanted:
        found = seg.stored_impacts()
        if found is not None:
            return found
    # a process that has not loaded numba (an interactive search) computes them in numpy
    compute = bm25_impacts if "numba" in sys.modules else bm25_impacts_numpy
    values = compute(seg.tfs, seg.doclens, seg.docs, k1, b, avgdl)
    return build_blocks(seg.indptr, seg.docs, values)
