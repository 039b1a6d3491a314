"""The `cascade` command line: index, search, eval, info, check, demo and user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.data import read_trec_run
from cascade.index.index import Index
from cascade.retrieve.bm25 import BM25

runner = CliRunner()

DOCS = [
    {"_id": "d1", "title": "Solar power", "text": "Solar panels convert sunlight into electricity."},
    {"_id": "d2", "title": "Wind power", "text": "Wind turbines generate electricity from moving air."},
    {"_id": "d3", "title": "Cooking", "text": "Boil the pasta in salted water.", "source": "kitchen"},
    {"_id": "d4", "title": "Gardening", "text": "Plant tomatoes in spring, in full sunlight."},
]
QUERIES = [
    {"_id": "q1", "text": "solar electricity"},
    {"_id": "q2", "text": "pasta water"},
    {"_id": "q3", "text": "wind turbines"},
    {"_id": "q9", "text": "an unjudged query about tomatoes"},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\nq3\td2\t1\n"


def write_jsonl(path: Path, rows: list[dict], extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + extra, encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "docs.jsonl", DOCS)


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    root = tmp_path / "tinybeir"
    write_jsonl(root / "corpus.jsonl", DOCS)
    write_jsonl(root / "queries.jsonl", QUERIES)
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text(QRELS, encoding="utf-8")
    return root


@pytest.fixture
def built(corpus: Path, tmp_path: Path) -> Path:
    out = tmp_path / "docs.idx"
    result = runner.invoke(app, ["index", str(corpus), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def invoke(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def nonblank(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_user_error(result, *fragments: str) -> str:  # type: ignore[no-untyped-def]
    """Exit 1 through typer.Exit (not an escaped exception), one `error:` line, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = nonblank(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def squash(text: str) -> str:
    """Output without whitespace, so rich's line wrapping does not matter."""
    return "".join(text.split())


# -- index and search ---------------------------------------------------------------------


def test_index_then_search_json(built: Path) -> None:
    assert Index.open(built).n_docs == 4
    result = invoke("search", built, "solar sunlight", "--json")
    assert result.exit_code == 0, result.output
    lines = nonblank(result.stdout)
    assert len(lines) == 1  # exactly one JSON object
    payload = json.loads(lines[0])
    assert set(payload) == {"query", "hits", "seconds"}
    assert payload["query"] == "solar sunlight"
    assert isinstance(payload["seconds"], float)
    hits = payload["hits"]
    assert [h["id"] for h in hits] == ["d1", "d4"]
    assert all(set(h) == {"rank", "id", "score", "title", "text", "meta"} for h in hits)
    assert [h["rank"] for h in hits] == [1, 2]
    assert hits[0]["title"] == "Solar power"
    assert hits[0]["text"] == "Solar panels convert sunlight into electricity."
    assert hits[0]["score"] > hits[1]["score"] > 0
    expected = BM25(Index.open(built)).search("solar sunlight", k=10)
    assert [h["score"] for h in hits] == [round(h.score, 4) for h in expected]


def test_search_k_and_parameters(built: Path) -> None:
    one = json.loads(invoke("search", built, "electricity", "--json", "-k", "1").stdout)
    assert len(one["hits"]) == 1
    both = json.loads(invoke("search", built, "electricity", "--json").stdout)
    assert [h["id"] for h in both["hits"]][:1] == [one["hits"][0]["id"]]
    assert len(both["hits"]) == 2
    other = json.loads(invoke("search", built, "electricity", "--json", "--k1", "2.0", "--b", "1.0").stdout)
    assert [h["score"] for h in other["hits"]] != [h["score"] for h in both["hits"]]


def test_search_no_hits_json(built: Path) -> None:
    payload = json.loads(invoke("search", built, "zebra", "--json").stdout)
    assert payload["hits"] == []


def test_search_table_output(built: Path) -> None:
    result = invoke("search", built, "pasta")
    assert result.exit_code == 0
    assert "d3" in result.stdout and "1 hit in" in result.stdout


def test_index_reports_to_stderr(corpus: Path, tmp_path: Path) -> None:
    result = invoke("index", corpus, "-o", tmp_path / "x.idx")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "indexed4documents" in squash(result.stderr)


def test_index_folder(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# Garden plans\n\nTomatoes and basil this year.\n")
    (folder / "sub" / "b.txt").write_text("Fix the bicycle chain.\n")
    (folder / "ignored.csv").write_text("tomatoes,bicycle\n")
    out = tmp_path / "notes.idx"
    assert invoke("index", folder, "-o", out).exit_code == 0
    assert Index.open(out).n_docs == 2
    hits = json.loads(invoke("search", out, "tomato", "--json").stdout)["hits"]
    assert hits == [{"rank": 1, "id": "a.md", "score": hits[0]["score"], "title": "Garden plans",
                     "text": "# Garden plans\n\nTomatoes and basil this year.\n", "meta": {}}]
    assert [h["id"] for h in json.loads(invoke("search", out, "bicycles", "--json").stdout)["hits"]] == ["sub/b.txt"]


def test_index_beir_dir_and_analyzer_options(beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "raw.idx"
    result = invoke("index", beir, "-o", out, "--stopwords", "none", "--stemmer", "none", "--fields", "text")
    assert result.exit_code == 0, result.output
    idx = Index.open(out)
    assert idx.analyzer.stopwords is None and idx.analyzer.stemmer is None
    assert idx.fields == ["text"]
    # "the" is kept and the query is not stemmed: analysed like the documents
    assert [h["id"] for h in json.loads(invoke("search", out, "the", "--json").stdout)["hits"]] == ["d3"]
    assert json.loads(invoke("search", out, "turbine", "--json").stdout)["hits"] == []
    assert json.loads(invoke("search", out, "power", "--json").stdout)["hits"] == []  # titles not indexed


def test_index_overwrite(built: Path, tmp_path: Path) -> None:
    other = write_jsonl(tmp_path / "other.jsonl", [{"_id": "z", "text": "zebra"}])
    assert_user_error(invoke("index", other, "-o", built), "already holds an index", "--overwrite")
    assert Index.open(built).n_docs == 4
    assert invoke("index", other, "-o", built, "--overwrite").exit_code == 0
    assert Index.open(built).doc_ids([0]) == ["z"] and Index.open(built).n_docs == 1


def test_skip_bad_skips_and_reports(tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", DOCS[:2], extra='not json\n{"_id": "d9", "text": ""}\n')
    assert_user_error(invoke("index", bad, "-o", tmp_path / "a.idx"), "bad.jsonl:3", "malformed JSON", "--skip-bad")
    assert not (tmp_path / "a.idx").exists()
    result = invoke("index", bad, "-o", tmp_path / "b.idx", "--skip-bad")
    assert result.exit_code == 0, result.output
    text = squash(result.stderr)  # informational lines are wrapped by rich; compare without whitespace
    assert "indexed2documents" in text
    assert "2badrecordsskipped" in text
    assert "bad.jsonl:3:malformedJSON" in text
    assert "bad.jsonl:4:documentd9isempty" in text
    assert Index.open(tmp_path / "b.idx").doc_ids([0, 1]) == ["d1", "d2"]


# -- user errors --------------------------------------------------------------------------


def test_search_missing_index(tmp_path: Path) -> None:
    assert_user_error(invoke("search", tmp_path / "nope", "q"), "no such index directory")


def test_search_not_an_index(tmp_path: Path) -> None:
    assert_user_error(invoke("search", tmp_path, "q"), "not a Cascade index")


def test_search_bad_k(built: Path) -> None:
    assert_user_error(invoke("search", built, "q", "-k", "0"), "-k must be at least 1")


def test_index_missing_source(tmp_path: Path) -> None:
    assert_user_error(invoke("index", tmp_path / "missing.jsonl", "-o", tmp_path / "i"), "no such file")


def test_index_bad_stemmer(corpus: Path, tmp_path: Path) -> None:
    assert_user_error(invoke("index", corpus, "-o", tmp_path / "i", "--stemmer", "klingon"), "unknown stemmer")


def test_eval_unknown_metric(beir: Path) -> None:
    assert_user_error(invoke("eval", beir, "--metrics", "nDCG@10,bogus@3"), "unknown metric 'bogus@3'")


def test_eval_unknown_pipeline(beir: Path, cache_dir: Path) -> None:
    result = invoke("eval", beir, "-p", "bm25 >> splade % 10")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    first, echoed, caret = nonblank(result.stderr)
    assert first.startswith("error: unknown stage 'splade'") and "bm25" in first  # lists what exists
    assert echoed.strip() == "bm25 >> splade % 10"
    assert caret.index("^") == echoed.index("splade")  # points at the offending token
    assert not (cache_dir / "indexes").exists()  # failed before any work


def test_eval_missing_dataset(tmp_path: Path) -> None:
    assert_user_error(invoke("eval", tmp_path / "nope"), "no such dataset directory")


def test_eval_missing_split(beir: Path) -> None:
    assert_user_error(invoke("eval", beir, "--split", "dev"), "no qrels for split 'dev'", "test")


def test_eval_missing_run_file(beir: Path) -> None:
    assert_user_error(invoke("eval", beir, "--run", "runs/missing.trec"), "no such run file")


def test_info_on_missing_index(tmp_path: Path) -> None:
    assert_user_error(invoke("info", tmp_path / "nope"), "no such index directory")


@pytest.mark.parametrize("args,fragment", [
    (["search", "{tmp}/nope", "hello"], "no such index directory"),
    (["index", "{tmp}/bad.jsonl", "-o", "{tmp}/out"], "malformed JSON"),
])
def test_real_process_prints_one_line_and_no_traceback(tmp_path: Path, args: list[str], fragment: str) -> None:
    write_jsonl(tmp_path / "bad.jsonl", DOCS[:1], extra="{oops\n")
    cmd = [sys.executable, "-m", "cascade.cli", *(a.format(tmp=tmp_path) for a in args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "80"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = nonblank(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]


# -- eval ---------------------------------------------------------------------------------


def eval_json(*args: object) -> dict:
    result = invoke("eval", *args, "--json")
    assert result.exit_code == 0, result.output
    lines = nonblank(result.stdout)
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def test_eval_bm25_json(beir: Path) -> None:
    report = eval_json(beir, "--metrics", "nDCG@10,RR,P@1")
    assert report["dataset"] == "tinybeir"
    assert report["queries"] == 3  # q9 has no judgements
    assert report["skipped"] == 0
    [res] = report["results"]
    assert res["pipeline"] == "bm25"
    assert res["metrics"] == pytest.approx({"nDCG@10": 1.0, "RR": 1.0, "P@1": 1.0})
    assert set(res["seconds"]) == {"index", "search"}
    assert res["seconds"]["index"] >= 0 and res["seconds"]["search"] >= 0
    assert "per_query" not in res


def test_eval_default_metrics_and_per_query(beir: Path) -> None:
    report = eval_json(beir, "--per-query")
    [res] = report["results"]
    assert list(res["metrics"]) == ["nDCG@10", "R@100"]
    assert sorted(res["per_query"]) == ["q1", "q2", "q3"]


def test_eval_table_output(beir: Path) -> None:
    result = invoke("eval", beir)
    assert result.exit_code == 0, result.output
    assert "tinybeir" in result.stdout and "bm25" in result.stdout and "1.0000" in result.stdout


def cached_indexes(cache_dir: Path) -> list[Path]:
    """The cached index directories (not the hidden lock files beside them)."""
    return sorted(p for p in (cache_dir / "indexes").iterdir() if not p.name.startswith("."))


def test_second_eval_reuses_cache(beir: Path, cache_dir: Path, tmp_path: Path) -> None:
    first = eval_json(beir, "--save-run", tmp_path / "one.trec")
    entries = cached_indexes(cache_dir)
    assert len(entries) == 1
    manifest = entries[0] / "MANIFEST.json"
    stamp = manifest.stat().st_mtime_ns
    second = eval_json(beir, "--save-run", tmp_path / "two.trec")
    assert cached_indexes(cache_dir) == entries
    assert manifest.stat().st_mtime_ns == stamp  # opened, not rebuilt
    assert second["results"][0]["metrics"] == first["results"][0]["metrics"]
    assert (tmp_path / "one.trec").read_bytes() == (tmp_path / "two.trec").read_bytes()
    # different analysis settings get their own cache entry
    eval_json(beir, "--stemmer", "none")
    assert len(cached_indexes(cache_dir)) == 2


def test_cache_follows_corpus_content(beir: Path, cache_dir: Path) -> None:
    eval_json(beir)
    write_jsonl(beir / "corpus.jsonl", DOCS + [{"_id": "d5", "text": "more solar electricity"}])
    eval_json(beir)
    assert len(cached_indexes(cache_dir)) == 2


def test_eval_with_given_index(beir: Path, cache_dir: Path, tmp_path: Path) -> None:
    assert invoke("index", beir, "-o", tmp_path / "given.idx").exit_code == 0
    report = eval_json(beir, "--index", tmp_path / "given.idx", "--metrics", "RR")
    assert report["results"][0]["metrics"] == {"RR": 1.0}
    assert not (cache_dir / "indexes").exists()


def test_save_run_writes_trec(beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "bm25.trec"
    eval_json(beir, "--save-run", out, "-p", "bm25 % 2")
    lines = out.read_text().splitlines()
    assert lines
    for line in lines:
        qid, q0, doc, rank, score, tag = line.split()
        assert q0 == "Q0" and tag == "bm25%2" and qid in {"q1", "q2", "q3"}
        float(score)
    run = read_trec_run(out)
    assert sorted(run) == ["q1", "q2", "q3"]
    assert all(len(docs) <= 2 for docs in run.values())
    assert max(run["q1"], key=run["q1"].get) == "d1"
    assert [line.split()[3] for line in lines if line.startswith("q1 ")][:1] == ["1"]


def test_eval_stored_run_relative_to_dataset(beir: Path, cache_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (beir / "runs").mkdir()
    (beir / "runs" / "my.trec").write_text(
        "q1 Q0 d2 1 3.0 mine\nq1 Q0 d1 2 2.0 mine\n"  # relevant at rank 2: RR 0.5
        "q2 Q0 d3 1 5.0 mine\n"  # RR 1
        "q3 Q0 d1 1 1.0 mine\n"  # relevant doc missing: RR 0
    )
    monkeypatch.chdir(tmp_path)  # runs/my.trec does not exist here, only under the dataset
    report = eval_json(beir, "--run", "runs/my.trec", "--metrics", "RR,P@1")
    [res] = report["results"]  # a stored run only: no bm25 unless asked
    assert res["pipeline"] == "run(runs/my.trec)"
    assert res["metrics"] == pytest.approx({"RR": 0.5, "P@1": 1 / 3})
    assert "search" in res["seconds"]
    assert not (cache_dir / "indexes").exists()  # nothing was indexed
    both = eval_json(beir, "--run", "runs/my.trec", "-p", "bm25", "--metrics", "RR")
    assert [r["pipeline"] for r in both["results"]] == ["run(runs/my.trec)", "bm25"]


def test_eval_skip_bad(beir: Path) -> None:
    write_jsonl(beir / "corpus.jsonl", DOCS, extra='{"_id": "d1", "text": "duplicate"}\n')
    assert_user_error(invoke("eval", beir), "corpus.jsonl:5", "duplicate document id")
    result = invoke("eval", beir, "--skip-bad", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["skipped"] == 1
    assert report["results"][0]["metrics"]["nDCG@10"] == pytest.approx(1.0)
    assert "1badrecordskipped" in squash(result.stderr)


# -- info, check, demo --------------------------------------------------------------------


def test_info(built: Path) -> None:
    result = invoke("info", built)
    assert result.exit_code == 0, result.output
    text = squash(result.stdout)
    assert "4documents,1segment(s),generation1" in text
    assert "'stemmer':'english'" in text and "'stopwords':'english'" in text
    assert "fields:title,text" in text
    assert "seg-000001:4docs" in text


def test_check_ok_and_damaged(built: Path) -> None:
    result = invoke("check", built)
    assert result.exit_code == 0
    assert squash(result.stdout).endswith(":ok")
    victim = built / "seg-000001" / "doclens.npy"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x01
    victim.write_bytes(bytes(data))
    result = invoke("check", built)
    assert result.exit_code == 1
    assert "damaged:" in result.stderr and "seg-000001/doclens.npy:checksummismatch" in squash(result.stderr)
    assert "ok" not in result.stdout


def test_check_lists_every_damaged_file_even_when_the_index_cannot_open(built: Path) -> None:
    """A truncated file makes opening fail; check still lists every problem, not the first."""
    for name in ("post_tfs.npy", "doclens.npy"):
        victim = built / "seg-000001" / name
        victim.write_bytes(victim.read_bytes()[:10])
    flipped = built / "seg-000001" / "terms.json"
    flipped.write_text(flipped.read_text().replace("solar", "polar"))
    (built / "seg-000001" / "ids.bin").unlink()
    result = invoke("check", built)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    damaged = squash(result.stderr)
    for fragment in ("post_tfs.npy:size10", "doclens.npy:size10", "terms.json:checksummismatch", "ids.bin:missing"):
        assert fragment in damaged, (fragment, result.stderr)
    assert "ok" not in result.stdout


def test_check_unreadable_manifest_and_missing_index(built: Path, tmp_path: Path) -> None:
    (built / "MANIFEST.json").write_text("{not json")
    result = invoke("check", built)
    assert result.exit_code == 1 and "damaged:" in result.stderr and "Traceback" not in result.output
    assert_user_error(invoke("check", tmp_path / "nothing"), "no such index directory")


def test_demo(tmp_path: Path) -> None:
    out = tmp_path / "demo.idx"
    result = invoke("demo", "-q", "json", "-k", "3", "-o", out)
    assert result.exit_code == 0, result.output
    assert "docstrings" in result.stdout
    rows = [[c.strip() for c in line.split("│")] for line in result.stdout.splitlines() if line.count("│") >= 4]
    ids = [row[3] for row in rows]
    assert len(ids) == 3
    assert any(i.startswith("json") for i in ids), ids
    assert Index.open(out).n_docs > 1000


def test_no_args_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "index" in result.output and "eval" in result.output and "search" in result.output
