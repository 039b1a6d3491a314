"""A sharded index: N ordinary indexes described by ``SHARDS.json`` (see :mod:`.layout`).

>>> import tempfile, cascade
>>> from cascade.scale import ShardedIndex, ShardedBM25
>>> docs = [cascade.Doc(f"d{i}", f"cat number {i} sat" if i % 3 else "dogs bark") for i in range(12)]
>>> sharded = ShardedIndex.build(docs, tempfile.mkdtemp() + "/toy.sidx", shards=3)
>>> sharded.n_docs, sharded.n_shards
(12, 3)
>>> list(ShardedBM25(sharded, k=2).search(["dogs"]).to_run()["0"])
['d0', 'd3']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from cascade.core.errors import CascadeError
from cascade.core.types import Doc, as_doc
from cascade.scale.backends import LocalBackend, RayBackend
from cascade.scale.layout import ShardLayout, is_sharded, read_layout, shard_of, with_order
from cascade.text.analyzer import Analyzer

__all__ = ["ShardedIndex", "is_sharded"]

Backend = LocalBackend | RayBackend


class ShardedIndex:
    """A collection searched as one over its shards. Open with :meth:`open` or make with
    :meth:`build`; ``ray`` (an address, "auto", or True for a private local Ray) puts each
    shard on a Ray actor, else the shards are searched in this process one after another."""

    def __init__(self, root: Path, layout: ShardLayout, backend: Backend) -> None:
        self.path, self.layout, self.backend = root, layout, backend
        self.analyzer = Analyzer.from_dict(layout.analyzer)
        self._infos: list[dict[str, Any]] = backend.scatter("info", [()] * layout.n_shards)

    # -- opening and building -------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, ray: str | bool | None = None, timeout: float = 60.0,
             num_cpus: int | None = None, **ray_options: Any) -> "ShardedIndex":
        root = Path(path).resolve()
        if not root.is_dir():
            raise CascadeError(f"{path}: no such sharded index")
        layout = read_layout(root)
        paths = [str(root / name) for name in layout.shards]
        missing = [p for p in paths if not (Path(p) / "MANIFEST.json").is_file()]
        if missing:
            raise CascadeError(f"{path}: shard {Path(missing[0]).name} is missing (no MANIFEST.json)")
        if ray is None or ray is False:
            return cls(root, layout, LocalBackend(paths, layout.shards))
        address = None if ray is True else str(ray)
        return cls(root, layout, RayBackend(paths, layout.shards, address=address, timeout=timeout,
                                            num_cpus=num_cpus, **ray_options))

    @classmethod
    def build(cls, docs: Iterable[Any], path: str | os.PathLike[str], *, shards: int,
              analyzer: Analyzer | None = None, fields: Sequence[str] = ("title", "text"),
              filter_fields: dict[str, str] | None = None, overwrite: bool = False,
              ray: str | bool | None = None, num_cpus: int | None = None,
              progress: Callable[[int], None] | None = None, **open_options: Any) -> "ShardedIndex":
        """Split ``docs`` by id hash into ``shards`` indexes under ``path`` (built in parallel Ray
        tasks with ``ray``, else one after another) and open the result."""
        from cascade.scale.build import build_sharded

        build_sharded(docs, Path(path), shards=shards, analyzer=analyzer or Analyzer(), fields=list(fields),
                      filter_fields=dict(filter_fields or {}), overwrite=overwrite, ray=ray, num_cpus=num_cpus,
                      progress=progress)
        return cls.open(path, ray=ray, num_cpus=num_cpus, **open_options)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "ShardedIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state ----------------------------------------------------------------------------

    @property
    def n_shards(self) -> int:
        return self.layout.n_shards

    @property
    def n_docs(self) -> int:
        return sum(i["n_docs"] for i in self._infos)

    def __len__(self) -> int:
        return self.n_docs

    @property
    def total_length(self) -> int:
        return sum(i["total_length"] for i in self._infos)

    @property
    def bases(self) -> np.ndarray:
        """Shard s's doc number j is ``bases[s] + j`` in this snapshot's doc-number space."""
        return np.cumsum([0] + [i["n_slots"] for i in self._infos])

    @property
    def version(self) -> str:
        return "|".join(i["version"] for i in self._infos)

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(i["version"] for i in self._infos)

    @property
    def filter_fields(self) -> dict[str, str]:
        return dict(self.layout.filter_fields)

    def refresh(self) -> "ShardedIndex":
        """Every shard moves to its newest commit (in place; returns self)."""
        self._infos = self.backend.scatter("refresh", [()] * self.n_shards)
        return self

    def __repr__(self) -> str:
        return f"ShardedIndex({str(self.path)!r}, shards={self.n_shards}, docs={self.n_docs})"

    # -- documents (a DocIdSpace and a DocSource) -----------------------------------------

    def _split(self, nums: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nums = np.asarray(nums, dtype=np.int64)
        bases = self.bases
        if len(nums) and (nums.min() < 0 or nums.max() >= bases[-1]):
            raise CascadeError(f"doc numbers must be in [0, {int(bases[-1])})")
        shard = np.searchsorted(bases, nums, side="right") - 1
        return shard, nums - bases[shard]

    def doc_fields(self, nums: Sequence[int] | np.ndarray) -> list[tuple[str, str, str, dict[str, Any]]]:
        shard, local = self._split(nums)
        out: list[Any] = [None] * len(local)
        for s in np.unique(shard).tolist():
            at = np.flatnonzero(shard == s)
            for i, fields in zip(at.tolist(), self.backend.one(s, "doc_fields", local[at].tolist())):
                out[i] = fields
        return out

    def doc_ids(self, nums: Sequence[int] | np.ndarray) -> list[str]:
        return [f[0] for f in self.doc_fields(nums)]

    def docs(self, nums: Sequence[int] | np.ndarray) -> list[Doc]:
        return [Doc(i, text, title, meta) for i, title, text, meta in self.doc_fields(nums)]

    def doc_numbers(self, ids: Sequence[str]) -> np.ndarray:
        """Doc numbers of live documents by id (-1 where absent): one call to each owning shard."""
        out = np.full(len(ids), -1, dtype=np.int64)
        owner = np.array([shard_of(i, self.n_shards) for i in ids], dtype=np.int64)
        bases = self.bases
        for s in np.unique(owner).tolist():
            at = np.flatnonzero(owner == s)
            local = np.asarray(self.backend.one(s, "doc_numbers", [ids[i] for i in at.tolist()]))
            out[at] = np.where(local >= 0, local + bases[s], -1)
        return out

    def docs_by_id(self, ids: Sequence[str]) -> list[Doc | None]:
        nums = self.doc_numbers(ids)
        found = iter(self.docs(nums[nums >= 0]))
        return [next(found) if n >= 0 else None for n in nums.tolist()]

    def get(self, doc_id: str) -> Doc:
        found = self.docs_by_id([doc_id])[0]
        if found is None:
            raise CascadeError(f"no document with id {doc_id!r}")
        return found

    # -- writing (each shard commits its own part) ----------------------------------------

    def add(self, docs: Iterable[Any], *, merge: bool = True) -> int:
        """Add documents (new ids), each to the shard owning its id; returns how many."""
        return self._write(docs, update=False, merge=merge)[0]

    def update(self, docs: Iterable[Any], *, merge: bool = True) -> int:
        """Add or replace documents by id; returns how many replaced an old one."""
        return self._write(docs, update=True, merge=merge)[1]

    def _write(self, docs: Iterable[Any], update: bool, merge: bool) -> tuple[int, int]:
        """One commit per shard that gets documents (shards commit independently: a failure part
        way leaves the shards written so far committed). New documents take collection positions
        after every existing slot, as one index appends them."""
        start = 1 + max(self.backend.scatter("max_order", [()] * self.n_shards))
        groups: dict[int, list[Doc]] = {}
        for n, record in enumerate(docs):
            doc = with_order(as_doc(record, n), start + n)
            groups.setdefault(shard_of(doc.id, self.n_shards), []).append(doc)
        added = replaced = 0
        for s, group in sorted(groups.items()):
            a, r = self.backend.one(s, "write", group, update, merge)
            added, replaced = added + a, replaced + r
        self.refresh()
        return added, replaced

    def delete(self, ids: Iterable[str] = (), *, where: str | None = None) -> int:
        """Delete by id (at the owning shards) and/or by filter (at every shard); returns how many."""
        ids = [ids] if isinstance(ids, str) else list(ids)
        groups: dict[int, list[str]] = {}
        for doc_id in ids:
            groups.setdefault(shard_of(doc_id, self.n_shards), []).append(doc_id)
        if where is not None:
            counts = self.backend.scatter("delete", [(groups.get(s, []), str(where)) for s in range(self.n_shards)])
        else:
            counts = [self.backend.one(s, "delete", group) for s, group in sorted(groups.items())]
        self.refresh()
        return int(sum(counts))

    def optimize(self) -> None:
        """Merge each shard's segments into one (in parallel on Ray)."""
        self.backend.scatter("optimize", [()] * self.n_shards)
        self.refresh()
