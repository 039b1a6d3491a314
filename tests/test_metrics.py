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


# -- aggregation through ir_measures' own aggregators --------------------------------------

SUMS_AND_MEANS = ["NumQ", "NumRet", "NumRel", "NumRelRet", "NumRet(rel=2)", "nDCG@10", "AP"]


def _random_run_and_qrels(seed: int, n_queries: int = 40) -> tuple[dict, dict]:
    import random

    rng = random.Random(seed)
    qrels = {f"q{i}": {f"d{rng.randrange(200)}": rng.choice([0, 1, 2]) for _ in range(rng.randint(1, 8))}
             for i in range(n_queries)}
    run = {q: {f"d{rng.randrange(200)}": rng.random() for _ in range(rng.randint(1, 50))} for q in qrels}
    return run, qrels


@pytest.mark.parametrize("seed", range(3))
def test_aggregates_equal_ir_measures_calc_aggregate(seed: int) -> None:
    """Means for the effectiveness measures, sums for the counts: exactly what ir_measures gives."""
    import ir_measures

    run, qrels = _random_run_and_qrels(seed)
    expected = ir_measures.calc_aggregate([ir_measures.parse_measure(m) for m in SUMS_AND_MEANS], qrels, run)
    got = evaluate(run, qrels, SUMS_AND_MEANS, queries=list(qrels))
    assert got.mean == pytest.approx({m: expected[ir_measures.parse_measure(m)] for m in SUMS_AND_MEANS}, rel=1e-12)
    assert got.mean["NumQ"] == len(qrels)  # a count, not a mean of 1s


def test_aggregates_without_queries_equal_ir_measures_on_the_judged_queries_with_results() -> None:
    import ir_measures

    judged = {q: QRELS[q] for q in ("q1", "q2")}  # q3 has no results, q4 no judgements
    expected = ir_measures.calc_aggregate([ir_measures.parse_measure(m) for m in SUMS_AND_MEANS], judged,
                                          {q: RUN[q] for q in judged})
    got = evaluate(RUN, QRELS, SUMS_AND_MEANS)
    assert got.mean == pytest.approx({m: expected[ir_measures.parse_measure(m)] for m in SUMS_AND_MEANS}, rel=1e-12)
    assert got.mean["NumQ"] == 2 and got.mean["NumRet"] == 6 and got.mean["NumRel"] == 3


def test_a_judged_query_without_results_counts_as_trec_eval_c_does() -> None:
    """It adds 1 to NumQ and its relevant documents to NumRel, nothing to NumRet or NumRelRet,
    and 0 to the means."""
    got = evaluate(RUN, QRELS, SUMS_AND_MEANS, queries=["q1", "q2", "q3"])
    assert got.per_query["q3"] == {"NumQ": 1.0, "NumRet": 0.0, "NumRel": 1.0, "NumRelRet": 0.0, "NumRet(rel=2)": 0.0,
                                   "nDCG@10": 0.0, "AP": 0.0}
    assert got.mean["NumQ"] == 3 and got.mean["NumRel"] == 2 + 1 + 1 and got.mean["NumRet"] == 6
    assert got.mean["NumRelRet"] == 2 and got.mean["NumRet(rel=2)"] == 1
    assert got.mean["AP"] == pytest.approx(Q1["AP"] / 3)
