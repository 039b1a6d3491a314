"""Killing an index build at any moment never damages the index already published."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cascade
from cascade.retrieve.bm25 import BM25

BUILD_SCRIPT = """
import random, sys
import cascade
n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(7)
words = [f"w{i}" for i in range(5000)]
docs = (cascade.Doc(f"new{i}", " ".join(rng.choices(words, k=40))) for i in range(n))
cascade.Index.build(docs, path, overwrite=True)
print("done", flush=True)
"""

OLD_DOCS = [cascade.Doc(f"old{i}", f"original document number {i} about apples") for i in range(50)]


def start_build(script: Path, n: int, index: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(n), str(index)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def assert_old_or_new(index_dir: Path, n_new: int) -> str:
    """The index opens, passes its checksums, and is wholly the old or wholly the new one."""
    idx = cascade.Index.open(index_dir)
    assert idx.verify() == []
    if idx.n_docs == len(OLD_DOCS):
        assert [h.id for h in BM25(idx).search("apples", k=3)] == ["old0", "old1", "old2"]
        state = "old"
    else:
        assert idx.n_docs == n_new
        assert idx.doc_ids([0, n_new - 1]) == ["new0", f"new{n_new - 1}"]
        state = "new"
    idx.close()
    return state


@pytest.mark.slow
def test_killed_rebuild_leaves_previous_index_intact(tmp_path: Path) -> None:
    script = tmp_path / "build.py"
    script.write_text(BUILD_SCRIPT)
    index_dir = tmp_path / "live.idx"
    n_new = 30_000

    # How long does a full rebuild take here? Kill points are spread over that span.
    cascade.Index.build(OLD_DOCS, index_dir)
    t0 = time.perf_counter()
    proc = start_build(script, n_new, tmp_path / "timing.idx")
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    full = time.perf_counter() - t0

    states = []
    for fraction in (0.05, 0.2, 0.4, 0.6, 0.75, 0.85, 0.9, 0.95, 0.98, 1.0):
        proc = start_build(script, n_new, index_dir)
        time.sleep(full * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        states.append(assert_old_or_new(index_dir, n_new))
        if states[-1] == "new":  # published: put the old index back for the next round
            cascade.Index.build(OLD_DOCS, index_dir, overwrite=True)
    assert "old" in states  # at least one kill landed mid-build
    print("states after kills:", states)


def test_killed_first_build_leaves_no_index(tmp_path: Path) -> None:
    script = tmp_path / "build.py"
    script.write_text(BUILD_SCRIPT)
    index_dir = tmp_path / "fresh.idx"
    proc = start_build(script, 30_000, index_dir)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if index_dir.exists():  # the build may have finished already on a fast machine
        assert_old_or_new(index_dir, 30_000)
    else:
        with pytest.raises(cascade.BadIndexError):
            cascade.Index.open(index_dir)
    # a rerun after the crash succeeds (debris from the killed build does not block it)
    cascade.Index.build(OLD_DOCS, index_dir, overwrite=True)
    assert cascade.Index.open(index_dir).n_docs == len(OLD_DOCS)
    assert os.listdir(tmp_path).count("fresh.idx") == 1
