"""Tests for cascade.data readers: JSONL, qrels, TREC runs/topics, folders, BEIR."""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

import pytest

from cascade.core.errors import DataError
from cascade.data import (
    BeirDataset,
    Doc,
    Query,
    ReadReport,
    corpus_fingerprint,
    count_lines,
    open_corpus,
    read_folder,
    read_jsonl_docs,
    read_jsonl_queries,
    read_qrels,
    read_trec_run,
    read_trec_topics,
    write_trec_run,
)

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SCIFACT = DATASETS / "scifact"
DL19 = DATASETS / "trec-dl19-passage-pool"


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def jl(*objs: object) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


def assert_names(err: DataError, path: Path, line: int | None) -> None:
    text = str(err)
    assert str(path) in text
    if line is not None:
        assert f"{path}:{line}:" in text
        assert err.line == line


# --- JSONL documents ---------------------------------------------------------------

GOOD_DOC = jl({"_id": "ok", "text": "fine"})

BAD_DOCS = {
    "malformed JSON": GOOD_DOC.encode() + b'{"_id": "x", "text": \n',
    "not an object": GOOD_DOC.encode() + b'["x", "y"]\n',
    "missing id": GOOD_DOC.encode() + jl({"text": "no id"}).encode(),
    "duplicate id": GOOD_DOC.encode() + jl({"_id": "ok", "text": "again"}).encode(),
    "invalid UTF-8": GOOD_DOC.encode() + b'{"_id": "u", "text": "caf\xe9"}\n',
    "empty document": GOOD_DOC.encode() + jl({"_id": "e", "title": " ", "text": "\t"}).encode(),
}


def test_jsonl_docs_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.jsonl",
        jl(
            {"_id": "a", "title": "T", "text": "alpha", "metadata": {"year": 2020}},
            {"id": 7, "contents": "seven", "lang": "en", "tags": ["x"]},
        )
        + "\n   \n"
        + jl({"docid": "c", "body": "", "title": "only title"}),
    )
    report = ReadReport()
    docs = list(read_jsonl_docs(path, report=report))
    assert docs == [
        Doc("a", "alpha", "T", {"year": 2020}),
        Doc("7", "seven", "", {"lang": "en"}),
        Doc("c", "", "only title", {}),
    ]
    assert report.read == 3 and report.skipped == 0


def test_jsonl_docs_is_lazy(tmp_path: Path) -> None:
    path = write(tmp_path / "c.jsonl", GOOD_DOC + "not json\n")
    docs = read_jsonl_docs(path)
    assert next(docs).id == "ok"  # the bad second line is not read yet
    with pytest.raises(DataError):
        next(docs)


@pytest.mark.parametrize("case", sorted(BAD_DOCS))
def test_jsonl_docs_bad_line_raises(tmp_path: Path, case: str) -> None:
    path = write(tmp_path / "c.jsonl", BAD_DOCS[case])
    with pytest.raises(DataError) as info:
        list(read_jsonl_docs(path))
    assert_names(info.value, path, 2)


@pytest.mark.parametrize("case", sorted(BAD_DOCS))
def test_jsonl_docs_bad_line_skipped(tmp_path: Path, case: str) -> None:
    path = write(tmp_path / "c.jsonl", BAD_DOCS[case] + jl({"_id": "last", "text": "z"}).encode())
    report = ReadReport()
    docs = list(read_jsonl_docs(path, skip_bad=True, report=report))
    assert [(d.id, d.text) for d in docs] == [("ok", "fine"), ("last", "z")]  # duplicate keeps first
    assert (report.read, report.skipped) == (2, 1)
    assert report.problems[0].startswith(f"{path}:2: ")


def test_jsonl_docs_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_jsonl_docs(tmp_path / "nope.jsonl")


# --- JSONL queries -----------------------------------------------------------------

GOOD_Q = jl({"_id": "q1", "text": "first"})

BAD_QUERIES = {
    "malformed JSON": GOOD_Q.encode() + b"{oops}\n",
    "not an object": GOOD_Q.encode() + b'"just a string"\n',
    "missing id": GOOD_Q.encode() + jl({"text": "who am i"}).encode(),
    "duplicate id": GOOD_Q.encode() + jl({"_id": "q1", "text": "again"}).encode(),
    "invalid UTF-8": GOOD_Q.encode() + b'{"_id": "q2", "text": "\xff"}\n',
    "empty text": GOOD_Q.encode() + jl({"_id": "q2", "text": "  "}).encode(),
}


def test_jsonl_queries_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path / "q.jsonl",
        jl({"_id": "a", "text": "x"}, {"qid": 2, "query": "y"}, {"query_id": "c", "title": "z"}),
    )
    assert read_jsonl_queries(path) == [Query("a", "x"), Query("2", "y"), Query("c", "z")]


@pytest.mark.parametrize("case", sorted(BAD_QUERIES))
def test_jsonl_queries_bad(tmp_path: Path, case: str) -> None:
    path = write(tmp_path / "q.jsonl", BAD_QUERIES[case])
    with pytest.raises(DataError) as info:
        read_jsonl_queries(path)
    assert_names(info.value, path, 2)
    report = ReadReport()
    assert read_jsonl_queries(path, skip_bad=True, report=report) == [Query("q1", "first")]
    assert (report.read, report.skipped) == (1, 1)


# --- qrels -------------------------------------------------------------------------

EXPECTED_QRELS = {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}


@pytest.mark.parametrize(
    "content",
    [
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td3\t2\n",
        "q1\td1\t1\nq1\td2\t0\n\nq2\td3\t2\n",
        "q1 0 d1 1\nq1 0 d2 0\nq2 Q0 d3 2\n",
    ],
    ids=["beir-header", "beir-no-header", "trec"],
)
def test_qrels_formats(tmp_path: Path, content: str) -> None:
    assert read_qrels(write(tmp_path / "qrels.txt", content)) == EXPECTED_QRELS


@pytest.mark.parametrize(
    "content",
    [
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\n",
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\thigh\n",
        "q1 0 d1 1\nq1 0 d2\n",
        "q1 0 d1 1\nq1 0 d2 1.5\n",
        b"q1\td1\t1\nq\xc3\td2\t1\n",
    ],
    ids=["beir-columns", "beir-rel", "trec-columns", "trec-rel", "utf8"],
)
def test_qrels_bad(tmp_path: Path, content: str | bytes) -> None:
    path = write(tmp_path / "qrels.txt", content)
    line = 3 if isinstance(content, str) and content.startswith("query-id") else 2
    with pytest.raises(DataError) as info:
        read_qrels(path)
    assert_names(info.value, path, line)
    report = ReadReport()
    assert read_qrels(path, skip_bad=True, report=report) == {"q1": {"d1": 1}}
    assert (report.read, report.skipped) == (1, 1)


def test_qrels_bad_first_line_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "qrels.txt", "q1 d1\n")
    with pytest.raises(DataError, match="columns") as info:
        read_qrels(path)
    assert_names(info.value, path, 1)


# --- TREC runs ---------------------------------------------------------------------


def test_run_round_trip_and_order(tmp_path: Path) -> None:
    run = {"q1": {"b": 1.0, "a": 1.0, "c": 3.25, "d": -0.1}, "q2": {"x": 0.1 + 0.2}}
    path = tmp_path / "out" / "run.trec"
    write_trec_run(run, path, tag="mine")
    lines = path.read_text().splitlines()
    assert [ln.split()[2:4] for ln in lines[:4]] == [["c", "1"], ["a", "2"], ["b", "3"], ["d", "4"]]
    assert all(ln.split()[1] == "Q0" and ln.split()[5] == "mine" for ln in lines)
    assert read_trec_run(path) == run  # exact float round trip
    assert not Path(str(path) + ".tmp").exists()


def test_run_write_is_atomic_on_error(tmp_path: Path) -> None:
    path = write(tmp_path / "run.trec", "old content\n")
    with pytest.raises(DataError):
        write_trec_run({"q1": {"a": 1.0, "b": float("nan")}}, path)
    assert path.read_text() == "old content\n"
    assert not Path(str(path) + ".tmp").exists()


@pytest.mark.parametrize(
    "bad", ["q1 Q0 d2 2 abc tag", "q1 Q0 d2 2 1.0", "q1 Q0 d1 2 0.5 tag"], ids=["score", "columns", "dup"]
)
def test_run_bad(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path / "run.trec", f"q1 Q0 d1 1 2.0 tag\n{bad}\nq2 Q0 d9 1 1.5 tag\n")
    with pytest.raises(DataError) as info:
        read_trec_run(path)
    assert_names(info.value, path, 2)
    report = ReadReport()
    assert read_trec_run(path, skip_bad=True, report=report) == {"q1": {"d1": 2.0}, "q2": {"d9": 1.5}}
    assert (report.read, report.skipped) == (2, 1)


# --- TREC topics -------------------------------------------------------------------

SGML = """<top>
<num> Number: 301
<title> International Organized
Crime

<desc> Description:
Identify organizations.
<narr> Narrative:
Whatever.
</top>

<top>
<num> Number: 302 </num>
<title> Topic: Poliomyelitis and Post-Polio </title>
<desc> Description: more
</top>
"""


def test_topics_sgml(tmp_path: Path) -> None:
    topics = read_trec_topics(write(tmp_path / "topics.txt", SGML))
    assert topics == [
        Query("301", "International Organized Crime"),
        Query("302", "Poliomyelitis and Post-Polio"),
    ]


def test_topics_tsv(tmp_path: Path) -> None:
    path = write(tmp_path / "topics.tsv", "1\tfirst query\n\n2\tsecond\tquery\n")
    assert read_trec_topics(path) == [Query("1", "first query"), Query("2", "second\tquery")]


def test_topics_bad(tmp_path: Path) -> None:
    tsv = write(tmp_path / "t.tsv", "1\tok\n2 no tab\n")
    with pytest.raises(DataError) as info:
        read_trec_topics(tsv)
    assert_names(info.value, tsv, 2)
    report = ReadReport()
    assert read_trec_topics(tsv, skip_bad=True, report=report) == [Query("1", "ok")]
    assert report.skipped == 1

    sgml = write(tmp_path / "t.sgml", SGML + "\n<top>\n<num> Number: 303\n<desc> no title\n</top>\n")
    with pytest.raises(DataError, match="no <title>") as info:
        read_trec_topics(sgml)
    assert_names(info.value, sgml, 18)


# --- folders -----------------------------------------------------------------------


def make_folder(root: Path) -> Path:
    write(root / "b.txt", "plain text\n")
    write(root / "a.md", "intro line\n# The Title  \nbody\n")
    write(root / "sub" / "c.md", "no heading here\n")
    write(root / "sub" / "skip.docx", "ignored")  # a suffix no reader takes
    write(root / ".hidden" / "h.txt", "hidden")
    return root


def test_folder_ids_titles(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "docs")
    docs = list(read_folder(root))
    assert [(d.id, d.title) for d in docs] == [("a.md", "The Title"), ("b.txt", ""), ("sub/c.md", "")]
    assert docs[0].text == "intro line\n# The Title  \nbody\n"
    assert [d.id for d in read_folder(root, suffixes=(".txt",))] == ["b.txt"]


@pytest.mark.parametrize("content", [b"caf\xe9", b"  \n\n"], ids=["utf8", "empty"])
def test_folder_bad_file(tmp_path: Path, content: bytes) -> None:
    root = make_folder(tmp_path / "docs")
    bad = write(root / "sub" / "bad.txt", content)
    with pytest.raises(DataError) as info:
        list(read_folder(root))
    assert str(info.value).startswith(f"{bad}: ") and info.value.line is None
    report = ReadReport()
    docs = list(read_folder(root, skip_bad=True, report=report))
    assert [d.id for d in docs] == ["a.md", "b.txt", "sub/c.md"]
    assert (report.read, report.skipped) == (3, 1)


# --- open_corpus and fingerprints --------------------------------------------------


def make_beir(root: Path) -> Path:
    write(root / "corpus.jsonl", jl({"_id": "d1", "text": "one"}, {"_id": "d2", "text": "two"}))
    write(root / "queries.jsonl", jl({"_id": "q1", "text": "query"}))
    write(root / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    write(root / "qrels" / "dev.tsv", "q1\td2\t1\n")
    return root


def test_open_corpus_dispatch(tmp_path: Path) -> None:
    beir = make_beir(tmp_path / "mini")
    assert [d.id for d in open_corpus(beir)] == ["d1", "d2"]
    assert [d.id for d in open_corpus(beir / "corpus.jsonl")] == ["d1", "d2"]
    assert [d.id for d in open_corpus(make_folder(tmp_path / "docs"))] == ["a.md", "b.txt", "sub/c.md"]
    with pytest.raises(DataError, match="no such file or directory") as info:
        open_corpus(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(info.value)
    with pytest.raises(DataError, match=r"\.jsonl"):
        open_corpus(write(tmp_path / "x.csv", "a,b\n"))


def test_gzip_jsonl_reads_like_jsonl_and_names_bad_lines(tmp_path: Path) -> None:
    plain = write(tmp_path / "c.jsonl", jl({"_id": "d1", "text": "one"}, {"_id": "d2", "text": "two"}))
    packed = tmp_path / "c.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert list(open_corpus(packed)) == list(open_corpus(plain))
    assert corpus_fingerprint(packed) != corpus_fingerprint(plain)  # of the bytes on disk
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"_id": "d1", "text": "one"}\n{oops\n'))
    with pytest.raises(DataError, match=r"bad\.jsonl\.gz:2: malformed JSON"):
        list(open_corpus(bad))
    cut = tmp_path / "cut.jsonl.gz"
    many = jl(*({"_id": f"d{i}", "text": "some text"} for i in range(50)))
    cut.write_bytes(gzip.compress(many.encode())[:-20])
    with pytest.raises(DataError, match=r"cut\.jsonl\.gz: damaged or truncated gzip data after line"):
        list(open_corpus(cut))
    fake = write(tmp_path / "fake.jsonl.gz", jl({"_id": "d1", "text": "one"}))
    with pytest.raises(DataError, match="gzip"):
        list(open_corpus(fake))


@pytest.mark.parametrize("content,expected", [
    ("1\tcats purr\n2\tdogs\tbark\n", [("1", "", "cats purr"), ("2", "", "dogs\tbark")]),
    ("pid\tpassage\n7\tfish swim\n", [("7", "", "fish swim")]),
    ("a\tCats\tcats purr\nb\t\tdogs bark\n", [("a", "Cats", "cats purr"), ("b", "", "dogs bark")]),
    ("id\ttitle\ttext\na\tCats\tcats\tpurr\n", [("a", "Cats", "cats\tpurr")]),
])
def test_tsv_corpus_layouts(tmp_path: Path, content: str, expected: list[tuple[str, str, str]]) -> None:
    docs = list(open_corpus(write(tmp_path / "c.tsv", content)))
    assert [(d.id, d.title, d.text) for d in docs] == expected


@pytest.mark.parametrize("content,fragment", [
    ("a\tT\tx\nb\tonly two\n", "c.tsv:2: expected 3 tab-separated columns (id, title, text), got 2"),
    ("just one column\n", "c.tsv:1: expected tab-separated columns"),
    ("a\tx\na\ty\n", "c.tsv:2: duplicate document id 'a'"),
    ("a\t  \n", "c.tsv:1: document a is empty"),
    ("\tx\n", "c.tsv:1: missing id"),
])
def test_tsv_bad_lines_name_file_and_line(tmp_path: Path, content: str, fragment: str) -> None:
    with pytest.raises(DataError) as info:
        list(open_corpus(write(tmp_path / "c.tsv", content)))
    assert fragment in str(info.value)


def test_tsv_skip_bad_counts(tmp_path: Path) -> None:
    report = ReadReport()
    docs = list(open_corpus(write(tmp_path / "c.tsv", "a\tT\tx\nb\tonly two\nc\tU\ty\n"), skip_bad=True,
                            report=report))
    assert [d.id for d in docs] == ["a", "c"] and report.skipped == 1 and report.read == 2


def test_stdin_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = jl({"_id": "d1", "text": "one"}) + "{oops\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines.encode())))
    with pytest.raises(DataError, match=r"^<stdin>:2: malformed JSON"):
        list(open_corpus("-"))
    with pytest.raises(DataError, match="standard input"):
        corpus_fingerprint("-")


def test_count_lines_totals(tmp_path: Path) -> None:
    plain = write(tmp_path / "c.jsonl", jl({"_id": "d1", "text": "one"}, {"_id": "d2", "text": "two"}))
    packed = tmp_path / "c.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert count_lines(plain) == 2 and count_lines(make_beir(tmp_path / "mini")) == 2
    assert count_lines("-") is None and count_lines(packed) is None and count_lines(tmp_path / "nope") is None
    assert count_lines(make_folder(tmp_path / "docs")) is None


def test_corpus_fingerprint(tmp_path: Path) -> None:
    beir = make_beir(tmp_path / "mini")
    fp = corpus_fingerprint(beir)
    assert len(fp) == 32
    assert fp == corpus_fingerprint(beir / "corpus.jsonl") == BeirDataset(beir).content_hash()
    write(beir / "corpus.jsonl", jl({"_id": "d1", "text": "one"}))
    assert corpus_fingerprint(beir) != fp

    folder = make_folder(tmp_path / "docs")
    before = corpus_fingerprint(folder)
    (folder / "b.txt").rename(folder / "b2.txt")  # same bytes, different path
    renamed = corpus_fingerprint(folder)
    assert renamed != before
    (folder / "sub" / "skip.docx").write_text("changed")  # not part of the corpus
    assert corpus_fingerprint(folder) == renamed
    (folder / "sub" / "c.md").write_text("edited")
    assert corpus_fingerprint(folder) != renamed


# --- BeirDataset -------------------------------------------------------------------


def test_beir_dataset_small(tmp_path: Path) -> None:
    ds = BeirDataset(make_beir(tmp_path / "mini"))
    assert ds.name == "mini" and ds.root == tmp_path / "mini"
    assert ds.splits() == ["dev", "test"]
    assert ds.qrels() == {"q1": {"d1": 1}} and ds.qrels("dev") == {"q1": {"d2": 1}}
    assert ds.queries() == [Query("q1", "query")]
    with pytest.raises(DataError, match="available splits: dev, test"):
        ds.qrels("train")
    first = ds.content_hash()
    write(ds.corpus_path, jl({"_id": "z", "text": "changed"}))
    assert ds.content_hash() == first  # cached on the instance
    assert BeirDataset(ds.root).content_hash() != first


def test_beir_dataset_invalid(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such"):
        BeirDataset(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="corpus.jsonl"):
        BeirDataset(tmp_path / "empty")


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="shared scifact dataset not present")
def test_beir_scifact() -> None:
    ds = BeirDataset(SCIFACT)
    report = ReadReport()
    assert sum(1 for _ in ds.corpus(report=report)) == 5183
    assert report.read == 5183
    assert len(ds.queries()) == 300
    assert len(ds.qrels("test")) == 300
    assert ds.name == "scifact" and "test" in ds.splits()
    assert ds.content_hash() == corpus_fingerprint(SCIFACT)


@pytest.mark.skipif(not DL19.is_dir(), reason="shared DL19 dataset not present")
def test_dl19_run_and_qrels() -> None:
    run = read_trec_run(DL19 / "runs" / "BM25.top100.trec")
    assert len(run) == 43
    assert all(len(docs) == 100 for docs in run.values())
    trec = read_qrels(DL19 / "qrels" / "anserini_qrels.dl19-passage.txt")
    beir = read_qrels(DL19 / "qrels" / "test.tsv")
    assert trec == beir
    assert len(trec) == 43 and sum(len(v) for v in trec.values()) == 9260
