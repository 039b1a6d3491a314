"""Index: build/open round trip, manifest, verification, damage, overwrite rules."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cascade.core.errors import BadIndexError, CascadeError
from cascade.core.types import Doc
from cascade.index.index import Index
from cascade.index.manifest import FORMAT_VERSION, MANIFEST_NAME, Manifest
from cascade.retrieve.bm25 import BM25
from cascade.text.analyzer import Analyzer

DOCS = [
    Doc("d1", "Cats purr when they are happy.", title="Cats", meta={"lang": "en", "year": 2020}),
    Doc("d2", "Dogs bark at cats and at the mailman.", title="Dogs"),
    Doc("d3", "Birds sing in the morning.", title="", meta={"tags": ["a", "b"]}),
    Doc("d4", "The quick brown fox jumps over the lazy dog."),
]

SEGMENT_FILES = {"terms.json", "post_indptr.npy", "post_docs.npy", "post_tfs.npy", "doclens.npy",
                 "ids.bin", "ids_offsets.npy", "docs.bin", "docs_offsets.npy", "imp_values.npy", "imp_block_indptr.npy",
                 "imp_block_max.npy", "imp_block_last.npy", "imp_term_max.npy"}


def blake2b_128(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


@pytest.fixture
def built(tmp_path: Path) -> Index:
    return Index.build(DOCS, tmp_path / "pets.idx")


def test_build_then_open_round_trip(built: Index, tmp_path: Path) -> None:
    idx = Index.open(tmp_path / "pets.idx")
    assert idx.n_docs == len(idx) == 4
    assert len(idx.segments) == 1
    assert idx.doc_ids([0, 1, 2, 3]) == ["d1", "d2", "d3", "d4"]
    assert idx.doc_ids([3, 0]) == ["d4", "d1"]
    assert idx.docs([0, 1, 2, 3]) == DOCS
    assert idx.docs([2, 0]) == [DOCS[2], DOCS[0]]  # in the order asked
    assert idx.docs([]) == []
    got = idx.get("d1")
    assert (got.title, got.text, got.meta) == ("Cats", DOCS[0].text, {"lang": "en", "year": 2020})
    assert idx.get("d3").meta == {"tags": ["a", "b"]}
    assert [idx.doc_number(d.id) for d in DOCS] == [0, 1, 2, 3]
    assert idx.doc_number("nope") is None
    with pytest.raises(CascadeError, match="no document with id 'nope'"):
        idx.get("nope")
    with pytest.raises(CascadeError):
        idx.docs([4])
    assert idx.fields == ["title", "text"]
    assert idx.analyzer == Analyzer()
    # stats: default analyzer on title + text
    expected_lengths = [len(Analyzer().terms(f"{d.title} {d.text}".strip())) for d in DOCS]
    assert idx.avg_doc_length == pytest.approx(sum(expected_lengths) / 4)
    assert idx.df("cat") == 2 and idx.df("dog") == 2 and idx.df("bird") == 1 and idx.df("zebra") == 0
    assert idx.df("the") == 0  # stopword never indexed
    assert built.version == idx.version
    idx.close()


def test_build_leaves_no_temporary_debris(built: Index, tmp_path: Path) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pets.idx"]
    assert sorted(p.name for p in (tmp_path / "pets.idx").iterdir()) == [MANIFEST_NAME, "seg-000001"]


def test_manifest_contents(built: Index, tmp_path: Path) -> None:
    root = tmp_path / "pets.idx"
    data = json.loads((root / MANIFEST_NAME).read_text())
    assert data["format"] == "cascade-index"
    assert data["format_version"] == FORMAT_VERSION == 2
    assert data["generation"] == 1
    assert data["analyzer"] == Analyzer().to_dict()
    assert data["fields"] == ["title", "text"]
    [seg] = data["segments"]
    assert seg["name"] == "seg-000001"
    assert seg["n_docs"] == 4
    assert seg["total_length"] == built.manifest.total_length > 0
    assert set(seg["files"]) == SEGMENT_FILES
    for name, entry in seg["files"].items():
        path = root / "seg-000001" / name
        assert entry["size"] == path.stat().st_size
        assert entry["blake2b"] == blake2b_128(path)


def test_manifest_records_custom_analyzer_and_fields(tmp_path: Path) -> None:
    analyzer = Analyzer(stopwords="snowball", stemmer="porter")
    idx = Index.build(DOCS, tmp_path / "i", analyzer=analyzer, fields=["text"], source={"path": "x"})
    m = Manifest.read(tmp_path / "i")
    assert m.analyzer == analyzer.to_dict()
    assert m.fields == ["text"]
    assert m.source == {"path": "x"}
    assert idx.analyzer == analyzer
    # with fields=["text"] the title is stored but not indexed
    text_only = Index.build([Doc("x", "body", title="heading")], tmp_path / "j", fields=["text"])
    assert text_only.df("head") == 0 and text_only.df("bodi") == 1
    assert text_only.get("x").title == "heading"


def test_bad_fields(tmp_path: Path) -> None:
    with pytest.raises(CascadeError, match="cannot index fields"):
        Index.build(DOCS, tmp_path / "i", fields=["body"])


def test_verify_intact_index_is_empty(built: Index) -> None:
    assert built.verify() == []


@pytest.mark.parametrize("victim", ["post_tfs.npy", "docs.bin", "terms.json"])
def test_verify_reports_flipped_bytes(built: Index, tmp_path: Path, victim: str) -> None:
    path = tmp_path / "pets.idx" / "seg-000001" / victim
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = Index.open(tmp_path / "pets.idx", verify=False).verify()
    assert len(problems) == 1
    assert victim in problems[0] and "checksum mismatch" in problems[0]
    # a default open re-hashes a small index and names the damaged file
    with pytest.raises(BadIndexError, match=f"{victim}: checksum mismatch"):
        Index.open(tmp_path / "pets.idx")


def test_truncated_file_fails_open_naming_the_file(built: Index, tmp_path: Path) -> None:
    path = tmp_path / "pets.idx" / "seg-000001" / "post_docs.npy"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(BadIndexError, match="post_docs.npy") as info:
        Index.open(tmp_path / "pets.idx")
    assert "damaged" in str(info.value)


def test_missing_file_fails_open(built: Index, tmp_path: Path) -> None:
    (tmp_path / "pets.idx" / "seg-000001" / "ids.bin").unlink()
    with pytest.raises(BadIndexError, match="ids.bin"):
        Index.open(tmp_path / "pets.idx")


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(BadIndexError, match="no such index directory"):
        Index.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(BadIndexError, match="not a Cascade index"):
        Index.open(tmp_path / "plain")
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BadIndexError, match="damaged manifest"):
        Index.open(tmp_path / "garbled")


def test_newer_format_version_is_refused(built: Index, tmp_path: Path) -> None:
    path = tmp_path / "pets.idx" / MANIFEST_NAME
    data = json.loads(path.read_text())
    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(BadIndexError, match="format version 99"):
        Index.open(tmp_path / "pets.idx")


def test_build_into_existing_index_without_overwrite(built: Index, tmp_path: Path) -> None:
    before = (tmp_path / "pets.idx" / MANIFEST_NAME).read_bytes()
    with pytest.raises(CascadeError, match="already holds an index"):
        Index.build([Doc("z", "zebra")], tmp_path / "pets.idx")
    assert (tmp_path / "pets.idx" / MANIFEST_NAME).read_bytes() == before
    assert Index.open(tmp_path / "pets.idx").n_docs == 4


def test_overwrite_replaces_contents_and_removes_old_segments(built: Index, tmp_path: Path) -> None:
    root = tmp_path / "pets.idx"
    built.close()
    new = Index.build([Doc("z1", "zebra stripes"), Doc("z2", "zebra crossing")], root, overwrite=True)
    assert new.n_docs == 2
    assert new.doc_ids([0, 1]) == ["z1", "z2"]
    assert new.doc_number("d1") is None
    assert new.manifest.generation == 2
    assert [s.name for s in new.manifest.segments] == ["seg-000002"]
    assert sorted(p.name for p in root.iterdir()) == [MANIFEST_NAME, "seg-000002"]
    assert [h.id for h in BM25(new).search("zebra")] == ["z1", "z2"]
    assert BM25(new).search("cat") == []
    assert new.verify() == []
    assert new.version != built.version
    again = Index.build(DOCS[:1], root, overwrite=True)
    assert [s.name for s in again.manifest.segments] == ["seg-000003"]
    assert sorted(p.name for p in root.iterdir()) == [MANIFEST_NAME, "seg-000003"]


def test_overwrite_with_empty_stream_keeps_old_index(built: Index, tmp_path: Path) -> None:
    with pytest.raises(CascadeError, match="no documents"):
        Index.build([], tmp_path / "pets.idx", overwrite=True)
    idx = Index.open(tmp_path / "pets.idx")
    assert idx.n_docs == 4 and idx.verify() == []
    assert sorted(p.name for p in (tmp_path / "pets.idx").iterdir()) == [MANIFEST_NAME, "seg-000001"]


def test_build_into_non_empty_non_index_dir(tmp_path: Path) -> None:
    target = tmp_path / "stuff"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(CascadeError, match="not a Cascade index"):
            Index.build(DOCS, target, overwrite=overwrite)
    assert (target / "notes.txt").read_text() == "keep me"
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(CascadeError):
        Index.build(DOCS, afile)


def test_build_into_empty_dir_is_fine(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert Index.build(DOCS, tmp_path / "empty").n_docs == 4


def test_build_creates_parent_directories(tmp_path: Path) -> None:
    assert Index.build(DOCS, tmp_path / "a" / "b" / "c.idx").n_docs == 4


def test_empty_doc_stream(tmp_path: Path) -> None:
    with pytest.raises(CascadeError, match="no documents to index"):
        Index.build(iter([]), tmp_path / "empty.idx")
    assert not (tmp_path / "empty.idx").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary build dir is cleaned up


def test_progress_callback(tmp_path: Path) -> None:
    seen: list[int] = []
    docs = (Doc(str(i), f"word{i % 7} common") for i in range(2500))
    Index.build(docs, tmp_path / "i", progress=seen.append)
    assert seen == [1000, 2000, 2500]


def test_query_analysed_like_documents_via_manifest(tmp_path: Path) -> None:
    raw = Analyzer(stopwords=None, stemmer=None)
    Index.build([Doc("a", "the running man"), Doc("b", "a runner")], tmp_path / "raw", analyzer=raw)
    idx = Index.open(tmp_path / "raw")  # analyzer comes from the manifest, not the default
    assert idx.analyzer == raw
    assert [h.id for h in BM25(idx).search("the")] == ["a"]
    assert [h.id for h in BM25(idx).search("running")] == ["a"]
    assert BM25(idx).search("run") == []  # not stemmed
    # the default analyzer drops "the" and stems: the same docs behave differently
    Index.build([Doc("a", "the running man"), Doc("b", "a runner")], tmp_path / "std")
    std = Index.open(tmp_path / "std")
    assert BM25(std).search("the") == []
    assert [h.id for h in BM25(std).search("runs")] == ["a"]


def test_repr(built: Index) -> None:
    assert "docs=4" in repr(built) and "segments=1" in repr(built)
