"""A read-only index or a full disk: one clear line, before long work where it can be known, and
the last commit intact (issue 14, "nothing lost, nothing silently wrong")."""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import cascade
from cascade.core.errors import CascadeError
from cascade.core.types import Doc
from cascade.index import representations as reps
from cascade.index.index import Index, verify_latest

WORDS = ["cats", "dogs", "purr", "bark", "fish", "swim", "birds", "fly"]


def _docs(n: int, prefix: str = "d", words: int = 6) -> list[Doc]:
    return [Doc(f"{prefix}{i}", " ".join(WORDS[(i + j) % len(WORDS)] for j in range(words)) + f" u{prefix}{i}")
            for i in range(n)]


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (needs root; skips the test otherwise)."""
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or not _mount("-t", "tmpfs", "-o", f"size={size}",
                                                                         "tmpfs", str(path)):
        pytest.skip("needs root and mount to make a small or read-only file system")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` (a small_disk mount, or any directory when not root) made read-only."""
    if os.geteuid() != 0:
        dirs = [path] + [p for p in path.rglob("*") if p.is_dir()]
        for d in dirs:
            d.chmod(0o555)
        try:
            yield
        finally:
            for d in dirs:
                d.chmod(0o755)
        return
    assert _mount("-o", "remount,ro", str(path))
    try:
        yield
    finally:
        _mount("-o", "remount,rw", str(path))


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", "3m") as root:
        yield root


def test_encoding_a_read_only_index_fails_at_once(disk: Path) -> None:
    idx = Index.build(_docs(30), disk / "i.idx")
    calls: list[str] = []

    def encode(latest: Index) -> None:
        calls.append("encode")
        reps.add_representation(latest, "toy", {"kind": "dense", "model": "none", "dim": 2},
                                lambda seg: {"vectors": np.ones((seg.n_docs, 2), np.float16)})

    with read_only(disk):
        with pytest.raises(CascadeError, match=r"the index is read-only .*cascade encode") as err:
            reps.ensure(idx, "toy", lambda spec: True, encode)
        assert "\n" not in str(err.value) and calls == []  # nothing encoded
        with pytest.raises(CascadeError, match="read-only"):
            reps.add_representation(idx, "toy", {"kind": "dense"}, lambda seg: calls.append("seg") or {})
        assert calls == []
        assert Index.open(disk / "i.idx").n_docs == 30  # reading still works
    segments, _ = reps.ensure(idx, "toy", lambda spec: True, encode)  # writable again: encodes
    assert calls == ["encode"] and reps.load(segments[0], "toy", "vectors").shape == (30, 2)


def test_a_neural_search_on_a_read_only_index_is_one_line(disk: Path, tiny_bi_encoder: str) -> None:
    idx = Index.build(_docs(30), disk / "n.idx")
    with read_only(disk):
        with pytest.raises(CascadeError, match=r"read-only .*no stored .*cascade encode"):
            cascade.parse(f"dense(model={tiny_bi_encoder})", index=idx).search("cats purr")
    hits = cascade.parse(f"dense(model={tiny_bi_encoder})", index=idx).search("cats purr", k=3).to_run()
    assert len(hits["0"]) == 3


def test_a_full_disk_is_a_one_line_error_and_the_last_commit_stays(disk: Path) -> None:
    path = disk / "i.idx"
    Index.build(_docs(50), path)
    big = _docs(60_000, "big", words=12)
    with pytest.raises(CascadeError, match="disk full / read-only; the last commit is intact"):
        Index.build(big, path, overwrite=True)
    idx = Index.open(path, verify=True)
    assert idx.n_docs == 50 and verify_latest(path)[1] == []
    assert sorted(p.name for p in path.iterdir()) == ["MANIFEST.json", "seg-000001"]  # its files were removed

    with pytest.raises(CascadeError, match="disk full / read-only; nothing was published"):
        Index.build(big, disk / "new.idx")
    assert not (disk / "new.idx").exists() and [p.name for p in disk.iterdir()] == ["i.idx"]  # no debris

    with pytest.raises(CascadeError, match="disk full / read-only; the last commit is intact"):
        reps.add_representation(idx, "huge", {"kind": "dense", "model": "none", "dim": 20_000},
                                lambda seg: {"vectors": np.ones((seg.n_docs, 20_000), np.float32)})
    assert Index.open(path, verify=True).manifest.representations == {}
    assert sorted(p.name for p in (path / "seg-000001").iterdir()) == sorted(idx.manifest.segments[0].files)
