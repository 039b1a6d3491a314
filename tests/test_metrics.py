"""evaluate() against hand-computed RR, P@k, AP, R@k and nDCG@k."""

from __future__ import annotations

from math import log2

import pytest

from cascade.core.errors import CascadeError
from cascade.evaluation.metrics import DEFAULT_METRICS, Evaluation, evaluate, parse_metrics

QRELS = {
    "q1": {"d1": 1, "d2": 0, "d3": 2},
    "q2": {"d4": 1},
    "q3": {"d5": 1},  # judged, but the run has nothing for it
}
RUN = {
    "q1": {"d2": 4.0, "d1": 3.0, "d9": 2.0, "d3": 1.0},  # ranks: d2 (0), d1 (1), d9 (unjudged), d3 (2)
    "q2": {"d8": 2.0, "d7": 1.0},  # nothing relevant retrieved
    "q4": {"d1": 1.0},  # not judged: ignored
}

# q1 by hand
Q1 = {
    "RR": 1 / 2,
    "P@2": 1 / 2,
    "AP": (1 / 2 + 2 / 4) / 2,
    "R@2": 1 / 2,
    "nDCG@3": (1 / log2(3)) / (2 / log2(2) + 1 / log2(3)),
    "nDCG@4": (1 / log2(3) + 2 / log2(5)) / (2 / log2(2) + 1 / log2(3) + 0 / log2(4)),
}
NAMES = list(Q1)


def test_hand_computed_per_query_and_mean() -> None:
    result = evaluate(RUN, QRELS, NAMES)
    assert isinstance(result, Evaluation)
    assert sorted(result.per_query) == ["q1", "q2"]  # q3 has no results, q4 no judgements
    assert result.n_queries == 2
    assert result.per_query["q1"] == pytest.approx(Q1, abs=1e-9)
    assert result.per_query["q2"] == pytest.approx({n: 0.0 for n in NAMES}, abs=1e-12)
    assert result.mean == pytest.approx({n: Q1[n] / 2 for n in NAMES}, abs=1e-9)
    assert list(result.mean) == NAMES  # keyed by the names asked for, in order
    # spelled-out literals as a second check
    assert result.per_query["q1"]["nDCG@3"] == pytest.approx(0.2398, abs=1e-4)
    assert result.per_query["q1"]["nDCG@4"] == pytest.approx(0.5672, abs=1e-4)


def test_graded_relevance_threshold() -> None:
    # R(rel=2): only d3 counts as relevant for q1
    result = evaluate({"q1": RUN["q1"]}, {"q1": QRELS["q1"]}, ["RR(rel=2)", "P(rel=2)@4"])
    assert result.mean == pytest.approx({"RR(rel=2)": 1 / 4, "P(rel=2)@4": 1 / 4})


def test_queries_counts_judged_queries_without_results_as_zero() -> None:
    result = evaluate(RUN, QRELS, NAMES, queries=["q1", "q2", "q3", "q4", "q-unknown"])
    assert sorted(result.per_query) == ["q1", "q2", "q3"]
    assert result.per_query["q3"] == {n: 0.0 for n in NAMES}
    assert result.mean == pytest.approx({n: Q1[n] / 3 for n in NAMES}, abs=1e-9)


def test_empty_result_list_counts_as_zero_only_with_queries() -> None:
    run = {"q1": RUN["q1"], "q2": {}}
    assert sorted(evaluate(run, QRELS, ["RR"]).per_query) == ["q1"]
    with_queries = evaluate(run, QRELS, ["RR"], queries=["q1", "q2"])
    assert with_queries.mean["RR"] == pytest.approx(0.25)


def test_nothing_to_evaluate() -> None:
    result = evaluate({}, QRELS, ["RR", "nDCG@10"])
    assert result.mean == {"RR": 0.0, "nDCG@10": 0.0} and result.per_query == {}


@pytest.mark.parametrize("names", [["rr", "p@2", "ndcg@3"], ["Rr", "P@2", "NDCG@3"], "rr,p@2,ndcg@3"])
def test_names_are_case_insensitive(names: list[str] | str) -> None:
    result = evaluate(RUN, QRELS, names)
    keys = names.split(",") if isinstance(names, str) else names
    assert list(result.mean) == keys
    assert [result.mean[k] for k in keys] == pytest.approx([Q1["RR"] / 2, Q1["P@2"] / 2, Q1["nDCG@3"] / 2])


def test_parse_metrics_string_with_parentheses() -> None:
    parsed = parse_metrics("nDCG@10, R(rel=2)@1000,AP")
    assert [name for name, _ in parsed] == ["nDCG@10", "R(rel=2)@1000", "AP"]
    assert str(parse_metrics("ndcg@10")[0][1]) == "nDCG@10"


def test_default_metrics() -> None:
    assert list(evaluate(RUN, QRELS).mean) == list(DEFAULT_METRICS)


@pytest.mark.parametrize("bad", ["foo", "nDCG@x", "bogus@10", "P@@1"])
def test_unknown_metric(bad: str) -> None:
    with pytest.raises(CascadeError, match="unknown metric") as info:
        evaluate(RUN, QRELS, ["RR", bad])
    assert "nDCG@10" in str(info.value)  # the message gives examples


def test_no_metrics() -> None:
    with pytest.raises(CascadeError, match="no metrics given"):
        parse_metrics(" , ")
    with pytest.raises(CascadeError, match="no metrics given"):
        evaluate(RUN, QRELS, [])
