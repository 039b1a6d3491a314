"""The sharded index directory: ``SHARDS.json`` and one ordinary index per shard.

    my.sidx/
      SHARDS.json     {"format": "cascade-sharded", "version": 1, "shards": ["shard-000", ...],
                       "routing": "blake2b-id", "analyzer": {...}, "fields": [...],
                       "filter_fields": {...}}
      shard-000/      an ordinary Cascade index (MANIFEST.json, segments, ...)
      shard-001/ ...

A document lives in the shard ``blake2b(id) mod N`` (so adds, updates and deletes by id go to
one shard without asking the others). Every shard stores, in the filter column ``_order``, the
document's position in the collection (the doc number one index of the same documents would
give it): merged results break score ties by it, as one index breaks them by doc number.
The manifest is written once, at build (temp file, fsync, rename); each shard commits itself.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cascade.core.errors import CascadeError
from cascade.core.types import Doc

MANIFEST = "SHARDS.json"
FORMAT = "cascade-sharded"
VERSION = 1
ORDER = "_order"  # the filter column holding each document's collection position
ROUTING = "blake2b-id"


def shard_of(doc_id: str, n_shards: int) -> int:
    """The shard owning ``doc_id``: blake2b of its UTF-8 bytes, mod the number of shards."""
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % n_shards


def shard_name(i: int) -> str:
    return f"shard-{i:03d}"


@dataclass
class ShardLayout:
    """What ``SHARDS.json`` says."""

    shards: list[str]
    analyzer: dict[str, Any]
    fields: list[str]
    filter_fields: dict[str, str] = field(default_factory=dict)
    routing: str = ROUTING

    @property
    def n_shards(self) -> int:
        return len(self.shards)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "shards": self.shards, "routing": self.routing,
                "analyzer": self.analyzer, "fields": self.fields, "filter_fields": self.filter_fields}

    def write(self, root: Path) -> None:
        """Publish atomically: temp file, fsync, rename, fsync the directory."""
        tmp = root / f".{MANIFEST}.tmp"
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(self.to_dict(), out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, root / MANIFEST)
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def is_sharded(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a sharded index directory."""
    return (Path(path) / MANIFEST).is_file()


def read_layout(root: Path) -> ShardLayout:
    """``SHARDS.json`` of ``root``; a one-line CascadeError when it is missing or not ours."""
    path = root / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CascadeError(f"{root}: not a sharded index (no {MANIFEST})") from None
    except (OSError, ValueError) as err:
        raise CascadeError(f"{path}: unreadable ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CascadeError(f"{path}: not a sharded index manifest")
    if data.get("version") != VERSION:
        raise CascadeError(f"{path}: version {data.get('version')!r} is not supported (this Cascade reads {VERSION})")
    if data.get("routing") != ROUTING:
        raise CascadeError(f"{path}: unknown routing {data.get('routing')!r}")
    return ShardLayout(list(data["shards"]), dict(data["analyzer"]), list(data["fields"]),
                       dict(data.get("filter_fields", {})), data["routing"])


def with_order(doc: Doc, order: int) -> Doc:
    """``doc`` with its collection position in ``meta["_order"]`` (a reserved field)."""
    if ORDER in doc.meta:
        raise CascadeError(f"document {doc.id!r}: metadata field {ORDER!r} is reserved by sharded indexes")
    return Doc(doc.id, doc.text, doc.title, {**doc.meta, ORDER: order})
