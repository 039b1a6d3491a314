"""Experiments: several pipelines, typed results, stage tables, significance, report, plot, caches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from cascade.cli import app
from cascade.evaluation import experiment
from cascade.evaluation.experiment import EvalOptions, oracle_run, run_experiment
from cascade.evaluation.render import markdown
from cascade.evaluation.results import ExperimentResult, PipelineResult, StageResult

runner = CliRunner()

DL19 = "trec-dl19-passage-pool"
BM25_RUN = "runs/BM25.top100.trec"
SPLADE_RUN = "runs/SPLADE_P_P_ENSEMBLE_DISTIL.top100.trec"


def cli_json(*args: object) -> dict:
    result = runner.invoke(app, [str(a) for a in args] + ["--json"])
    assert result.exit_code == 0, result.output
    [line] = [l for l in result.stdout.splitlines() if l.strip()]
    return json.loads(line)


def test_dl19_acceptance_command(datasets_dir: Path) -> None:
    """The issue's command: run paths relative to the dataset, RRF next to its input."""
    report = cli_json("eval", datasets_dir / DL19, "--pipeline", f"run({BM25_RUN})",
                      "--pipeline", f"rrf(run({BM25_RUN}), run({SPLADE_RUN}))")
    assert report["queries"] == 43
    first, fused = report["results"]
    assert first["pipeline"] == f"run({BM25_RUN})"
    assert round(first["metrics"]["nDCG@10"], 4) == 0.5058
    assert fused["metrics"]["nDCG@10"] > first["metrics"]["nDCG@10"] + 0.1  # fusing SPLADE++ helps a lot
    stage = fused["stages"][0]
    assert stage["candidates"] > 100  # the union of two top-100 lists
    assert set(stage["latency_ms"]) == {"mean", "p50", "p95"}
    assert stage["oracle"]["nDCG@10"] >= fused["metrics"]["nDCG@10"]


def test_significance_matches_scipy_on_the_same_vectors(datasets_dir: Path) -> None:
    opts = EvalOptions(metrics="nDCG@10", baseline=0, permutations=2000)
    result = run_experiment(datasets_dir / DL19, [f"run({BM25_RUN})", f"run({SPLADE_RUN})",
                                                  f"rrf(run({BM25_RUN}), run({SPLADE_RUN}))"], opts=opts)
    base, *others = result.pipelines
    assert base.is_baseline and base.significance == {} and result.baseline is base
    raw = []
    qids = sorted(base.per_query)
    a = np.array([base.per_query[q]["nDCG@10"] for q in qids])
    for r in others:
        assert sorted(r.per_query) == qids  # every pipeline is evaluated on the same queries
        b = np.array([r.per_query[q]["nDCG@10"] for q in qids])
        sig = r.significance["nDCG@10"]
        assert sig.t_test == stats.ttest_rel(a, b).pvalue
        assert 0 < sig.randomization < 0.01  # both are far better than BM25 on DL19
        raw.append(sig.t_test)
    holm = sorted(raw)
    adjusted = [min(1.0, max(holm[0] * 2, 0)), min(1.0, max(holm[0] * 2, holm[1]))]
    assert sorted(r.significance["nDCG@10"].t_test_holm for r in others) == pytest.approx(adjusted)
    assert all(r.significance["nDCG@10"].significant for r in others)
    assert result.to_dict()["results"][0]["significance"] == "baseline"


def test_stage_rows_for_a_two_stage_pipeline(datasets_dir: Path) -> None:
    result = run_experiment(datasets_dir / "scifact", ["bm25 % 100 >> rm3 % 10"],
                            opts=EvalOptions(metrics="nDCG@10"))
    [res] = result.pipelines
    first, second = res.stages
    assert first.stage == "bm25(k=10)"  # rm3 reads only its 10 feedback documents: pushed down
    assert first.candidates == 10 and second.candidates == 10
    assert "R@10" in first.recall and 0 < first.recall["R@10"] <= first.oracle["nDCG@10"] + 1
    assert res.seconds["search"] == pytest.approx(first.seconds + second.seconds, abs=1e-3)
    assert res.seconds["index"] > 0
    assert (first.latency.timing, second.latency.timing) == ("sampled", "per-query")
    assert first.latency.p50_ms is not None and second.latency.p95_ms is not None


def test_stage_seconds_are_the_queries_own_work(datasets_dir: Path) -> None:
    """A stage's seconds add up its queries' latencies (so they agree with the mean); the
    executor's wall time, with BM25's latency sample answered one by one, is reported apart."""
    result = run_experiment(datasets_dir / "scifact", ["bm25"], opts=EvalOptions(metrics="nDCG@10", use_cache=False))
    [stage] = result.pipelines[0].stages
    assert stage.latency.timing == "sampled"
    assert stage.seconds == pytest.approx(stage.latency.mean_ms * result.queries / 1000, abs=1e-3)
    assert stage.wall_seconds > stage.seconds  # the 100 single-query searches are not the stage's work


def test_shared_timing_has_no_percentiles(datasets_dir: Path) -> None:
    """A stage timed only as a batch (a stored run) has a mean and no p50/p95: null in JSON, "–"
    in the tables, and its timing is named."""
    result = run_experiment(datasets_dir / DL19, [f"run({BM25_RUN})"], opts=EvalOptions(metrics="nDCG@10"))
    [stage] = result.pipelines[0].stages
    assert stage.latency.timing == "shared" and stage.latency.mean_ms >= 0
    assert (stage.latency.p50_ms, stage.latency.p95_ms) == (None, None)
    row = result.to_dict()["results"][0]["stages"][0]
    assert row["latency_ms"]["p50"] is None and row["latency_ms"]["p95"] is None and row["timing"] == "shared"
    text = markdown(result)
    assert "| – | – | batch mean |" in text and "timing batch mean: only the batch was timed" in text


def test_result_types_and_json_round_trip(datasets_dir: Path) -> None:
    result = run_experiment(datasets_dir / DL19, [f"run({BM25_RUN})", f"rrf(run({BM25_RUN}), run({SPLADE_RUN}))"],
                            opts=EvalOptions(metrics="nDCG@10,NumQ", baseline=0, permutations=100))
    assert isinstance(result, ExperimentResult) and result.queries == 43
    assert all(isinstance(p, PipelineResult) for p in result.pipelines)
    assert all(isinstance(s, StageResult) for p in result.pipelines for s in p.stages)
    assert result.pipelines[0].metrics["NumQ"] == 43  # a sum, not a mean
    d = json.loads(json.dumps(result.to_dict(per_query=True)))
    assert set(d) == {"dataset", "queries", "results", "skipped", "qrels_missing_docs", "qrels_missing_examples"}
    assert d["qrels_missing_docs"] is None  # stored runs only: no index was searched
    assert set(d["results"][1]) == {"pipeline", "metrics", "seconds", "stages", "significance", "per_query",
                                    "judged"}
    assert 0 < d["results"][1]["judged"]["judged@10"] <= 1
    assert ExperimentResult.from_dict(d).to_dict(per_query=True) == d
    assert markdown(ExperimentResult.from_dict(d)) == markdown(result)


def test_oracle_puts_relevant_first_and_keeps_order_otherwise() -> None:
    run = {"q": {"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.5}}
    qrels = {"q": {"c": 2, "d": 1}}
    ranked = sorted(oracle_run(run, qrels)["q"].items(), key=lambda kv: -kv[1])
    assert [d for d, _ in ranked] == ["c", "d", "a", "b"]


def test_report_and_plot_files(datasets_dir: Path, tmp_path: Path) -> None:
    report_md, plot_png = tmp_path / "report.md", tmp_path / "tradeoff.png"
    result = runner.invoke(app, ["eval", str(datasets_dir / DL19), "-p", f"run({BM25_RUN})", "-p",
                                 f"rrf(run({BM25_RUN}), run({SPLADE_RUN}))", "--baseline", "0",
                                 "--report", str(report_md), "--plot", str(plot_png), "--permutations", "500"])
    assert result.exit_code == 0, result.output
    text = report_md.read_text()
    assert "| 1 | `rrf(run(runs/BM25.top100.trec), run(runs/SPLADE_P_P_ENSEMBLE_DISTIL.top100.trec))` |" in text
    assert "†" in text and "Holm" in text and "Command: `cascade eval" in text
    assert plot_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot_png.stat().st_size > 5000
    assert "†" in result.stdout  # the terminal table marks the significant row


def test_bad_baseline_is_a_user_error(datasets_dir: Path) -> None:
    result = runner.invoke(app, ["eval", str(datasets_dir / DL19), "--run", BM25_RUN, "--baseline", "3"])
    assert result.exit_code == 1
    assert "only 1 pipelines" in result.stderr and "Traceback" not in result.output


def test_stage_cache_is_reused_and_cleared(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "beir"
    root.mkdir()
    (root / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": f"d{i}", "text": f"word{i % 3} common"})
                                                 for i in range(20)) + "\n")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "word1"}) + "\n")
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    first = cli_json("eval", root, "-p", "bm25")
    second = cli_json("eval", root, "-p", "bm25")
    assert first["results"][0]["stages"][0]["cached"] is False
    assert second["results"][0]["stages"][0]["cached"] is True
    assert first["results"][0]["metrics"] == second["results"][0]["metrics"]
    nocache = cli_json("eval", root, "-p", "bm25", "--no-cache")
    assert nocache["results"][0]["stages"][0]["cached"] is False
    cleared = runner.invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and "cleared 1 cached stage output and 1 cached index" in cleared.stdout
    assert not any((cache_dir / "stages").rglob("*.npz")) and not (cache_dir / "indexes").exists()


def _toy_dataset(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "text": f"cats and dogs number {i}" + (" purr" if i % 2 else "")} for i in range(6)]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "cats purr"}\n{"_id": "q2", "text": "dogs"}\n')
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                             "q1\td1\t1\nq1\tgone1\t1\nq1\td0\t0\n"
                                             "q2\td2\t1\nq2\tgone2\t0\nq2\tgone1\t1\n")
    return root


def test_judged_documents_missing_from_the_index_are_reported(tmp_path: Path) -> None:
    """Judged documents no pipeline can retrieve lower the metrics: say how many, and which."""
    dataset = _toy_dataset(tmp_path / "toy")
    result = run_experiment(dataset, ["bm25"], opts=EvalOptions(metrics="R@10"))
    assert result.qrels_missing_docs == 2 and result.qrels_missing_examples == ["gone1", "gone2"]
    assert "2 judged document(s) are not in the index (e.g. gone1, gone2)" in markdown(result)
    cli = runner.invoke(app, ["eval", str(dataset), "--json", "--metrics", "R@10"])
    assert cli.exit_code == 0, cli.output
    report = json.loads([line for line in cli.stdout.splitlines() if line.startswith("{")][0])
    assert report["qrels_missing_docs"] == 2 and report["qrels_missing_examples"] == ["gone1", "gone2"]
    warning = [line for line in cli.stderr.splitlines() if line.startswith("warning:")]
    assert warning == ["warning: 2 document(s) judged in qrels/test.tsv are not in the index (e.g. gone1, gone2); "
                       "no pipeline can retrieve them, so they lower the metrics"]
    (dataset / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    clean = run_experiment(dataset, ["bm25"], opts=EvalOptions(metrics="R@10", use_cache=False))
    assert clean.qrels_missing_docs == 0 and "not in the index" not in markdown(clean)


def test_an_index_built_for_one_run_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the index cache the index is built in a temporary folder, which the run removes
    (a neural eval stores its encodings there: a gigabyte per run on SciFact), even when it fails."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    dataset = _toy_dataset(tmp_path / "toy")
    result = run_experiment(dataset, ["bm25"], opts=EvalOptions(metrics="R@10", use_cache=False))
    assert result.queries == 2 and list(scratch.iterdir()) == []
    measure = experiment._measure

    def measure_then_fail(*args: object, **kwargs: object) -> object:
        measure(*args, **kwargs)  # the index is built by now
        raise RuntimeError("interrupted")

    monkeypatch.setattr(experiment, "_measure", measure_then_fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        run_experiment(dataset, ["bm25"], opts=EvalOptions(metrics="R@10", use_cache=False))
    assert list(scratch.iterdir()) == []
