"""Readers, builders and writers racing each other (issue 14, "nothing lost, nothing silently
wrong"): an open or a check that races a commit never reports a healthy index as damaged and
never leaks a raw OSError; two builders of one path or one cache entry never crash; a killed
build's temporary directory does not stay forever."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.core.errors import BadIndexError, CascadeError
from cascade.core.types import Doc
from cascade.index import fsutil
from cascade.index.cache import cached_index
from cascade.index.index import Index, verify_latest
from cascade.text.analyzer import Analyzer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
FORK = multiprocessing.get_context("fork")
WORDS = ["apple", "banana", "cherry", "date", "elder", "fig", "grape", "honey", "iris", "jade"]


def _docs(n: int, prefix: str = "d") -> list[Doc]:
    return [Doc(f"{prefix}{i}", " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(1 + i % 6)))
            for i in range(n)]


def _commit_loop(path: str, stop: "multiprocessing.synchronize.Event", commits: "multiprocessing.Value") -> None:
    """A writer committing as fast as it can: adds (with the merge policy), deletes, full merges."""
    idx = Index.open(path)
    r = 0
    while not stop.is_set():
        idx.add([Doc(f"n{r}-{i}", f"zebra{r} {WORDS[i % len(WORDS)]} apple") for i in range(5)])
        idx.delete([f"n{r - 1}-0", f"n{r - 1}-1"])
        if r % 4 == 3:
            idx.optimize()
        r += 1
        commits.value = r


def test_opens_and_checks_racing_a_writer_report_no_false_damage(tmp_path: Path) -> None:
    path = tmp_path / "live.idx"
    Index.build(_docs(300), path)
    stop, commits = FORK.Event(), FORK.Value("i", 0)
    writer = FORK.Process(target=_commit_loop, args=(str(path), stop, commits))
    writer.start()
    errors: list[str] = []
    opens = 0
    try:
        deadline = time.monotonic() + 15
        while (opens < 400 or commits.value < 60) and time.monotonic() < deadline:
            try:
                if opens % 4 == 3:  # what `cascade check` does
                    index, problems = verify_latest(path)
                    errors += problems
                else:
                    index = Index.open(path, verify=True if opens % 2 else None)
                    errors += index.verify()
                index.close()
            except Exception as err:  # noqa: BLE001  (a raw OSError counts as a failure too)
                errors.append(f"{type(err).__name__}: {err}")
            opens += 1
    finally:
        stop.set()
        writer.join(timeout=60)
    assert writer.exitcode == 0
    assert commits.value >= 20, "the writer hardly committed: the test raced nothing"
    assert errors == [], f"{len(errors)} false errors in {opens} opens: {errors[:3]}"
    assert verify_latest(path)[1] == []


def test_a_damaged_file_of_the_current_commit_is_still_reported(tmp_path: Path) -> None:
    path = tmp_path / "i.idx"
    Index.build(_docs(50), path)
    old = Index.open(path)
    target = path / "seg-000001" / "doclens.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    old.add(_docs(3, "new"), merge=False)  # a newer commit that still lists the damaged file
    with pytest.raises(BadIndexError, match="doclens.npy: checksum mismatch"):
        Index.open(path)
    assert any("doclens.npy: checksum mismatch" in p for p in old.verify())
    assert any("doclens.npy: checksum mismatch" in p for p in verify_latest(path)[1])
    with pytest.raises(BadIndexError, match="doclens.npy"):
        old.check(verify=True)


def test_a_file_superseded_after_a_snapshot_opened_it_is_not_damage(tmp_path: Path) -> None:
    path = tmp_path / "i.idx"
    Index.build(_docs(50), path)
    Index.open(path).delete(["d1"])
    snapshot = Index.open(path)
    tombstones = snapshot.manifest.segments[0].deletes
    snapshot.delete(["d2"])  # the next commit lists a new tombstone file and removes the old one
    assert not (path / "seg-000001" / tombstones).exists()
    assert snapshot.verify() == []  # the snapshot holds what it read; the directory moved on
    snapshot.check(verify=True)
    assert snapshot.doc_number("d1") is None and snapshot.doc_number("d2") is not None


def test_an_unreadable_listed_file_is_a_bad_index_error_not_an_oserror(tmp_path: Path) -> None:
    path = tmp_path / "i.idx"
    Index.build(_docs(20), path)
    terms = path / "seg-000001" / "terms.json"
    terms.unlink()
    terms.mkdir()  # opening it raises IsADirectoryError
    with pytest.raises(BadIndexError, match="terms.json"):
        Index.open(path, verify=False)
    with pytest.raises(BadIndexError, match="terms.json"):
        Index.open(path)
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1 and "terms.json" in result.output and "Traceback" not in result.output


# -- two builders --------------------------------------------------------------------------------


def _build_child(path: str, start: "multiprocessing.synchronize.Barrier", out: "multiprocessing.Queue") -> None:
    start.wait()
    try:
        Index.build(_docs(3000), path)
        out.put("ok")
    except CascadeError as err:
        out.put(f"CascadeError: {err}")
    except BaseException as err:  # noqa: BLE001
        out.put(f"RAW {type(err).__name__}: {err}")


@pytest.mark.parametrize("empty_dir", [False, True])
def test_two_processes_building_one_new_path(tmp_path: Path, empty_dir: bool) -> None:
    outcomes: list[str] = []
    for round_ in range(3):
        path = tmp_path / f"r{round_}.idx"
        if empty_dir:
            path.mkdir()  # `rmdir` of an empty directory raced the other builder's publish
        start, out = FORK.Barrier(2), FORK.Queue()
        children = [FORK.Process(target=_build_child, args=(str(path), start, out)) for _ in range(2)]
        for c in children:
            c.start()
        for c in children:
            c.join(timeout=120)
        results = sorted(out.get(timeout=5) for _ in children)
        outcomes += results
        assert not any(r.startswith("RAW") for r in results), results
        assert "ok" in results, results  # one wins ...
        assert results.count("ok") == 1, results
        loser = [r for r in results if r != "ok"][0]  # ... the other is told clearly
        assert "another process published an index there" in loser or "already holds an index" in loser
        assert Index.open(path).n_docs == 3000
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f".{path.name}")) == []


def test_a_build_that_loses_the_race_says_so(tmp_path: Path) -> None:
    """Deterministic version: a second build publishes while the first one runs."""
    for empty_dir in (False, True):
        path = tmp_path / f"{empty_dir}.idx"
        if empty_dir:
            path.mkdir()

        def docs() -> object:
            yield from _docs(5)
            Index.build(_docs(7, "other"), path)  # publishes first
            yield from _docs(5, "late")

        with pytest.raises(CascadeError, match="another process published an index there"):
            Index.build(docs(), path)
        assert Index.open(path).n_docs == 7
    # with overwrite=True the later build replaces the one published meanwhile, in a commit
    path = tmp_path / "overwrite.idx"

    def more() -> object:
        yield from _docs(5)
        Index.build(_docs(7, "other"), path)
        yield from _docs(5, "late")

    idx = Index.build(more(), path, overwrite=True)
    assert idx.n_docs == 10 and idx.generation == 2 and idx.verify() == []
    assert sorted(p.name for p in path.iterdir()) == ["MANIFEST.json", "seg-000002"]
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".new-" in p.name) == []


def _cache_child(start: "multiprocessing.synchronize.Barrier", out: "multiprocessing.Queue") -> None:
    start.wait()
    try:
        index, _, built = cached_index("race", "content-1", lambda: _docs(3000), analyzer=Analyzer())
        out.put(("ok", built, index.n_docs, index.manifest.version_key()))
    except BaseException as err:  # noqa: BLE001
        out.put((f"{type(err).__name__}: {err}", None, None, None))


def test_two_processes_wanting_one_cold_cache_entry_both_get_it() -> None:
    start, out = FORK.Barrier(2), FORK.Queue()
    children = [FORK.Process(target=_cache_child, args=(start, out)) for _ in range(2)]
    for c in children:
        c.start()
    for c in children:
        c.join(timeout=120)
    results = [out.get(timeout=5) for _ in children]
    assert [r[0] for r in results] == ["ok", "ok"], results
    assert sorted(r[1] for r in results) == [False, True]  # one built it, the other waited and opened it
    assert results[0][2:] == results[1][2:] and results[0][2] == 3000


def test_a_damaged_cache_entry_is_rebuilt() -> None:
    index, _, built = cached_index("dmg", "c", lambda: _docs(40), analyzer=Analyzer())
    assert built
    target = index.path / "seg-000001" / "doclens.npy"
    index.close()
    target.write_bytes(b"garbage")
    index, _, built = cached_index("dmg", "c", lambda: _docs(40), analyzer=Analyzer())
    assert built and index.n_docs == 40 and index.verify() == []


# -- debris of killed builds ------------------------------------------------------------------

SLOW_BUILD = """
import sys, time
import cascade
def docs():
    for i in range(100_000):
        if i == 200:
            print("building", flush=True)
        if i >= 200:
            time.sleep(0.01)
        yield cascade.Doc(f"d{i}", f"word{i % 97} text {i}")
cascade.Index.build(docs(), sys.argv[1])
"""


def _start_slow_build(tmp_path: Path, path: Path) -> subprocess.Popen:
    script = tmp_path / "slow_build.py"
    script.write_text(SLOW_BUILD)
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "building"
    return proc


def _debris(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.tmp-"))


def test_a_killed_first_build_leaves_no_debris_after_the_next_open_or_build(tmp_path: Path) -> None:
    path = tmp_path / "new.idx"
    proc = _start_slow_build(tmp_path, path)
    try:
        assert len(_debris(path)) == 1
        with pytest.raises(BadIndexError, match="no such index directory"):
            Index.open(path)
        assert len(_debris(path)) == 1  # a running build's directory is left alone
        assert CliRunner().invoke(app, ["check", "--repair", str(path)]).exit_code == 1
        assert len(_debris(path)) == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert len(_debris(path)) == 1  # what the killed build left
    with pytest.raises(BadIndexError, match="no such index directory"):
        Index.open(path)
    assert _debris(path) == []  # removed by the next open

    proc = _start_slow_build(tmp_path, path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(_debris(path)) == 1
    Index.build(_docs(10), path)  # removed by the next build
    assert _debris(path) == []


def test_debris_removal_spares_newer_and_locked_directories(tmp_path: Path) -> None:
    stem = "x.idx"
    dead = tmp_path / f".{stem}.tmp-dead"
    dead.mkdir()
    (dead / "f").write_bytes(b"12345")
    os.utime(dead, (time.time() - 100, time.time() - 100))
    live, held = fsutil.claim_temp_dir(tmp_path, stem)
    fresh = tmp_path / f".{stem}.tmp-fresh"
    fresh.mkdir()
    other = tmp_path / ".y.idx.tmp-dead"
    other.mkdir()
    try:
        removed = fsutil.remove_dead_temp_dirs(tmp_path, stem, before=time.time() - 50)
        assert removed == [(dead, 5)]
        assert live.exists() and fresh.exists() and other.exists()
        removed = fsutil.remove_dead_temp_dirs(tmp_path, stem)
        assert [p for p, _ in removed] == [fresh] and live.exists()
    finally:
        os.close(held)
    assert [p for p, _ in fsutil.remove_dead_temp_dirs(tmp_path, stem)] == [live]


def test_check_repair_removes_unlisted_files_and_reports_them(tmp_path: Path) -> None:
    path = tmp_path / "i.idx"
    idx = Index.build(_docs(30), path)
    (path / ".tmp-0123456789ab").mkdir()
    (path / ".tmp-0123456789ab" / "post_docs.npy").write_bytes(b"x" * 1000)
    (path / "seg-000009").mkdir()
    np.save(path / "seg-000001" / "del-000007.npy", np.zeros(30, dtype=bool))
    (path / "seg-000001" / "rep-dense.dense.g5.npy").write_bytes(b"y" * 10)
    (path / f".{'MANIFEST.json'}.tmp-123").write_bytes(b"{}")
    (path / "NOTES.txt").write_text("mine")  # not the index's: left alone
    sibling = tmp_path / ".i.idx.tmp-0123456789ab"
    sibling.mkdir()
    (sibling / "big").write_bytes(b"z" * 5000)
    result = CliRunner().invoke(app, ["check", "--repair", str(path)])
    assert result.exit_code == 0, result.output
    for name in (".tmp-0123456789ab", "seg-000009", "del-000007.npy", "rep-dense.dense.g5.npy",
                 ".MANIFEST.json.tmp-123", ".i.idx.tmp-0123456789ab"):
        assert name in result.output
    assert "removed 6 unlisted item(s)" in result.output and result.output.rstrip().endswith("ok")
    assert sorted(p.name for p in path.iterdir()) == ["MANIFEST.json", "NOTES.txt", "seg-000001"]
    assert sorted(p.name for p in (path / "seg-000001").iterdir()) == sorted(idx.manifest.segments[0].files)
    assert not sibling.exists()
    result = CliRunner().invoke(app, ["check", "--repair", str(path)])
    assert "removed 0 unlisted item(s), 0 bytes" in result.output and result.exit_code == 0
