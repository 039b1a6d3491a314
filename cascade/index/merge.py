"""Merging segments: a tiered policy picks small segments to fold together; merging drops
deleted documents.

A merge writes one new segment holding the live documents of the segments it replaces (in
their order; they are re-indexed from the docstore with the index's analyzer, so postings,
lengths and filter columns are exactly what a fresh build would make), with every stored
representation (carried or rebuilt: see :func:`representations.write_merged`), and commits a
manifest listing it in their place. Live statistics (N, df, avgdl) do not change, so scores
do not change either; only doc numbers do. Readers of the old snapshot keep it until they
``refresh()``.
"""

from __future__ import annotations

import math
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cascade.core.types import Doc
from cascade.index import representations
from cascade.index.manifest import Manifest, SegmentEntry
from cascade.index.segment import Segment
from cascade.index.writer import Snapshot, publish_segment, segment_name, write_segment
from cascade.text.analyzer import Analyzer


@dataclass(frozen=True)
class TieredMergePolicy:
    """Segments are grouped in tiers by live size (tier i: fewer than ``factor ** (i+1)``
    live docs). A tier holding ``factor`` or more segments has its ``factor`` smallest merged;
    a segment with more than ``max_deleted`` of its documents deleted is rewritten."""

    factor: int = 8
    max_deleted: float = 0.3

    def select(self, segments: list[SegmentEntry]) -> list[str]:
        """Names of the segments to merge next (empty: nothing to do)."""
        tiers: dict[int, list[SegmentEntry]] = {}
        for s in segments:
            tiers.setdefault(int(math.log(max(s.n_live, 1), self.factor)), []).append(s)
        for tier in sorted(tiers):
            group = sorted(tiers[tier], key=lambda s: s.n_live)
            if len(group) >= self.factor:
                return [s.name for s in group[: self.factor]]
        for s in segments:
            if s.n_deleted > self.max_deleted * s.n_docs:
                return [s.name]
        return []


def live_docs(segments: list[Segment]) -> Iterator[Doc]:
    """The live documents of ``segments``, in order, read back from their docstores."""
    for seg in segments:
        nums = range(seg.n_docs) if seg.live is None else seg.live.nonzero()[0].tolist()
        batch: list[int] = []
        for num in nums:
            batch.append(num)
            if len(batch) == 2000:
                yield from seg.docstore.get(batch)
                batch = []
        yield from seg.docstore.get(batch)


def merge_segments(path: Path, names: list[str] | None, reporter: representations.Reporter | None = None) -> bool:
    """Merge the named segments (None: all of them, dropping every deleted document) in one
    commit; returns False when there was nothing to do. Call under the write lock.

    Every file of the segments to merge is checked against its checksum first (a damaged one
    is a :class:`BadIndexError` naming it, and nothing is written), and the merged segment gets
    every representation the manifest lists (see :func:`representations.write_merged`); when
    this process cannot build one it needs, the merge is refused before it starts."""
    snap = Snapshot.open(path)
    try:
        m = snap.manifest
        if names is None:
            names = [s.name for s in m.segments]
            if len(names) < 2 and not any(s.n_deleted for s in m.segments):
                return False
        picked = [i for i, s in enumerate(m.segments) if s.name in set(names)]
        if not picked:
            return False
        sources = [snap.segments[i] for i in picked]
        representations.require_for_merge(m, sources, f"merging {len(sources)} segment(s) of {path}")
        for seg in sources:  # a merge rewrites them: damage must stop it, not be laundered into a new segment
            seg.check_files()
        name = segment_name(snap.next_generation)
        tmp = path / f".tmp-{uuid.uuid4().hex[:12]}"
        try:
            entry = write_segment(live_docs(sources), tmp, name, Analyzer.from_dict(m.analyzer), m.fields,
                                  m.filter_fields)
            if m.representations:  # neural representations move with their documents (no re-encoding)
                merged = Segment(tmp, entry, lazy=False)
                try:
                    representations.write_merged(m, sources, merged, snap.next_generation, m.fields, reporter)
                finally:
                    merged.close()
            publish_segment(path, tmp, name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        kept = [s for i, s in enumerate(m.segments) if i not in set(picked)]
        kept.insert(picked[0], entry)
        snap.commit(kept)
        return True
    finally:
        snap.close()


def apply_policy(path: Path, policy: TieredMergePolicy, max_merges: int = 16,
                 reporter: representations.Reporter | None = None) -> int:
    """Run the merges ``policy`` asks for (under the write lock); returns how many ran."""
    done = 0
    while done < max_merges:
        m = Manifest.read(path)
        names = policy.select(m.segments)
        if not names or not merge_segments(path, names, reporter):
            break
        done += 1
    return done
