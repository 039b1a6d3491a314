"""Building a sharded index: one pass routes the documents into per-shard JSONL parts, then
every shard is built from its part as an ordinary index: in parallel Ray tasks (one CPU each)
when a cluster is given, else one after another. Everything happens in a sibling temporary
directory that is renamed into place at the end, so a failed build leaves nothing half made.
On a multi-node cluster the output directory must be on storage every node sees (NFS, ...).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from cascade.core.errors import CascadeError
from cascade.core.types import Doc, as_doc
from cascade.filters.columns import check_filter_fields
from cascade.scale.backends import connect
from cascade.scale.layout import ORDER, ShardLayout, shard_name, shard_of, with_order
from cascade.text.analyzer import Analyzer

PARTS = ".parts"
BUILD_TIMEOUT = 6 * 3600.0  # seconds a shard build may take on a cluster before it counts as lost
EMPTY = "\x00cascade-empty-shard"  # the placeholder of a shard no document routes to


def doc_record(doc: Doc) -> str:
    """One JSONL line the corpus reader turns back into ``doc``."""
    return json.dumps({"_id": doc.id, "title": doc.title, "text": doc.text, "metadata": doc.meta},
                      ensure_ascii=False)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def build_shard(part: str, out: str, analyzer: dict[str, Any], fields: list[str],
                filter_fields: dict[str, str]) -> dict[str, Any]:
    """Build one shard index from its JSONL part (runs in a Ray task or here)."""
    from cascade.data import open_corpus
    from cascade.index.index import Index

    start = time.perf_counter()
    empty = Path(part).stat().st_size == 0
    docs = [Doc(EMPTY, "empty", meta={ORDER: -1})] if empty else open_corpus(Path(part))
    index = Index.build(docs, out, analyzer=Analyzer.from_dict(analyzer), fields=fields,
                        filter_fields=filter_fields)
    if empty:  # an index cannot be built empty: build one placeholder, then delete it (its segment goes)
        index.delete([EMPTY])
        index = index.refresh()
    n_docs = index.n_docs
    index.close()
    return {"docs": n_docs, "seconds": time.perf_counter() - start}


def partition(docs: Iterable[Any], parts: list[Path], progress: Callable[[int], None] | None) -> int:
    """Route ``docs`` into the part files by id hash, each with its collection position."""
    handles = [open(p, "w", encoding="utf-8") for p in parts]
    seen = 0
    try:
        for n, record in enumerate(docs):
            doc = with_order(as_doc(record, n), n)
            handles[shard_of(doc.id, len(parts))].write(doc_record(doc) + "\n")
            seen = n + 1
            if progress is not None:
                progress(1)
    finally:
        for h in handles:
            h.close()
    return seen


def build_sharded(docs: Iterable[Any], root: Path, *, shards: int, analyzer: Analyzer, fields: list[str],
                  filter_fields: dict[str, str], overwrite: bool, ray: str | bool | None,
                  num_cpus: int | None, progress: Callable[[int], None] | None) -> list[dict[str, Any]]:
    """Build the sharded index at ``root``; per-shard build reports."""
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise CascadeError(f"--shards must be a positive integer (got {shards!r})")
    if ORDER in filter_fields:
        raise CascadeError(f"filter field {ORDER!r} is reserved by sharded indexes")
    columns = check_filter_fields({**filter_fields, ORDER: "int"})
    root = root.resolve()
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise CascadeError(f"{root} exists; pass overwrite=True (--overwrite) to replace it")
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    remove_tree(tmp)
    (tmp / PARTS).mkdir(parents=True)
    try:
        names = [shard_name(i) for i in range(shards)]
        parts = [tmp / PARTS / f"{name}.jsonl" for name in names]
        partition(docs, parts, progress)
        reports = _build_all(parts, [tmp / n for n in names], analyzer.to_dict(), fields, columns, ray, num_cpus)
        remove_tree(tmp / PARTS)
        ShardLayout(names, analyzer.to_dict(), fields, dict(filter_fields)).write(tmp)
        _publish(tmp, root)
    except BaseException:
        remove_tree(tmp)
        raise
    return reports


def _build_all(parts: list[Path], outs: list[Path], analyzer: dict[str, Any], fields: list[str],
               columns: dict[str, str], ray: str | bool | None, num_cpus: int | None) -> list[dict[str, Any]]:
    if ray is None or ray is False:
        return [build_shard(str(p), str(o), analyzer, fields, columns) for p, o in zip(parts, outs)]
    ray_mod = connect(None if ray is True else str(ray), num_cpus)
    task = ray_mod.remote(build_shard).options(num_cpus=1, max_retries=1)
    refs = [task.remote(str(p), str(o), analyzer, fields, columns) for p, o in zip(parts, outs)]
    try:
        return list(ray_mod.get(refs, timeout=BUILD_TIMEOUT))
    except ray_mod.exceptions.GetTimeoutError:
        raise CascadeError(f"shard builds did not finish within {BUILD_TIMEOUT:g} s") from None
    except ray_mod.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        raise (cause if isinstance(cause, Exception) else CascadeError(str(err).splitlines()[0])) from None


def _publish(tmp: Path, root: Path) -> None:
    """Rename the built directory into place (an existing one is moved aside, then removed)."""
    old = None
    if root.exists():
        old = root.parent / f".{root.name}.old-{os.getpid()}"
        os.replace(root, old)
    os.replace(tmp, root)
    if old is not None:
        remove_tree(old)
