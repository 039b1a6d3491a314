"""CLI: index with filter fields, add / update, delete by id or filter, optimize, search --where, check."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cascade.cli import app
from cascade.index.index import Index

runner = CliRunner()
DOCS = [
    {"_id": "d1", "text": "solar panels and sunlight", "year": 2019, "lang": "en"},
    {"_id": "d2", "text": "wind turbines and solar farms", "metadata": {"year": 2021, "lang": "de"}},
    {"_id": "d3", "text": "pasta with solar dried tomatoes", "year": 2023, "lang": "en"},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def invoke(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def hits(index: Path, query: str, *extra: str) -> list[str]:
    result = invoke("search", index, query, "--json", "-k", "10", *extra)
    assert result.exit_code == 0, result.output
    return [h["id"] for h in json.loads(result.stdout)["hits"]]


def test_update_cycle(tmp_path: Path) -> None:
    index = tmp_path / "i.idx"
    result = invoke("index", write_jsonl(tmp_path / "a.jsonl", DOCS), "-o", index, "--filter-field", "year:int",
                    "--filter-field", "lang:keyword")
    assert result.exit_code == 0, result.output
    assert Index.open(index).filter_fields == {"year": "int", "lang": "keyword"}
    assert sorted(hits(index, "solar")) == ["d1", "d2", "d3"]
    assert sorted(hits(index, "solar", "--where", 'year >= 2020 AND lang = "en"')) == ["d3"]

    more = write_jsonl(tmp_path / "b.jsonl", [{"_id": "d4", "text": "solar solar", "year": 2024, "lang": "fr"}])
    result = invoke("add", index, more)
    assert result.exit_code == 0 and "added 1 document to" in result.stderr, result.output
    result = invoke("add", index, more)
    assert result.exit_code == 1 and "already in" in result.stderr and "--update" in result.stderr
    changed = write_jsonl(tmp_path / "c.jsonl", [{"_id": "d1", "text": "now about wind", "year": 2019}])
    result = invoke("add", index, changed, "--update")
    assert result.exit_code == 0 and "1 replaced" in result.stderr, result.output
    assert hits(index, "solar")[0] == "d4" and "d1" not in hits(index, "solar")

    result = invoke("delete", index, "--id", "d2", "--id", "nope")
    assert result.exit_code == 0 and "deleted 1 document from" in result.stderr, result.output
    assert "no live document with id 'nope'" in result.stderr
    result = invoke("delete", index, "--where", "year > 2023")
    assert result.exit_code == 0 and "deleted 1 document from" in result.stderr, result.output
    assert hits(index, "solar") == ["d3"]
    info = invoke("info", index)
    assert info.exit_code == 0 and "1 deleted document not yet merged away" in info.stdout
    result = invoke("optimize", index)
    assert result.exit_code == 0 and "-> 1 segment(s)" in result.stderr, result.output
    assert invoke("check", index).exit_code == 0
    idx = Index.open(index)
    assert sorted(d.id for d in idx) == ["d1", "d3"] and len(idx.segments) == 1


def test_user_errors(tmp_path: Path) -> None:
    index = tmp_path / "i.idx"
    invoke("index", write_jsonl(tmp_path / "a.jsonl", DOCS), "-o", index, "--filter-field", "year:int")
    for args, fragment in [
        (("delete", index), "say what to delete"),
        (("delete", index, "--where", "yeer = 1"), "did you mean 'year'"),
        (("search", index, "solar", "--where", "year >"), "expected a number"),
        (("index", tmp_path / "a.jsonl", "-o", tmp_path / "j", "--filter-field", "year"), "expected NAME:TYPE"),
        (("index", tmp_path / "a.jsonl", "-o", tmp_path / "k", "--filter-field", "year:text"), "unknown type"),
        (("add", tmp_path / "missing.idx", tmp_path / "a.jsonl"), "no such index directory"),
        (("add", index, tmp_path / "nothing.jsonl"), "no such file"),
    ]:
        result = invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith("error: ") and fragment in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output
