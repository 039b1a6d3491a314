"""`cascade eval` around its results: saved runs, report files, a given index that does not fit
the dataset, --k1/--b reaching every BM25 stage, and the one renderer."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.core.errors import CascadeError
from cascade.core.registry import Context
from cascade.core.types import Doc
from cascade.data.trec import read_trec_run
from cascade.evaluation import report as report_module
from cascade.evaluation.experiment import EvalOptions, bm25_defaults, run_experiment
from cascade.evaluation.render import markdown, rich_tables, tables
from cascade.evaluation.results import ExperimentResult, Latency, PipelineResult, Significance, StageResult
from cascade.index.index import Index
from cascade.pipeline.parse import parse

runner = CliRunner()

DOCS = [
    {"_id": "d1", "title": "Solar power", "text": "Solar panels convert sunlight into electricity."},
    {"_id": "d2", "title": "Wind power", "text": "Wind turbines generate electricity from moving air."},
    {"_id": "d3", "title": "Cooking", "text": "Boil the pasta in salted water."},
    {"_id": "d4", "title": "Gardening", "text": "Plant tomatoes in spring, in full sunlight."},
]
QUERIES = [{"_id": "q1", "text": "solar electricity"}, {"_id": "q2", "text": "pasta water"},
           {"_id": "q3", "text": "wind turbines"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\nq3\td2\t1\n"


def make_beir(root: Path, docs: list[dict] = DOCS, qrels: str = QRELS) -> Path:
    root.mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text(qrels)
    return root


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    return make_beir(tmp_path / "tinybeir")


@pytest.fixture
def other(tmp_path: Path) -> Path:
    """Another collection, judged by ids the tiny one does not have."""
    docs = [{"_id": f"x{i}", "text": f"solar pasta wind {i}"} for i in range(4)]
    return make_beir(tmp_path / "othercorpus", docs, "query-id\tcorpus-id\tscore\nq1\tx1\t1\nq2\tx2\t1\n")


def invoke(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return " ".join(lines[0].split())


# -- --save-run -----------------------------------------------------------------------------


def test_save_run_with_several_pipelines(beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "exp.trec"
    result = invoke("eval", beir, "-p", "bm25", "-p", "bm25 % 2", "--save-run", out, "--json")
    assert result.exit_code == 0, result.output
    first, second = tmp_path / "runs" / "exp-0.trec", tmp_path / "runs" / "exp-1.trec"
    assert {line.split()[5] for line in first.read_text().splitlines()} == {"bm25"}
    assert {line.split()[5] for line in second.read_text().splitlines()} == {"bm25%2"}  # no whitespace in a tag
    assert all(len(docs) <= 2 for docs in read_trec_run(second).values())
    stderr = " ".join(result.stderr.split())
    assert f"wrote the run of #0 bm25 to {first}" in stderr and f"wrote the run of #1 bm25 % 2 to {second}" in stderr
    report = json.loads(result.stdout)
    assert [r["run_file"] for r in report["results"]] == [str(first), str(second)]


# -- --report / --plot ----------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--report", "--plot"])
def test_output_into_a_missing_directory_is_refused_before_evaluating(beir: Path, tmp_path: Path, cache_dir: Path,
                                                                       option: str) -> None:
    line = one_error_line(invoke("eval", beir, option, tmp_path / "typo" / "out.md"))
    assert f"no such directory {tmp_path / 'typo'}" in line
    assert not (cache_dir / "indexes").exists()  # nothing was indexed or run


def test_a_failed_write_comes_after_the_results(beir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "plot.png"))

    monkeypatch.setattr(report_module, "plot_tradeoff", full_disk)
    result = invoke("eval", beir, "--report", tmp_path / "r.md", "--plot", tmp_path / "plot.png")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "tinybeir" in result.stdout and "1.0000" in result.stdout  # the results were printed
    assert (tmp_path / "r.md").read_text().startswith("# tinybeir: 3 queries")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == f"error: could not write {tmp_path / 'plot.png'}: No space left on device"
    assert "Traceback" not in result.output


# -- a given index must fit the dataset -----------------------------------------------------


def test_index_of_another_collection_is_refused(beir: Path, other: Path, tmp_path: Path) -> None:
    assert invoke("index", other, "-o", tmp_path / "other.idx").exit_code == 0
    line = one_error_line(invoke("eval", beir, "--index", tmp_path / "other.idx"))
    assert "was built from" in line and "othercorpus" in line and "not from tinybeir's corpus" in line


def test_eval_cache_index_of_another_corpus_is_refused_by_content_hash(beir: Path, other: Path, tmp_path: Path) -> None:
    from cascade.data.beir import BeirDataset

    Index.build(BeirDataset(other).corpus(), tmp_path / "cached.idx",
                source={"name": "tinybeir", "content_hash": BeirDataset(other).content_hash()})
    line = one_error_line(invoke("eval", beir, "--index", tmp_path / "cached.idx"))
    assert "was built from tinybeir (content" in line


def test_index_without_the_judged_documents_is_refused(beir: Path, other: Path, tmp_path: Path) -> None:
    from cascade.data.beir import BeirDataset

    Index.build(BeirDataset(other).corpus(), tmp_path / "nosource.idx")  # Python build: no source recorded
    line = one_error_line(invoke("eval", beir, "--index", tmp_path / "nosource.idx"))
    assert "none of the 3 documents judged for the first 3 queries of tinybeir" in line


def test_index_of_the_same_corpus_elsewhere_is_accepted(beir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "renamed"
    shutil.copytree(beir, copy)
    assert invoke("index", copy, "-o", tmp_path / "copy.idx").exit_code == 0
    result = invoke("eval", beir, "--index", tmp_path / "copy.idx", "--json", "--metrics", "RR")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"][0]["metrics"] == {"RR": 1.0}


def test_analyzer_options_must_match_the_given_index(beir: Path, tmp_path: Path) -> None:
    assert invoke("index", beir, "-o", tmp_path / "i.idx").exit_code == 0
    line = one_error_line(invoke("eval", beir, "--index", tmp_path / "i.idx", "--stemmer", "none"))
    assert "built with analyzer (stopwords=english, stemmer=english, fold_accents=yes)" in line
    assert "not (stopwords=english, stemmer=none, fold_accents=yes)" in line
    same = invoke("eval", beir, "--index", tmp_path / "i.idx", "--stemmer", "english", "--json")
    assert same.exit_code == 0, same.output


# -- --k1 / --b -----------------------------------------------------------------------------


def test_k1_b_reach_every_bm25_stage(datasets_dir: Path) -> None:
    opts = EvalOptions(metrics="nDCG@10", k1=1.2, b=0.75)
    result = run_experiment(datasets_dir / "scifact", ["bm25_rm3", "rrf(bm25, bm25(k1=2.0) % 10)"], opts=opts)
    rm3, fused = result.pipelines
    assert [s.stage for s in rm3.stages] == ["bm25(b=0.75, k=10, k1=1.2)", "rm3(b=0.75, k1=1.2)"]
    assert fused.stages[0].stage == "rrf(bm25(b=0.75, k1=1.2), bm25(b=0.75, k=10, k1=2.0))"  # written k1 wins
    explicit = run_experiment(datasets_dir / "scifact", ["bm25_rm3(k1=1.2, b=0.75)"],
                              opts=EvalOptions(metrics="nDCG@10"))
    assert rm3.metrics == explicit.pipelines[0].metrics


def test_context_stage_defaults_fill_only_what_is_not_written(tmp_path: Path) -> None:
    index = Index.build([Doc("a", "some text")], tmp_path / "i.idx")
    ctx = Context.of(index=index)
    ctx.stage_defaults = bm25_defaults(EvalOptions(k1=1.5, b=0.3))
    assert str(parse("bm25 >> rm3(b=0.5) | bm25_rm3", ctx)) == \
        "bm25(b=0.3, k1=1.5) >> rm3(b=0.5, k1=1.5) | bm25(b=0.3, k1=1.5) >> rm3(b=0.3, k1=1.5)"
    with pytest.raises(CascadeError, match="--k1/--b: bm25: b"):
        bm25_defaults(EvalOptions(b=2.0))


# -- the renderer ---------------------------------------------------------------------------


def _toy_result() -> ExperimentResult:
    shared = StageResult("run(a.trec)", 0.02, 0.02, Latency(0.066, None, None, "shared"), 100.0,
                         {"R@100": 0.9}, {"nDCG@10": 0.8})
    sampled = StageResult("bm25 | x", 0.03, 0.05, Latency(0.1, 0.09, 0.2, "sampled"), 10.0, cached=True)
    base = PipelineResult("run(a.trec)", {"nDCG@10": 0.5}, {"search": 0.02}, [shared], is_baseline=True)
    other = PipelineResult("bm25 | x", {"nDCG@10": 0.6}, {"search": 0.03}, [sampled],
                           significance={"nDCG@10": Significance(0.01, 0.01, True, 0.02, 0.02, True)})
    return ExperimentResult("toy", 30, [base, other])


def test_tables_are_built_once_for_every_format() -> None:
    result = _toy_result()
    results, significance, first, second = tables(result)
    assert results.rows == [["0", "run(a.trec)", "0.5000", "0.066"], ["1", "bm25 | x", "0.6000†", "0.100"]]
    assert significance.rows == [["bm25 | x", "nDCG@10", "0.01", "0.01", "0.02", "0.02"]]
    assert first.rows == [["run(a.trec)", "100.0", "R@100 0.9000", "0.8000", "0.066", "–", "–", "batch mean"]]
    assert second.header[-1] == "cached" and second.rows[0][-2:] == ["sampled", "yes"]
    text = markdown(result)
    assert "| 1 | `bm25 \\| x` | 0.6000† | 0.100 |" in text  # a union's bar escaped in Markdown
    assert "timing batch mean: only the batch was timed" in text and "timing sampled:" in text
    assert len(rich_tables(result)) == 4 + 1 + 1 + 1  # four tables, the † note, one timing note each


def test_latency_of_a_record() -> None:
    import numpy as np

    lat = Latency.of(np.array([0.001, 0.002, 0.003]), np.array([0.004, 0.006]), "sampled")
    assert (lat.mean_ms, lat.p50_ms, lat.p95_ms) == (2.0, 5.0, 5.9)
    assert Latency.of(np.array([0.001]), None, "shared").to_dict() == {"mean": 1.0, "p50": None, "p95": None}
