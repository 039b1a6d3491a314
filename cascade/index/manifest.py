"""MANIFEST.json: the single commit point of an index directory.

An index is whatever its manifest says: the analyzer, the indexed fields, the declared
filter fields and the list of segments with each file's size and checksum, and per segment
its current tombstone file. A new manifest is published by atomic rename, so a reader sees
either the previous index or the new one, never a mix.

Keys this version does not know (top-level or per segment, e.g. ``representations`` written
by a newer Cascade) are kept in ``extra`` and written back unchanged when a writer rewrites
the manifest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cascade.core.errors import BadIndexError
from cascade.index.fsutil import atomic_write_bytes

MANIFEST_NAME = "MANIFEST.json"
FORMAT_NAME = "cascade-index"
FORMAT_VERSION = 2  # 2: documents in docs.bin + docs_offsets.npy (1: SQLite)


@dataclass
class FileEntry:
    size: int
    blake2b: str


def _split_known(cls: type, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    known = {f.name for f in fields(cls)} - {"extra"}
    return {k: v for k, v in data.items() if k in known}, {k: v for k, v in data.items() if k not in known}


@dataclass
class SegmentEntry:
    """One immutable segment: a sub-directory holding postings, lengths and docstore.

    Deleting documents never rewrites a segment's data: it publishes a new tombstone file
    ``del-<generation>.npy`` (bool[n_docs], True = deleted) listed in ``files`` and named by
    ``deletes``; ``n_deleted`` and ``deleted_length`` keep live statistics exact without
    reading it.
    """

    name: str
    n_docs: int
    total_length: int
    n_terms: int
    n_postings: int
    files: dict[str, FileEntry] = field(default_factory=dict)
    # settings the stored impacts were computed with: {"kind": "bm25", "k1", "b", "avgdl"}
    impacts: dict[str, Any] = field(default_factory=dict)
    deletes: str = ""
    n_deleted: int = 0
    deleted_length: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_live(self) -> int:
        return self.n_docs - self.n_deleted

    @property
    def live_length(self) -> int:
        return self.total_length - self.deleted_length

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SegmentEntry":
        known, extra = _split_known(cls, data)
        files = {str(k): FileEntry(**v) for k, v in known.get("files", {}).items()}
        return cls(**{**known, "files": files, "extra": {**data.get("extra", {}), **extra}})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        extra = out.pop("extra")
        return {**extra, **out}


@dataclass
class Manifest:
    analyzer: dict[str, Any]
    fields: list[str]
    segments: list[SegmentEntry]
    generation: int = 1
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    source: dict[str, Any] = field(default_factory=dict)
    # neural representations stored beside the postings: name -> spec (kind, model, dim, ...);
    # their arrays are per-segment files named rep-<name>.<part>.g<gen>.npy (see representations.py)
    representations: dict[str, dict[str, Any]] = field(default_factory=dict)
    # metadata fields that filters can use: name -> "int" | "float" | "date" | "keyword"
    filter_fields: dict[str, str] = field(default_factory=dict)
    # a passage index: {"tokens": N, "overlap": M} (see cascade/index/passages.py); empty: one entry per document
    passages: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_docs(self) -> int:
        """Live documents (deleted ones are not counted)."""
        return sum(s.n_live for s in self.segments)

    @property
    def n_slots(self) -> int:
        """Document numbers in use, deleted ones included (the global doc-number space)."""
        return sum(s.n_docs for s in self.segments)

    @property
    def total_length(self) -> int:
        """Total length of the live documents, in terms."""
        return sum(s.live_length for s in self.segments)

    def version_key(self) -> str:
        """Changes whenever the index content changes (used in cache keys)."""
        digests = ",".join(f"{s.name}:{s.files[n].blake2b}" for s in self.segments for n in sorted(s.files))
        return f"g{self.generation}:{digests}"

    def to_json(self) -> bytes:
        data = {k: v for k, v in asdict(self).items() if k not in ("extra", "segments")}
        data = {**self.extra, **data, "segments": [s.to_dict() for s in self.segments]}
        if not self.filter_fields:
            data.pop("filter_fields")
        if not self.passages:
            data.pop("passages")
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    def write(self, index_dir: Path) -> None:
        atomic_write_bytes(index_dir / MANIFEST_NAME, self.to_json())

    @classmethod
    def read(cls, index_dir: Path) -> "Manifest":
        path = index_dir / MANIFEST_NAME
        if not index_dir.exists():
            raise BadIndexError(f"{index_dir}: no such index directory")
        if not path.exists():
            raise BadIndexError(f"{index_dir}: not a Cascade index (no {MANIFEST_NAME})")
        try:
            data = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as err:
            raise BadIndexError(f"{path}: damaged manifest ({err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise BadIndexError(f"{path}: not a Cascade index manifest")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BadIndexError(
                f"{path}: index format version {version}, this Cascade reads {FORMAT_VERSION}; rebuild the index"
            )
        try:
            if not isinstance(data["segments"], list) or not all(isinstance(s, dict) for s in data["segments"]):
                raise TypeError("segments must be a list of objects")
            segments = [SegmentEntry.from_dict(s) for s in data["segments"]]
            known, extra = _split_known(cls, data)
            manifest = cls(**{**known, "segments": segments, "extra": extra})
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise BadIndexError(f"{path}: damaged manifest ({err})") from None
        _check_consistent(manifest, path)
        return manifest


_SEGMENT_TYPES = {"name": str, "n_docs": int, "total_length": int, "n_terms": int, "n_postings": int,
                  "files": dict, "impacts": dict, "deletes": str, "n_deleted": int, "deleted_length": int}
_MANIFEST_TYPES = {"analyzer": dict, "fields": list, "generation": int, "source": dict, "filter_fields": dict,
                  "representations": dict, "passages": dict}


def _check_types(obj: object, types: dict[str, type], what: str) -> None:
    for name, kind in types.items():
        value = getattr(obj, name)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise TypeError(f"{what}{name} is {value!r}")


def _check_consistent(m: Manifest, path: Path) -> None:
    """Cheap structural checks, so a hand-edited manifest fails here and not deep in a search."""
    try:
        _check_types(m, _MANIFEST_TYPES, "")
        for s in m.segments:
            _check_types(s, _SEGMENT_TYPES, f"{s.name!r}: ")
            for name, f in s.files.items():
                if not (isinstance(f.size, int) and f.size >= 0 and isinstance(f.blake2b, str)):
                    raise TypeError(f"{s.name!r}: file entry {name!r}")
    except TypeError as err:
        raise BadIndexError(f"{path}: damaged manifest ({err})") from None
    names = [s.name for s in m.segments]
    if len(set(names)) != len(names):
        raise BadIndexError(f"{path}: damaged manifest (a segment is listed twice)")
    for s in m.segments:
        if not (0 <= s.n_deleted <= s.n_docs) or (s.n_deleted and s.deletes not in s.files):
            raise BadIndexError(f"{path}: damaged manifest (bad tombstones for {s.name})")
        if not s.name or "/" in s.name or s.name.startswith(".") or any("/" in f or f.startswith(".")
                                                                         for f in s.files):
            raise BadIndexError(f"{path}: damaged manifest (bad file name in {s.name})")
