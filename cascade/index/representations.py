"""Neural representations stored beside the postings, one set of files per segment.

A representation has a name (``dense``, ``tokens``, ``splade``, ...), a spec in the manifest
(``kind``, ``model``, ``dim`` and whatever the encoder needs to encode queries the same way)
and, in every segment, arrays row-aligned with the segment's documents, saved as
``rep-<name>.<part>.g<generation>.npy`` and listed (with checksums) in the segment's files:

- ``dense``: ``vectors`` float16 ``[n_docs, dim]``
- ``tokens``: ``offsets`` int64 ``[n_docs + 1]`` and ``vectors`` float16 ``[n_tokens, dim]``
- ``sparse``: postings over the model's vocabulary (``indptr``, ``docs``, ``values`` and the
  block-max arrays of :class:`cascade.index.impacts.Impacts`)

Adding a representation encodes each segment that lacks it, writes its files, fsyncs them and
then publishes a new manifest: a crash part-way leaves the index as it was (unlisted files are
ignored and cleaned up by the next commit). Segment files never change once listed.

A stage reads a representation through :func:`ensure`: the segments of *its own* snapshot as
a later commit lists them with the representation's files (encoding it first when missing),
so doc numbers stay those of the snapshot the stage searches.

>>> import tempfile, numpy as np, cascade
>>> idx = cascade.Index.build([cascade.Doc("a", "cats"), cascade.Doc("b", "dogs")], tempfile.mkdtemp() + "/i")
>>> encode = lambda latest: add_representation(latest, "toy", {"kind": "dense", "model": "none", "dim": 2},
...                                            lambda seg: {"vectors": np.eye(2, dtype=np.float16)[: seg.n_docs]})
>>> segments, spec = ensure(idx, "toy", lambda spec: True, encode)
>>> load(segments[0], "toy", "vectors").shape
(2, 2)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from cascade.core.errors import BadIndexError, CascadeError
from cascade.index.fsutil import disk_errors, file_digest, fsync_dir, fsync_file, unwritable
from cascade.index.impacts import build_blocks
from cascade.index.lock import writer_lock
from cascade.index.manifest import FileEntry, Manifest
from cascade.index.segment import Segment

if TYPE_CHECKING:
    from cascade.index.index import Index

PREFIX = "rep-"
ROW_PARTS = ("dense",)  # one row per document
RAGGED_PARTS = {"tok_offsets": "tok_vectors", "id_offsets": "ids"}  # offsets[n_docs + 1] -> the rows they index
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
SegmentEncoder = Callable[["Segment"], dict[str, np.ndarray]]


def file_name(name: str, part: str, generation: int) -> str:
    """Names carry the commit's generation, so re-encoding never overwrites a listed file."""
    return f"{PREFIX}{name}.{part}.g{generation}.npy"


def _listed(seg_files: dict[str, FileEntry] | Any, name: str, part: str) -> str | None:
    prefix = f"{PREFIX}{name}.{part}.g"
    return next((f for f in seg_files if f.startswith(prefix)), None)


def has(index: "Index", name: str) -> bool:
    """Whether every segment of ``index`` carries representation ``name``."""
    return name in index.manifest.representations and all(
        any(f.startswith(f"{PREFIX}{name}.") for f in seg.entry.files) for seg in index.segments)


def spec(index: "Index", name: str) -> dict[str, Any]:
    found = index.manifest.representations.get(name)
    if found is None:
        have = ", ".join(sorted(index.manifest.representations)) or "none"
        raise CascadeError(f"{index.path} has no representation {name!r} (it has: {have}); "
                           f"encode it with `cascade encode {index.path} --name {name} ...`")
    return found


def has_rep(seg: "Segment", name: str) -> bool:
    """Whether ``seg`` (as its commit lists it) carries representation ``name``."""
    return any(f.startswith(f"{PREFIX}{name}.") for f in seg.entry.files)


def has_part(seg: "Segment", name: str, part: str) -> bool:
    return _listed(seg.entry.files, name, part) is not None


def load(seg: "Segment", name: str, part: str) -> np.ndarray:
    """A representation array of one segment, memory-mapped."""
    fname = _listed(seg.entry.files, name, part)
    if fname is None:
        raise BadIndexError(f"{seg.dir}: representation {name!r} has no part {part!r}")
    try:
        return np.asarray(np.load(seg.dir / fname, mmap_mode="r"))  # a plain view of the map (see segment._load)
    except (ValueError, OSError) as err:
        raise BadIndexError(f"{seg.dir / fname}: unreadable ({err})") from None


LOCK_WAIT = 300.0  # seconds an encoding waits for another writer (an add, a merge) to commit


def add_representation(index: "Index", name: str, rep_spec: dict[str, Any], encode_segment: SegmentEncoder,
                       *, replace: bool = False) -> bool:
    """Encode every segment lacking ``name`` with ``encode_segment(segment) -> {part: array}``,
    store the arrays and commit (as the index's one writer); returns whether it committed
    (``index.refresh()`` shows the result). A read-only index fails before anything is
    encoded, and a full disk while writing is a one-line CascadeError (the last commit stays)."""
    if not NAME_PATTERN.match(name):
        raise CascadeError(f"representation name {name!r} must be letters, digits and _ (starting with a letter)")
    _check_writable(index.path, name)
    with disk_errors(index.path), writer_lock(index.path, wait=LOCK_WAIT):
        try:
            return _add(index, name, rep_spec, encode_segment, replace)
        except BaseException:
            try:  # free what the failed commit wrote (a full disk): nothing lists it
                _remove_unlisted(index.path, Manifest.read(index.path))
            except Exception:  # noqa: BLE001  (tidying must not hide the error)
                pass
            raise


def _add(index: "Index", name: str, rep_spec: dict[str, Any], encode_segment: SegmentEncoder,
         replace: bool) -> bool:
    """add_representation's commit (the caller holds the write lock)."""
    manifest = Manifest.read(index.path)
    old = manifest.representations.get(name)
    if old is not None and old != rep_spec and not replace:
        raise CascadeError(f"{index.path} already has representation {name!r} made with {old}; "
                           "pass replace=True (CLI: --replace) to re-encode it")
    stale = old is not None and old != rep_spec
    changed = old != rep_spec
    opened = {seg.entry.name: seg for seg in index.segments}
    for seg_entry in manifest.segments:
        present = [f for f in seg_entry.files if f.startswith(f"{PREFIX}{name}.")]
        if present and not stale:
            continue
        for f in present:
            del seg_entry.files[f]
        seg = _segment(index.path, seg_entry, opened)
        arrays = encode_segment(seg)
        _check_rows(name, arrays, seg.n_docs)
        seg_entry.files.update(_write_parts(seg.dir, name, arrays, manifest.generation + 1))
        changed = True
    if not changed:  # already there (perhaps committed after ``index`` was opened)
        return False
    manifest.representations[name] = rep_spec
    manifest.generation += 1
    manifest.write(index.path)
    _remove_unlisted(index.path, manifest)
    return True


SpecTest = Callable[[dict[str, Any]], bool]


def ensure(index: "Index", name: str, usable: SpecTest,
           encode: Callable[["Index"], object]) -> tuple[list[Segment], dict[str, Any]]:
    """``index``'s segments as a commit lists them with representation ``name`` (whose spec
    ``usable`` accepts), calling ``encode(latest snapshot)`` first when no commit has it.

    The views belong to the newest commit, but row-align with ``index``'s own segments, so a
    stage keeps the doc numbers (and deletions) of the snapshot it searches. Returns the views
    and the representation's spec. Encoding needs a writable index: a read-only one fails at
    once, saying how its owner can store the representation."""
    found = _views(index, index, name, usable)
    if found is None:
        latest = index.refresh()
        found = _views(index, latest, name, usable)
        if found is None:
            _check_writable(index.path, name)
            encode(latest)
            found = _views(index, latest.refresh(), name, usable)
    if found is None:
        raise CascadeError(f"{index.path}: representation {name!r} could not be stored (another writer "
                           "replaced it meanwhile?); try again")
    return found


def stored(index: "Index", name: str, usable: SpecTest) -> tuple[list[Segment], dict[str, Any]] | None:
    """What :func:`ensure` returns when some commit already holds the representation, else None
    (nothing is encoded or written)."""
    found = _views(index, index, name, usable)
    return found if found is not None else _views(index, index.refresh(), name, usable)


def _views(index: "Index", latest: "Index", name: str,
           usable: SpecTest) -> tuple[list[Segment], dict[str, Any]] | None:
    spec_found = latest.manifest.representations.get(name)
    if spec_found is None or not usable(spec_found):
        return None
    by_name = {seg.entry.name: seg for seg in latest.segments}
    views = []
    for seg in index.segments:
        view = by_name.get(seg.entry.name)
        if view is None or view.n_docs != seg.n_docs:
            raise CascadeError(f"{index.path}: segment {seg.entry.name} was merged away after this snapshot was "
                               f"opened, before {name!r} was stored for it; search a newer snapshot (refresh())")
        if not any(f.startswith(f"{PREFIX}{name}.") for f in view.entry.files):
            return None
        views.append(view)
    return views, spec_found


def _check_writable(path: Path, name: str) -> None:
    """A one-line CascadeError, before any encoding, when nothing can be written into ``path``."""
    err = unwritable(path)
    if err is not None:
        raise CascadeError(f"{path}: the index is read-only ({err.strerror or err}) and has no stored {name!r} "
                           "representation, so it cannot be encoded now; its owner can store it once with "
                           f"`cascade encode {path} --model MODEL` (or by running this search on the writable "
                           "index), or search a writable copy")


def _segment(path: Path, entry: Any, opened: dict[str, Segment]) -> Segment:
    """The segment as listed now (reusing one already open when it is the same segment)."""
    seg = opened.get(entry.name)
    return seg.with_entry(entry) if seg is not None and seg.n_docs == entry.n_docs else Segment(path / entry.name, entry)


def _check_rows(name: str, arrays: dict[str, np.ndarray], n_docs: int) -> None:
    for part, arr in arrays.items():
        if part in ROW_PARTS and len(arr) != n_docs:
            raise CascadeError(f"representation {name!r}: {len(arr)} vectors for {n_docs} documents")
        if part in RAGGED_PARTS and len(arr) != n_docs + 1:
            raise CascadeError(f"representation {name!r}: offsets for {len(arr) - 1} documents, not {n_docs}")


def _write_parts(directory: Path, name: str, arrays: dict[str, np.ndarray], generation: int) -> dict[str, FileEntry]:
    """Save each array under its final name (via a temporary file), fsynced; return manifest entries."""
    entries = {}
    for part, arr in arrays.items():
        final = directory / file_name(name, part, generation)
        tmp = directory / f".{final.name}.tmp-{generation}-{os.getpid()}"
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(arr))
        fsync_file(tmp)
        os.replace(tmp, final)
        entries[final.name] = FileEntry(final.stat().st_size, file_digest(final))
    fsync_dir(directory)
    return entries


def _remove_unlisted(path: Path, manifest: Manifest) -> None:
    """Delete rep-* files (and their temporary debris) that the committed manifest does not list."""
    for seg in manifest.segments:
        seg_dir = path / seg.name
        for child in seg_dir.iterdir():
            stem = child.name.lstrip(".")
            if stem.startswith(PREFIX) and child.name not in seg.files:
                child.unlink(missing_ok=True)


# -- merging ----------------------------------------------------------------------------------

MERGEABLE_KINDS = ("biencoder", "sparse")  # carried into merged segments
DERIVED_KINDS = ("maxsim-bounds", "hnsw", "token-ids")  # dropped by merges, rebuilt on first use


def unmergeable(manifest: Manifest, entries: list[Any]) -> list[str]:
    """Representations the segments ``entries`` carry that a merge would lose (unknown kinds,
    e.g. written by a newer Cascade): such segments are left out of merges."""
    names = {f[len(PREFIX):].split(".", 1)[0] for e in entries for f in e.files if f.startswith(PREFIX)}
    known = MERGEABLE_KINDS + DERIVED_KINDS
    return sorted(n for n in names if (manifest.representations.get(n) or {}).get("kind") not in known)


def merge_parts(kind: str, name: str, segments: list["Segment"]) -> dict[str, np.ndarray] | None:
    """The parts of representation ``name`` for the merge of ``segments`` (their live documents,
    in order), or None when this kind is not carried through merges."""
    if kind == "biencoder":
        return _merge_rows(name, segments)
    if kind == "sparse":
        return _merge_postings(name, segments)
    return None


def _live_rows(seg: "Segment") -> np.ndarray:
    return np.arange(seg.n_docs) if seg.live is None else np.flatnonzero(seg.live)


def _merge_rows(name: str, segments: list["Segment"]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for seg in segments:
        rows = _live_rows(seg)
        if has_part(seg, name, "dense"):
            parts.setdefault("dense", []).append(np.asarray(load(seg, name, "dense")[rows]))
        for offsets_part, rows_part in RAGGED_PARTS.items():
            if not has_part(seg, name, offsets_part):
                continue
            offsets, vectors = load(seg, name, offsets_part), load(seg, name, rows_part)
            lengths = (offsets[rows + 1] - offsets[rows]).astype(np.int64)
            parts.setdefault(offsets_part, []).append(lengths)
            parts.setdefault(rows_part, []).append(
                np.concatenate([np.asarray(vectors[offsets[r]:offsets[r + 1]]) for r in rows])
                if len(rows) else np.asarray(vectors[:0]))
    out = {part: np.concatenate(arrays) for part, arrays in parts.items()}
    for offsets_part in RAGGED_PARTS:
        if offsets_part in out:
            out[offsets_part] = np.concatenate([[0], np.cumsum(out[offsets_part])]).astype(np.int64)
    return out


def _merge_postings(name: str, segments: list["Segment"]) -> dict[str, np.ndarray]:
    from cascade.index.csr import csr_from_pairs  # loads numba

    terms, docs, values = [], [], []
    base = 0
    n_terms = 0
    for seg in segments:
        indptr, post_docs, post_values = (np.asarray(load(seg, name, p)) for p in ("indptr", "docs", "values"))
        n_terms = max(n_terms, len(indptr) - 1)
        renumber = np.full(seg.n_docs, -1, dtype=np.int64)
        rows = _live_rows(seg)
        renumber[rows] = np.arange(len(rows)) + base
        term = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        new_doc = renumber[post_docs]
        keep = new_doc >= 0
        terms.append(term[keep]), docs.append(new_doc[keep]), values.append(post_values[keep])
        base += len(rows)
    term, doc, value = (np.concatenate(a) for a in (terms, docs, values))
    order = np.argsort(doc, kind="stable")  # csr_from_pairs wants pairs in doc order
    position = np.arange(len(term), dtype=np.int32)
    indptr, merged_docs, moved = csr_from_pairs(term[order].astype(np.int64), doc[order].astype(np.int32),
                                                position, np.arange(n_terms, dtype=np.int64), n_terms)
    imp = build_blocks(indptr, merged_docs, value[order].astype(np.float32)[moved])
    return {"indptr": indptr, "docs": merged_docs, "values": imp.values, "block_indptr": imp.block_indptr,
            "block_max": imp.block_max, "block_last": imp.block_last, "term_max": imp.term_max}


def write_merged(manifest: Manifest, picked: list["Segment"], directory: Path, generation: int) -> dict[str, FileEntry]:
    """Write into a merged segment's directory every representation all ``picked`` segments carry."""
    entries: dict[str, FileEntry] = {}
    for name, rep_spec in manifest.representations.items():
        if not all(any(f.startswith(f"{PREFIX}{name}.") for f in seg.entry.files) for seg in picked):
            continue
        arrays = merge_parts(str(rep_spec.get("kind")), name, picked)
        if arrays is not None:
            entries.update(_write_parts(directory, name, arrays, generation))
    return entries
