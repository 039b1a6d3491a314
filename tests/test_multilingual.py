"""Accent folding, CJK bigrams and c++ / c# end to end: indexing, searching, old manifests, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.core.types import Doc, Query
from cascade.index.index import Index
from cascade.index.manifest import MANIFEST_NAME
from cascade.retrieve.bm25 import BM25
from cascade.text.analyzer import Analyzer

DOCS = [
    Doc("cafe", "Das Café Zürich am See"),
    Doc("plain", "a cafe in zurich by the lake"),
    Doc("street", "Die Straße nach Øresund"),
    Doc("other", "nothing to see here"),
]


def ids(index: Index, query: str, k: int = 10) -> list[str]:
    return [hit.id for hit in BM25(index).search(query, k=k)]


@pytest.fixture(scope="module")
def folded(tmp_path_factory: pytest.TempPathFactory) -> Index:
    return Index.build(DOCS, tmp_path_factory.mktemp("fold") / "i")


def test_new_indexes_fold_and_record_it(folded: Index) -> None:
    assert folded.analyzer.fold_accents is True
    assert folded.manifest.analyzer["fold_accents"] is True
    assert Index.open(folded.path).analyzer == Analyzer()


def test_accented_documents_are_found_by_unaccented_queries_and_back(folded: Index) -> None:
    assert sorted(ids(folded, "cafe zurich")) == ["cafe", "plain"]
    assert sorted(ids(folded, "Café Zürich")) == ["cafe", "plain"]
    assert ids(folded, "strasse") == ids(folded, "STRASSE") == ids(folded, "Straße") == ["street"]
    assert ids(folded, "oresund") == ids(folded, "Øresund") == ["street"]
    # the batch path (ASCII and non-ASCII queries split apart) agrees with single queries
    queries = [Query("1", "cafe"), Query("2", "Zürich"), Query("3", "straße øresund"), Query("4", "see")]
    batch = BM25(folded).search_batch(queries, k=10).to_run()
    assert batch == {q.id: dict(zip(*_run(folded, q.text))) for q in queries}


def _run(index: Index, query: str) -> tuple[list[str], list[float]]:
    hits = BM25(index).search(query, k=10)
    return [h.id for h in hits], [h.score for h in hits]


def test_an_index_built_before_folding_keeps_analysing_queries_as_its_documents(tmp_path: Path) -> None:
    """A manifest whose analyzer dict lacks the new keys is opened with folding off: "café" was
    indexed as "café", so only "café" finds it, as before."""
    path = tmp_path / "old"
    Index.build(DOCS, path, analyzer=Analyzer(fold_accents=False))
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    for key in ("fold_accents", "cjk", "symbol_suffixes"):
        del manifest["analyzer"][key]
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))
    old = Index.open(path)
    assert old.analyzer.fold_accents is False and old.analyzer == Analyzer(fold_accents=False)
    assert ids(old, "Café") == ["cafe"]
    assert ids(old, "cafe") == ["plain"]
    assert ids(old, "Straße") == ["street"] and ids(old, "strasse") == []
    # documents added later are analysed as the first ones were
    old.add([Doc("new", "noch ein Café")])
    assert sorted(ids(Index.open(path), "Café")) == ["cafe", "new"]


def test_cjk_bigrams_find_words_inside_unspaced_text(tmp_path: Path) -> None:
    docs = [Doc("bj", "我爱北京天安门"), Doc("tk", "東京都に住んでいます"), Doc("kr", "한국어 텍스트 검색"),
            Doc("en", "Beijing and Tokyo")]
    index = Index.build(docs, tmp_path / "cjk", analyzer=Analyzer(cjk="bigrams"))
    assert index.manifest.analyzer["cjk"] == "bigrams"
    assert ids(index, "北京") == ["bj"]
    assert ids(index, "天安门广场") == ["bj"]
    assert ids(index, "東京") == ["tk"]
    assert ids(index, "京都") == ["tk"]  # a bigram inside 東京都: the known price of bigrams
    assert ids(index, "텍스트") == ["kr"]
    assert sorted(ids(index, "tokyo 東京")) == ["en", "tk"]
    # without bigrams the whole run is one term: a word inside it finds nothing
    plain = Index.build(docs, tmp_path / "plain")
    assert ids(plain, "北京") == [] and ids(plain, "我爱北京天安门") == ["bj"]


def test_c_plus_plus_and_c_sharp_are_found_with_symbol_suffixes(tmp_path: Path) -> None:
    docs = [Doc("cpp", "Templates in C++ and g++"), Doc("cs", "C# on .NET"), Doc("c", "The C language"),
            Doc("net", "a net for fish")]
    index = Index.build(docs, tmp_path / "sym", analyzer=Analyzer(symbol_suffixes=True))
    assert ids(index, "c++") == ids(index, "C++ ") == ["cpp"]
    assert ids(index, "C#") == ["cs"]
    assert sorted(ids(index, ".NET")) == ["cs", "net"]  # ".NET" is the word "net"
    # batch and single answers agree when some queries need the regex
    queries = [Query("1", "c++"), Query("2", "templates"), Query("3", "C# .net"), Query("4", "fish")]
    batch = BM25(index).search_batch(queries, k=10).to_run()
    assert batch == {q.id: dict(zip(*_run(index, q.text))) for q in queries}
    # without the option "C++" and "C#" have no term of two letters: nothing to find
    plain = Index.build(docs, tmp_path / "plain")
    assert ids(plain, "c++") == [] and ids(plain, "C#") == []


def test_cli_index_options_choose_the_analyzer(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"_id": d.id, "text": d.text}) + "\n" for d in DOCS), encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["index", str(corpus), "-o", str(tmp_path / "default")])
    assert result.exit_code == 0, result.output
    assert Index.open(tmp_path / "default").analyzer == Analyzer()
    result = runner.invoke(app, ["index", str(corpus), "-o", str(tmp_path / "opts"), "--no-fold-accents",
                                 "--cjk", "bigrams", "--symbol-suffixes"])
    assert result.exit_code == 0, result.output
    analyzer = Index.open(tmp_path / "opts").manifest.analyzer
    assert (analyzer["fold_accents"], analyzer["cjk"], analyzer["symbol_suffixes"]) == (False, "bigrams", True)
    result = runner.invoke(app, ["index", str(corpus), "-o", str(tmp_path / "bad"), "--cjk", "trigrams"])
    assert result.exit_code == 1
    assert "unknown cjk mode 'trigrams'" in result.stderr and "Traceback" not in result.output
