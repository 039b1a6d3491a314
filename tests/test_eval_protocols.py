"""Evaluation protocols of `cascade eval`: judged@k next to the metrics, and the interpolation /
extrapolation split of test queries by their similarity to training queries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.core.types import Query
from cascade.evaluation.experiment import judged_at
from cascade.evaluation.splits import metrics_by_split, split_by_similarity, training_similarity

runner = CliRunner()


def test_judged_at_k_counts_judged_documents_in_the_top_k() -> None:
    run = {"q1": {f"d{i}": 10.0 - i for i in range(10)}, "q2": {"a": 2.0, "b": 1.0}, "q3": {"z": 1.0}}
    qrels = {"q1": {"d0": 1, "d3": 0, "d9": 2, "d99": 1}, "q2": {"b": 0}}
    # q1: d0, d3 in its top 5 -> 2/5; q2: 1 of its 2 results (fewer than k: their count); q3 has no judgments
    assert judged_at(run, qrels, (5,)) == {"judged@5": pytest.approx((2 / 5 + 1 / 2) / 2)}
    assert judged_at(run, qrels, (10, 1)) == {"judged@10": pytest.approx((3 / 10 + 1 / 2) / 2),
                                              "judged@1": pytest.approx((1 + 0) / 2)}


def test_training_similarity_is_max_tfidf_cosine() -> None:
    train = [Query("t1", "zinc supplements and the common cold"), Query("t2", "the effect of exercise on sleep"),
             Query("t3", "exercise and heart disease")]
    test = [Query("same", "Zinc supplements and the common cold"), Query("none", "quantum computing errors"),
            Query("rare", "zinc intake"), Query("common", "exercise intake")]
    sims = training_similarity(test, train)
    assert sims["same"] == pytest.approx(1.0) and sims["none"] == 0.0
    assert sims["rare"] > sims["common"] > 0  # "zinc" (1 training query) weighs more than "exercise" (2)
    splits, threshold = split_by_similarity(sims)
    assert threshold == pytest.approx((sims["rare"] + sims["common"]) / 2)
    assert splits == {"same": "interpolation", "rare": "interpolation", "common": "extrapolation",
                      "none": "extrapolation"}
    per_query = {"same": {"m": 1.0}, "rare": {"m": 0.5}, "common": {"m": 0.2}, "none": {"m": 0.0}}
    assert metrics_by_split(per_query, splits) == {"interpolation": {"m": 0.75}, "extrapolation": {"m": 0.1}}


DOCS = [
    {"_id": "d1", "title": "Zinc", "text": "Zinc lozenges shorten the common cold."},
    {"_id": "d2", "title": "Sleep", "text": "Regular exercise improves sleep quality."},
    {"_id": "d3", "title": "Heart", "text": "Exercise lowers the risk of heart disease."},
    {"_id": "d4", "title": "Qubits", "text": "Quantum error correction protects qubits."},
    {"_id": "d5", "title": "Volcanoes", "text": "Volcanic ash cools the climate for a year."},
    {"_id": "d6", "title": "Bees", "text": "Honey bees communicate by dancing."},
]
TEST_QUERIES = [("q1", "zinc common cold"), ("q2", "exercise sleep quality"), ("q3", "quantum error correction"),
                ("q4", "volcanic ash climate")]
TRAIN_QUERIES = [("t1", "does zinc help a common cold"), ("t2", "exercise and sleep quality"),
                 ("t3", "how do bees communicate")]


def _dataset(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in TEST_QUERIES))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td4\t1\n"
                                             "q4\td6\t1\n")  # q4's judged document is not the one it finds
    return root


def test_cascade_eval_split_by_training_and_judged(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "toy")
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in TRAIN_QUERIES))
    result = runner.invoke(app, ["eval", str(data), "-p", "bm25", "--metrics", "nDCG@10,RR", "--json",
                                 "--per-query", "--split-by-training", str(train)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    split = out["split"]
    assert (split["interpolation"], split["extrapolation"], split["training_queries"]) == (2, 2, 3)
    bm25 = out["results"][0]
    per_query = bm25["per_query"]
    for name, queries in (("interpolation", ["q1", "q2"]), ("extrapolation", ["q3", "q4"])):
        for metric in ("nDCG@10", "RR"):
            expected = sum(per_query[q][metric] for q in queries) / 2
            assert bm25["splits"][name][metric] == pytest.approx(expected)
    # q4 retrieves only d5, which is not judged for it: its judged@10 is 0, so the mean is below 1
    assert 0 < bm25["judged"]["judged@10"] < 1
    table = runner.invoke(app, ["eval", str(data), "-p", "bm25", "--split-by-training", str(train)])
    assert table.exit_code == 0
    assert "judged@10" in table.stdout and "interpolation" in table.stdout and "extrapolation" in table.stdout


def test_split_by_training_with_a_missing_file_is_one_line(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "toy")
    result = runner.invoke(app, ["eval", str(data), "--split-by-training", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 1 and "--split-by-training" in result.output and "Traceback" not in result.output
