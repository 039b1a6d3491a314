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


# -- damage never reaches a result, and no write launders it ---------------------------------------------


def _rewrite_npy(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Apply ``change`` to a stored array in place (same shape and dtype: only its bytes differ)."""
    arr = np.load(path)
    data = np.ascontiguousarray(change(arr)).astype(arr.dtype).tobytes()
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size - len(data))
        f.write(data)


def _replace_bytes(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert old in data and len(old) == len(new)
    path.write_bytes(data.replace(old, new, 1))


def _cli(*args: object):  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from cascade.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _two_segments(path: Path) -> Index:
    Index.build(_docs(30), path)
    Index.open(path).add(_docs(10, "n"), merge=False)
    return Index.open(path)


def test_optimize_refuses_damage_instead_of_laundering_it(tmp_path: Path) -> None:
    path = tmp_path / "i.idx"
    _two_segments(path)
    _replace_bytes(path / "seg-000001" / "docs.bin", b"cats", b"cows")
    assert _cli("check", path).exit_code == 1
    result = _cli("optimize", path)
    assert result.exit_code == 1 and "seg-000001/docs.bin: checksum mismatch" in result.output
    assert len(result.output.strip().splitlines()) == 1
    after = _cli("check", path)
    assert after.exit_code == 1 and "docs.bin: checksum mismatch" in after.output  # still reported, not laundered
    with pytest.raises(cascade.core.errors.BadIndexError, match="docs.bin: checksum mismatch"):
        Index.open(path, verify=False).optimize()
    assert Index.open(path, verify=False).generation == 2


@pytest.mark.parametrize("damaged", ["ids.bin", "ids_offsets.npy", "doclens.npy"])
def test_writes_check_what_they_read_of_existing_segments(tmp_path: Path, damaged: str) -> None:
    path = tmp_path / "u.idx"
    _two_segments(path)
    target = path / "seg-000001" / damaged
    if damaged == "ids.bin":
        _replace_bytes(target, b"d1", b"x1")
    else:
        _rewrite_npy(target, lambda a: a + 1)
    generation = Index.open(path, verify=False).generation
    with pytest.raises(cascade.core.errors.BadIndexError, match=f"seg-000001/{damaged}: checksum mismatch"):
        Index.open(path, verify=False).update([Doc("d1", "cats purr again")])
    with pytest.raises(cascade.core.errors.BadIndexError, match=f"seg-000001/{damaged}: checksum mismatch"):
        Index.open(path, verify=False).delete(["d2"])
    assert Index.open(path, verify=False).refresh().generation == generation


def test_encoding_checks_the_documents_it_reads(tmp_path: Path) -> None:
    path = tmp_path / "e.idx"
    _two_segments(path)
    _replace_bytes(path / "seg-000002" / "docs.bin", b"cats", b"cows")
    calls: list[int] = []
    with pytest.raises(cascade.core.errors.BadIndexError, match="seg-000002/docs.bin: checksum mismatch"):
        reps.add_representation(Index.open(path, verify=False), "toy", {"kind": "dense"},
                                lambda seg: calls.append(seg.n_docs) or {"dense": np.ones((seg.n_docs, 2), np.float32)})
    assert calls == [30]  # the intact first segment was encoded (and committed); the damaged one was not read


@pytest.fixture
def big(monkeypatch: pytest.MonkeyPatch) -> None:
    """Indexes open as if they were above the size up to which an open re-hashes every file."""
    from cascade.index import index as index_module

    monkeypatch.setattr(index_module, "VERIFY_ALL_UP_TO", 0)
    monkeypatch.setattr(index_module, "SMALL_FILE", 0)


def test_damage_in_a_big_index_stops_a_search_before_it_reaches_a_result(tmp_path: Path, big: None) -> None:
    from cascade.retrieve.bm25 import BM25

    path = tmp_path / "b.idx"
    Index.build(_docs(40), path)
    want = [(h.id, h.score, h.text) for h in BM25(Index.open(path)).search("cats purr", k=5)]
    _rewrite_npy(path / "seg-000001" / "imp_values.npy", np.zeros_like)  # zeroed impacts
    with pytest.raises(cascade.core.errors.BadIndexError, match="imp_values.npy: checksum mismatch"):
        BM25(Index.open(path)).search("cats purr", k=5)
    result = _cli("search", path, "cats purr")
    assert result.exit_code == 1 and "imp_values.npy: checksum mismatch" in result.output
    assert len(result.output.strip().splitlines()) == 1

    Index.build(_docs(40), path, overwrite=True)
    docs_bin = path / Index.open(path).manifest.segments[0].name / "docs.bin"
    _replace_bytes(docs_bin, b"cats", b"cows")  # a stored text changed
    with pytest.raises(cascade.core.errors.BadIndexError, match="docs.bin: checksum mismatch"):
        BM25(Index.open(path)).search("cats purr", k=5)
    assert Index.open(path, verify=False).segments  # unchecked on purpose: verify=False trusts the files
    Index.build(_docs(40), path, overwrite=True)
    assert [(h.id, h.score, h.text) for h in BM25(Index.open(path)).search("cats purr", k=5)] == want


def test_damaged_token_vectors_stop_maxsim_in_a_big_index(tmp_path: Path, big: None, tiny_bi_encoder: str) -> None:
    from cascade.models.stored import encode_biencoder, representation_name

    path = tmp_path / "t.idx"
    encode_biencoder(Index.build(_docs(40), path), tiny_bi_encoder)
    seg = Index.open(path).segments[0]
    name = representation_name(tiny_bi_encoder)
    tokens = next(f for f in seg.entry.files if f.startswith(f"rep-{name}.tok_vectors."))
    _rewrite_npy(seg.dir / tokens, np.negative)
    text = f"bm25 % 10 >> maxsim(model={tiny_bi_encoder})"
    with pytest.raises(cascade.core.errors.BadIndexError, match=f"{tokens}: checksum mismatch"):
        cascade.parse(text, index=Index.open(path)).search("cats purr")


def test_each_file_is_hashed_once_per_process(tmp_path: Path, big: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade.index import fsutil
    from cascade.retrieve.bm25 import BM25

    path = tmp_path / "h.idx"
    Index.build(_docs(40), path)
    monkeypatch.setattr(fsutil, "RACY_SECONDS", 0.0)  # the files are fresh: let their digests be remembered
    hashed: list[str] = []
    original = fsutil.file_digest
    monkeypatch.setattr(fsutil, "file_digest", lambda p, *a: hashed.append(Path(p).name) or original(p, *a))
    first = Index.open(path)
    assert hashed == []  # a big index opens without hashing its large files
    BM25(first).search("cats purr", k=3)
    assert {"post_indptr.npy", "imp_values.npy", "docs.bin"} <= set(hashed)
    count = len(hashed)
    BM25(Index.open(path)).search("cats purr", k=3)  # a new snapshot of the same files: no hashing again
    assert len(hashed) == count
    first.delete(["d1"])  # the writer checks the ids and lengths it reads
    BM25(first.refresh()).search("cats purr", k=3)
    assert "del-000002.npy" in hashed[count:] and len(hashed) == len(set(hashed))  # each file once



def test_a_later_process_trusts_remembered_digests_until_the_file_changes(tmp_path: Path, big: None,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Digests found on first use are remembered in the cache directory: a new process (here: one
    that forgot what it hashed in memory) does not hash the unchanged files again, but a file
    written since is hashed and its damage caught; ``verify`` re-hashes whatever is remembered."""
    from cascade.index import fsutil
    from cascade.retrieve.bm25 import BM25

    path = tmp_path / "r.idx"
    Index.build(_docs(40), path)
    monkeypatch.setattr(fsutil, "RACY_SECONDS", 0.0)
    hashed: list[str] = []
    original = fsutil.file_digest
    monkeypatch.setattr(fsutil, "file_digest", lambda p, *a: hashed.append(Path(p).name) or original(p, *a))
    BM25(Index.open(path)).search("cats purr", k=3)
    assert "imp_values.npy" in hashed and list((fsutil.cache_root() / "digests").rglob("*"))
    fsutil._DIGESTS.clear()  # what a new process starts with
    hashed.clear()
    BM25(Index.open(path)).search("cats purr", k=3)
    assert hashed == []
    fsutil._DIGESTS.clear()
    values = path / "seg-000001" / "imp_values.npy"
    _rewrite_npy(values, lambda a: a * 0)
    with pytest.raises(cascade.core.errors.BadIndexError, match="imp_values.npy: checksum mismatch"):
        BM25(Index.open(path)).search("cats purr", k=3)
    assert hashed == ["imp_values.npy"]
    # bytes changed with the times unchanged (bit rot): only a re-hash finds it, which cascade check does
    fsutil._DIGESTS.clear()
    listed = Index.open(path).segments[0].entry.files["imp_values.npy"].blake2b
    fsutil._write_memo(fsutil._identity(values.stat()), listed)
    BM25(Index.open(path)).search("cats purr", k=3)
    assert any("imp_values.npy: checksum mismatch" in line for line in Index.open(path).verify())
    fsutil.forget_digests()
    assert not (fsutil.cache_root() / "digests").exists()

def test_check_reports_unlisted_files_and_repair_or_the_next_commit_removes_them(tmp_path: Path) -> None:
    path = tmp_path / "o.idx"
    Index.build(_docs(20), path)
    seg = path / "seg-000001"
    (seg / "rep-toy.dense.g7.npy").write_bytes(b"x" * 100)  # what a killed encoding leaves
    (seg / ".rep-toy.dense.g7.npy.tmp-7-123").write_bytes(b"x" * 10)
    result = _cli("check", path)
    assert result.exit_code == 0 and result.output.count("not listed by any commit") == 2
    assert "cascade check --repair removes it" in result.output
    repaired = _cli("check", path, "--repair")
    assert repaired.exit_code == 0 and "removed 2 unlisted item(s), 110 bytes" in repaired.output
    assert "not listed" not in _cli("check", path).output
    (seg / "rep-toy.dense.g7.npy").write_bytes(b"x" * 100)
    Index.open(path).delete(["d1"])  # the next commit tidies
    assert not (seg / "rep-toy.dense.g7.npy").exists()


# -- a full disk in add, update, delete and optimize -----------------------------------------------------


def _fill(disk: Path) -> Path:
    """Fill the small file system to the last byte."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for block in (65536, 1):
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def _intact(path: Path, n_docs: int, files: list[str]) -> None:
    from cascade.index.debris import find_debris

    idx = Index.open(path, verify=True)
    assert idx.n_docs == n_docs and verify_latest(path)[1] == [] and find_debris(path) == []
    assert sorted(p.name for p in path.iterdir()) == files


def test_a_full_disk_in_add_update_delete_and_optimize_is_one_line(disk: Path) -> None:
    path = disk / "w.idx"
    Index.build(_docs(50), path)
    Index.open(path).add(_docs(5, "n"), merge=False)
    files = sorted(p.name for p in path.iterdir())
    big = _docs(60_000, "big", words=12)
    for write in (lambda idx: idx.add(big), lambda idx: idx.update(big)):
        with pytest.raises(CascadeError, match="disk full / read-only; the last commit is intact") as err:
            write(Index.open(path))
        assert "\n" not in str(err.value)
        _intact(path, 55, files)
    filler = _fill(disk)
    for write in (lambda idx: idx.delete(["d1", "d2"]), lambda idx: idx.optimize()):
        with pytest.raises(CascadeError, match="disk full / read-only; the last commit is intact"):
            write(Index.open(path))
        _intact(path, 55, files)
    result = _cli("optimize", path)
    assert result.exit_code == 1 and "disk full / read-only; the last commit is intact" in result.output
    assert len(result.output.strip().splitlines()) == 1
    filler.unlink()
    Index.open(path).optimize()  # room again: it works
    assert len(Index.open(path).segments) == 1


def test_an_unwritable_stage_cache_costs_a_warning_not_the_results(disk: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from cascade.core.executor import run_pipeline
    from cascade.pipeline.cache import StageCache

    idx = Index.build(_docs(50), tmp_path / "c.idx")
    _fill(disk)
    queries = [cascade.Query(str(i), text) for i, text in enumerate(["cats purr", "dogs bark", "fish swim"])]
    cache = StageCache(disk / "stages")
    want = run_pipeline(cascade.parse("bm25", index=idx), queries).to_run()
    for pipeline in ("bm25", "bm25(k1=1.2)", "bm25 % 3"):
        got = run_pipeline(cascade.parse(pipeline, index=idx), queries, cache=cache).to_run()
        assert got.keys() == want.keys()
    err = capsys.readouterr().err
    assert err.count("warning: the stage cache") == 1 and "results are not cached" in err
    assert [p.name for p in (disk / "stages").rglob("*") if p.is_file()] == []  # no partial entries


def test_cascade_eval_keeps_its_results_when_the_stage_cache_disk_is_full(disk: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    root = tmp_path / "tiny"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": d.id, "text": d.text}) + "\n" for d in _docs(30)))
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "cats purr"}) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td3\t1\n")
    assert _cli("index", root, "-o", tmp_path / "t.idx").exit_code == 0
    monkeypatch.setenv("CASCADE_CACHE_DIR", str(disk / "cache"))
    (disk / "cache").mkdir()
    _fill(disk)
    result = _cli("eval", root, "--index", tmp_path / "t.idx", "--json", "--metrics", "RR")
    assert result.exit_code == 0, result.output
    assert "warning: the stage cache" in result.output
    assert json.loads(result.stdout)["results"][0]["metrics"]["RR"] > 0
