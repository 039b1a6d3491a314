"""MANIFEST.json: the single commit point of an index directory.

An index is whatever its manifest says: the analyzer, the indexed fields and the list of
segments with each file's size and checksum. A new manifest is published by atomic rename,
so a reader sees either the previous index or the new one, never a mix.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cascade.errors import BadIndexError
from cascade.index.fsutil import atomic_write_bytes

MANIFEST_NAME = "MANIFEST.json"
FORMAT_NAME = "cascade-index"
FORMAT_VERSION = 1


@dataclass
class FileEntry:
    size: int
    blake2b: str


@dataclass
class SegmentEntry:
    """One immutable segment: a sub-directory holding postings, lengths and docstore."""

    name: str
    n_docs: int
    total_length: int
    n_terms: int
    n_postings: int
    files: dict[str, FileEntry] = field(default_factory=dict)
    # settings the stored impacts were computed with, e.g. {"kind": "bm25", "k1": 0.9, "b": 0.4, "avgdl": 120.5}
    impacts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SegmentEntry":
        files = {k: FileEntry(**v) for k, v in data.get("files", {}).items()}
        return cls(**{**data, "files": files})


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
    # their arrays are per-segment files named rep-<name>.<part>.npy (see representations.py)
    representations: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def n_docs(self) -> int:
        return sum(s.n_docs for s in self.segments)

    @property
    def total_length(self) -> int:
        return sum(s.total_length for s in self.segments)

    def version_key(self) -> str:
        """Changes whenever the index content changes (used in cache keys)."""
        digests = ",".join(f"{s.name}:{s.files[n].blake2b}" for s in self.segments for n in sorted(s.files))
        return f"g{self.generation}:{digests}"

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

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
            segments = [SegmentEntry.from_dict(s) for s in data["segments"]]
            return cls(**{**data, "segments": segments})
        except (KeyError, TypeError) as err:
            raise BadIndexError(f"{path}: damaged manifest ({err})") from None
