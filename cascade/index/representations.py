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
then publishes a new manifest, one commit per segment: a crash part-way keeps the segments
already committed, and the next encoding continues with the others (unlisted files are ignored
and removed by the next commit or ``cascade check --repair``). Segment files never change once
listed.

Nothing drops a representation: every commit that writes a segment gives it every
representation the manifest lists (:func:`build_new_segment` for an add or update, whose new
documents are encoded in the same commit; :func:`write_merged` for a merge, which carries
concatenable kinds and rebuilds derived ones), through the builders registered per kind
(:mod:`cascade.index.builders`). When this process cannot run a builder it needs, the write is
refused before it starts.

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
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator, Sequence

import numpy as np

from cascade.core.errors import BadIndexError, CascadeError
from cascade.core.progress import Progress
from cascade.index.builders import BuildContext, build_order, builder, require
from cascade.index.debris import remove_debris
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
ProgressFn = Callable[[int], None]
# why encoding a collection is refused in this thread (None: allowed); see no_encoding()
_ENCODING_REFUSED: ContextVar[str | None] = ContextVar("cascade_encoding_refused", default=None)


@contextmanager
def no_encoding(reason: str) -> Iterator[None]:
    """Inside this block, a stage that would encode the collection with a model (minutes of
    work) raises a one-line CascadeError ending in ``reason`` instead; what a server wraps
    around each request, so a request never starts a corpus encoding."""
    token = _ENCODING_REFUSED.set(reason)
    try:
        yield
    finally:
        _ENCODING_REFUSED.reset(token)


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
    """A representation array of one segment, memory-mapped (its file checked on first use)."""
    fname = _listed(seg.entry.files, name, part)
    if fname is None:
        raise BadIndexError(f"{seg.dir}: representation {name!r} has no part {part!r}")
    seg.use(fname)  # its checksum, on first use
    try:
        return np.asarray(np.load(seg.dir / fname, mmap_mode="r"))  # a plain view of the map (see segment._load)
    except (ValueError, OSError) as err:
        raise BadIndexError(f"{seg.dir / fname}: unreadable ({err})") from None


LOCK_WAIT = 300.0  # seconds an encoding waits for another writer (an add, a merge) to commit
Reporter = Callable[[str, int], ContextManager[ProgressFn]]  # (label, total) -> progress(done) for a phase


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[ProgressFn]:
    """The default reporter: a :class:`~cascade.core.progress.Progress` line or bar on stderr."""
    with Progress(label, total, unit="docs") as bar:
        yield bar.update


@contextmanager
def silent(label: str, total: int) -> Iterator[ProgressFn]:
    """A reporter that shows nothing."""
    yield lambda done: None


def add_representation(index: "Index", name: str, rep_spec: dict[str, Any],
                       encode_segment: SegmentEncoder | None = None, *, replace: bool = False,
                       reporter: Reporter | None = None) -> bool:
    """Store representation ``name`` for every segment lacking it, one commit per segment
    (as the index's one writer), so a killed encoding keeps what it finished and the next one
    continues; returns whether it committed (``index.refresh()`` shows the result).

    ``encode_segment(segment) -> {part: array}`` makes the arrays; by default the builder
    registered for the spec's kind (:mod:`cascade.index.builders`) does, with progress through
    ``reporter``. What it reads (the docstore, the representation it is built ``of``) is
    checked against its checksums first. A read-only index fails before anything is encoded,
    and a full disk while writing is a one-line CascadeError (the last commit stays)."""
    if not NAME_PATTERN.match(name):
        raise CascadeError(f"representation name {name!r} must be letters, digits and _ (starting with a letter)")
    if encode_segment is None:
        require(name, rep_spec, f"storing {name!r} in {index.path}")
    _check_writable(index.path, name)
    with disk_errors(index.path), writer_lock(index.path, wait=LOCK_WAIT):
        try:
            # a caller's own encode_segment reports its own progress
            return _add(index, name, rep_spec, encode_segment, replace,
                        reporter or (silent if encode_segment is not None else progress_bar))
        except BaseException:
            try:  # free what the failed commit wrote (a full disk): nothing lists it
                remove_debris(index.path)
            except Exception:  # noqa: BLE001  (tidying must not hide the error)
                pass
            raise


def _add(index: "Index", name: str, rep_spec: dict[str, Any], encode_segment: SegmentEncoder | None,
         replace: bool, reporter: Reporter) -> bool:
    """add_representation's commits (the caller holds the write lock)."""
    remove_debris(index.path)  # what a killed or failed write left
    manifest = Manifest.read(index.path)
    old = manifest.representations.get(name)
    if old is not None and old != rep_spec and not replace:
        raise CascadeError(f"{index.path} already has representation {name!r} made with {old}; "
                           "pass replace=True (CLI: --replace) to re-encode it")
    stale = old is not None and old != rep_spec
    if stale:  # the first commit drops the old files everywhere (and what was built of them)
        for dropped in [name] + dependents(manifest.representations, name):
            if dropped != name:
                del manifest.representations[dropped]  # rebuilt when next needed
            for seg_entry in manifest.segments:
                for f in [f for f in seg_entry.files if f.startswith(f"{PREFIX}{dropped}.")]:
                    del seg_entry.files[f]
    todo = [e for e in manifest.segments if not any(f.startswith(f"{PREFIX}{name}.") for f in e.files)]
    if not todo and old == rep_spec:  # already there (perhaps committed after ``index`` was opened)
        return False
    opened = {seg.entry.name: seg for seg in index.segments}
    specs = {**manifest.representations, name: rep_spec}
    total = sum(e.n_docs for e in todo)
    kind = rep_spec.get("kind")
    done = 0
    with reporter(f"storing {name} ({kind}) for {total:,} documents", total) as update:
        for seg_entry in todo:
            seg = _segment(index.path, seg_entry, opened)
            seg.check_files(inputs(seg, rep_spec))
            if encode_segment is not None:
                arrays = encode_segment(seg)
            else:
                arrays = _build(seg, name, rep_spec, BuildContext(index.fields, specs,
                                                                  _shifted(update, done)))
            _check_rows(name, arrays, seg.n_docs)
            seg_entry.files.update(_write_parts(seg.dir, name, arrays, manifest.generation + 1))
            manifest.representations[name] = rep_spec
            _commit(index.path, manifest)
            done += seg.n_docs
            update(done)
    if not todo:  # no segment (an empty index): the spec alone
        manifest.representations[name] = rep_spec
        _commit(index.path, manifest)
    return True


def dependents(specs: dict[str, dict[str, Any]], name: str) -> list[str]:
    """The representations built (directly or not) ``of`` representation ``name``."""
    found: list[str] = []
    for other in build_order(specs):
        of = specs[other].get("of")
        if of == name or of in found:
            found.append(other)
    return found


def missing(index: "Index") -> list[str]:
    """Names of the representations ``index``'s manifest lists that some segment lacks (a
    killed encoding, or an index written by an older Cascade), dependencies first."""
    specs = index.manifest.representations
    return [name for name in build_order(specs) if not all(has_rep(seg, name) for seg in index.segments)]


def complete(index: "Index", reporter: Reporter | None = None) -> list[str]:
    """Store every representation the manifest lists for every segment lacking it (one commit
    per segment, dependencies first, by the registered builders); returns the names stored.
    Every builder needed is checked before any work starts."""
    latest = index.refresh()
    todo = missing(latest)
    for name in todo:
        require(name, latest.manifest.representations[name], f"completing {latest.path}")
    for name in todo:
        add_representation(latest, name, latest.manifest.representations[name], reporter=reporter)
        latest = latest.refresh()
    return todo


def _commit(path: Path, manifest: Manifest) -> None:
    """Publish ``manifest`` as the next generation (its files are written and fsync'd), then
    remove what it no longer lists."""
    manifest.generation += 1
    manifest.write(path)
    remove_debris(path)


def _shifted(update: ProgressFn, base: int) -> ProgressFn:
    return lambda n: update(base + n)


def inputs(seg: "Segment", rep_spec: dict[str, Any]) -> list[str]:
    """The files of ``seg`` that building a representation with ``rep_spec`` reads: the
    docstore, and the files of the representation it is built ``of``."""
    of = rep_spec.get("of")
    return ["docs.bin", "docs_offsets.npy"] + ([f for f in seg.entry.files if f.startswith(f"{PREFIX}{of}.")]
                                               if isinstance(of, str) else [])


def _build(seg: "Segment", name: str, rep_spec: dict[str, Any], context: BuildContext) -> dict[str, np.ndarray]:
    """Representation ``name`` for every document of ``seg``, by the builder of its kind."""
    return builder(str(rep_spec.get("kind"))).build(seg, name, rep_spec, context)


def require_all(manifest: Manifest, why: str) -> None:
    """Fail (one CascadeError line) unless this process can build every representation of
    ``manifest`` (what an add or update must do for its new segment)."""
    for name in build_order(manifest.representations):
        require(name, manifest.representations[name], why)


def build_new_segment(manifest: Manifest, seg: "Segment", generation: int, fields: Sequence[str],
                      reporter: Reporter | None = None) -> None:
    """Give a new segment ``seg`` (written, not yet published) every representation of
    ``manifest``, dependencies first; its files go into ``seg.dir`` and ``seg.entry.files``."""
    specs = manifest.representations
    for name in build_order(specs):
        spec = specs[name]
        with (reporter or progress_bar)(f"storing {name} ({spec.get('kind')}) for {seg.n_docs:,} new documents",
                                        seg.n_docs) as update:
            arrays = _build(seg, name, spec, BuildContext(fields, specs, update))
            update(seg.n_docs)
        _check_rows(name, arrays, seg.n_docs)
        seg.entry.files.update(_write_parts(seg.dir, name, arrays, generation))


SpecTest = Callable[[dict[str, Any]], bool]


def ensure(index: "Index", name: str, usable: SpecTest, encode: Callable[["Index"], object], *,
           model_encoding: bool = False) -> tuple[list[Segment], dict[str, Any]]:
    """``index``'s segments as a commit lists them with representation ``name`` (whose spec
    ``usable`` accepts), calling ``encode(latest snapshot)`` first when no commit has it.

    The views belong to the newest commit, but row-align with ``index``'s own segments, so a
    stage keeps the doc numbers (and deletions) of the snapshot it searches. Returns the views
    and the representation's spec. Encoding needs a writable index: a read-only one fails at
    once, saying how its owner can store the representation. ``model_encoding``: ``encode`` runs
    a model over every document, which :func:`no_encoding` refuses."""
    found = _views(index, index, name, usable)
    if found is None:
        latest = index.refresh()
        found = _views(index, latest, name, usable)
        if found is None:
            refused = _ENCODING_REFUSED.get()
            if model_encoding and refused is not None:
                raise CascadeError(f"{index.path} has no stored {name!r} representation: {refused}")
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


# -- merging ----------------------------------------------------------------------------------

class Parts:
    """One representation's arrays in each segment to merge: stored, or built just now (for a
    segment lacking it), by segment name."""

    def __init__(self, name: str, built: dict[str, dict[str, np.ndarray]] | None = None) -> None:
        self.name, self.built = name, built or {}

    def names(self, seg: "Segment") -> set[str]:
        built = self.built.get(seg.entry.name)
        if built is not None:
            return set(built)
        prefix = f"{PREFIX}{self.name}."
        return {f[len(prefix):].split(".g", 1)[0] for f in seg.entry.files if f.startswith(prefix)}

    def __call__(self, seg: "Segment", part: str) -> np.ndarray:
        built = self.built.get(seg.entry.name)
        return built[part] if built is not None else load(seg, self.name, part)


def _merge_rows(segments: list["Segment"], part_of: Parts) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for seg in segments:
        rows = _live_rows(seg)
        names = part_of.names(seg)
        if "dense" in names:
            parts.setdefault("dense", []).append(np.asarray(part_of(seg, "dense")[rows]))
        for offsets_part, rows_part in RAGGED_PARTS.items():
            if offsets_part not in names:
                continue
            offsets, vectors = part_of(seg, offsets_part), part_of(seg, rows_part)
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


def _merge_postings(segments: list["Segment"], part_of: Parts) -> dict[str, np.ndarray]:
    from cascade.index.csr import csr_from_pairs  # loads numba

    terms, docs, values = [], [], []
    base = 0
    n_terms = 0
    for seg in segments:
        indptr, post_docs, post_values = (np.asarray(part_of(seg, p)) for p in ("indptr", "docs", "values"))
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


# kinds whose arrays a merge concatenates (row-aligned vectors, ragged rows, postings); every
# other kind (derived: an HNSW graph, MaxSim bounds) is rebuilt by its builder for the merged segment
CONCATENATED: dict[str, Callable[[list["Segment"], Parts], dict[str, np.ndarray]]] = {
    "biencoder": _merge_rows, "token-ids": _merge_rows, "sparse": _merge_postings}


def _live_rows(seg: "Segment") -> np.ndarray:
    return np.arange(seg.n_docs) if seg.live is None else np.flatnonzero(seg.live)


def require_for_merge(manifest: Manifest, picked: list["Segment"], why: str) -> None:
    """Fail (one CascadeError line, before any work) unless this process can give the merge of
    ``picked`` every representation of ``manifest``: a concatenated kind needs its builder
    only when a picked segment lacks it, a derived kind always."""
    for name in build_order(manifest.representations):
        spec = manifest.representations[name]
        if spec.get("kind") not in CONCATENATED or not all(has_rep(seg, name) for seg in picked):
            require(name, spec, why)


def write_merged(manifest: Manifest, picked: list["Segment"], merged: "Segment", generation: int,
                 fields: Sequence[str], reporter: Reporter | None = None) -> None:
    """Give ``merged`` (the merge of ``picked``' live documents, written into ``merged.dir``, not
    yet published) every representation of ``manifest``, dependencies first: concatenated kinds
    move with their documents (a picked segment lacking one is encoded first), derived kinds
    are rebuilt for the merged segment. Files go into ``merged.dir`` and ``merged.entry.files``."""
    specs = manifest.representations
    report = reporter or progress_bar
    for name in build_order(specs):
        spec = specs[name]
        kind = str(spec.get("kind"))
        concat = CONCATENATED.get(kind)
        if concat is not None:
            built: dict[str, dict[str, np.ndarray]] = {}
            for seg in picked:
                if not has_rep(seg, name):
                    with report(f"storing {name} ({kind}) for {seg.n_docs:,} documents to merge", seg.n_docs) as up:
                        built[seg.entry.name] = _build(seg, name, spec, BuildContext(fields, specs, up))
                        up(seg.n_docs)
            arrays = concat(picked, Parts(name, built))
        else:
            with report(f"rebuilding {name} ({kind}) for {merged.n_docs:,} merged documents", merged.n_docs) as up:
                arrays = _build(merged, name, spec, BuildContext(fields, specs, up))
                up(merged.n_docs)
        _check_rows(name, arrays, merged.n_docs)
        merged.entry.files.update(_write_parts(merged.dir, name, arrays, generation))
