"""LLM layer without a model: the interface, parse repair, windows, the call cache, prompts,
stages in pipeline strings (a scripted backend), accounting in the experiment table and JSON."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cascade
from cascade.core.errors import CascadeError
from cascade.llm import Backend, Generation, Usage, open_backend
from cascade.llm import stage as llm_stage
from cascade.llm.cache import CachedBackend, CallCache
from cascade.llm.parse import parse_ranking
from cascade.llm.testing import EchoBackend
from cascade.llm.window import slide, windows

# -- the interface ---------------------------------------------------------------------------


def test_usage_adds_and_counts_cached_calls_without_seconds() -> None:
    u = Usage()
    u.add(Generation("a", 10, 2, 1.5))
    u.add(Generation("a", 10, 2, 1.5, cached=True))
    assert u.as_dict() == {"calls": 2, "cached_calls": 1, "prompt_tokens": 20, "completion_tokens": 4,
                           "seconds": 1.5}


def test_backends_satisfy_the_protocol() -> None:
    assert isinstance(EchoBackend(), Backend)
    assert isinstance(CachedBackend(EchoBackend()), Backend)


@pytest.mark.parametrize("spec, message", [
    ("gpt4", "must be '<backend>:<model>'"),
    ("vllm:foo", "unknown LLM backend 'vllm'"),
    ("llama-cpp:/no/such/model.gguf", "no GGUF file"),
    ("openai:127.0.0.1:8000", "openai:http(s)://"),
])
def test_open_backend_reports_user_mistakes(spec: str, message: str) -> None:
    with pytest.raises(CascadeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        open_backend(spec)


def test_unknown_backend_lists_the_choices() -> None:
    with pytest.raises(CascadeError) as err:
        open_backend("ollama:x")
    assert all(k in str(err.value) for k in ("llama-cpp", "openai", "transformers"))


def test_a_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with pytest.raises(CascadeError, match=r"cascade-ir\[llm\]"):
        open_backend(f"llama-cpp:{model}")
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(CascadeError, match=r"cascade-ir\[llm\]"):
        open_backend("openai:http://127.0.0.1:9/v1#m")


def test_qwen_not_downloaded_says_which_script_to_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CASCADE_MODELS_DIR", str(tmp_path))
    with pytest.raises(CascadeError, match="bench/get_models.py"):
        open_backend("llama-cpp:qwen")


def test_import_cascade_and_llm_stages_load_no_llm_library() -> None:
    code = ("import sys, json, cascade, cascade.llm; from cascade.pipeline import builtins; "
            "from cascade.llm import pointwise, listwise, first, icr, bsc; "
            "print(json.dumps(sorted(m for m in ('llama_cpp', 'httpx', 'transformers', 'torch', 'gguf') "
            "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout) == []


# -- parsing and windows ----------------------------------------------------------------------

PARSE_CASES = [
    ("[2] > [3] > [1]", 3, [1, 2, 0], "ok"),
    ("2 > 3 > 1", 3, [1, 2, 0], "ok"),
    ("[２] > [３] > [１]", 3, [1, 2, 0], "ok"),             # full-width digits
    ("[٢] > [١] > [٣]", 3, [1, 0, 2], "ok"),               # Arabic-Indic digits
    ("[2] > [2] > [1] > [3]", 3, [1, 0, 2], "repaired"),   # duplicate
    ("[4] > [1] > [9] > [2] > [3]", 3, [0, 1, 2], "repaired"),  # out of range
    ("[3] > [1]", 4, [2, 0, 1, 3], "repaired"),            # missing ids appended in original order
    ("[0] > [1]", 2, [0, 1], "repaired"),                  # 0 is out of range (ids are 1-based)
    ("Sorry, I cannot help with that.", 3, [0, 1, 2], "failed"),
    ("", 2, [0, 1], "failed"),
    ("The ranking is: [2] > [1]", 2, [1, 0], "ok"),
]


@pytest.mark.parametrize("text, n, order, status", PARSE_CASES)
def test_parse_ranking_repairs(text: str, n: int, order: list[int], status: str) -> None:
    assert parse_ranking(text, n) == (order, status)


def test_parse_letters_for_first_prompts() -> None:
    assert parse_ranking("[C] > [A] > [B]", 3, letters=True) == ([2, 0, 1], "ok")


def test_windows_slide_from_the_back_and_cover_everything() -> None:
    assert windows(20, 20, 10) == [(0, 20)]
    assert windows(5, 10, 5) == [(0, 5)]
    spans = windows(100, 20, 10)
    assert spans[0] == (80, 100) and spans[-1] == (0, 20) and len(spans) == 9
    # a relevant item at the very bottom reaches the top when each window puts it first
    items = list(range(100))
    out = slide(items, 20, 10, lambda part: sorted(part, key=lambda x: x != 99))
    assert out[0] == 99 and sorted(out) == items


# -- the call cache ---------------------------------------------------------------------------


def test_cache_makes_reruns_free_and_keys_on_settings(tmp_path: Path) -> None:
    inner = EchoBackend(answer=lambda p: p[::-1])
    cached = CachedBackend(inner, root=tmp_path)
    first = cached.generate(["abc", "de"], max_tokens=5)
    again = cached.generate(["abc", "de"], max_tokens=5)
    assert [g.text for g in again] == [g.text for g in first] and all(g.cached for g in again)
    assert inner.prompts == ["abc", "de"]
    cached.generate(["abc"], max_tokens=6)  # another setting: another entry
    cached.generate(["abc"], max_tokens=5, temperature=0.7)
    assert inner.prompts == ["abc", "de", "abc", "abc"]
    assert cached.usage.calls == 6 and cached.usage.cached_calls == 2
    lp1 = cached.label_logprobs(["x"], ["yes", "no"])
    lp2 = CachedBackend(EchoBackend(), root=tmp_path).label_logprobs(["x"], ["yes", "no"])  # a new process
    assert lp1 == lp2
    assert not list(tmp_path.rglob("*.tmp"))


def test_cache_keys_on_the_model_identity(tmp_path: Path) -> None:
    a = CachedBackend(EchoBackend(model="m1"), root=tmp_path)
    b = CachedBackend(EchoBackend(model="m2"), root=tmp_path)
    a.generate(["p"], max_tokens=1)
    b.generate(["p"], max_tokens=1)
    assert b.usage.cached_calls == 0


def test_cache_keeps_minus_infinity(tmp_path: Path) -> None:
    scorer = lambda p, labels: {label: -math.inf for label in labels}  # noqa: E731
    CachedBackend(EchoBackend(scorer=scorer), root=tmp_path).label_logprobs(["p"], ["a"])
    again = CachedBackend(EchoBackend(scorer=scorer), root=tmp_path)
    assert again.label_logprobs(["p"], ["a"]) == [{"a": -math.inf}] and again.usage.cached_calls == 1


def test_unwritable_cache_warns_once_and_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cached = CachedBackend(EchoBackend(answer=lambda p: "ok"), root=blocker / "llm")
    assert [g.text for g in cached.generate(["a", "b", "c"], max_tokens=2)] == ["ok"] * 3
    assert capsys.readouterr().err.count("cannot be written") == 1


def test_default_cache_lives_under_the_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CASCADE_CACHE_DIR", str(tmp_path))
    assert CallCache().root == tmp_path / "llm"


# -- stages -----------------------------------------------------------------------------------

DOCS = [cascade.Doc("d1", "the cat sat on the mat"), cascade.Doc("d2", "dogs chase cats in the park"),
        cascade.Doc("d3", "a cat food recipe"), cascade.Doc("d4", "the stock market fell")]


@pytest.fixture()
def index(tmp_path: Path) -> cascade.Index:
    return cascade.Index.build(DOCS, tmp_path / "idx")


def _relevance(prompt: str) -> bool:
    return "recipe" in prompt


def _scripted() -> EchoBackend:
    """Says yes / grade 3 / ranks first whatever mentions 'recipe'."""
    def scorer(prompt: str, labels: list[str]) -> dict[str, float]:
        if "yes" in labels:
            return {lab: (-0.1 if (lab.lower() == "yes") == _relevance(prompt) else -4.0) for lab in labels}
        if labels[0] == "0":
            return {lab: (-0.1 if (lab == labels[-1]) == _relevance(prompt) else -5.0) for lab in labels}
        body = prompt.split("\n")  # FIRST: the letter of the line with 'recipe'
        best = next((line[1] for line in body if line.startswith("[") and "recipe" in line), "A")
        return {lab: (-0.1 if lab == best else -3.0) for lab in labels}

    def answer(prompt: str) -> str:
        lines = [line for line in prompt.split("\n") if line.startswith("[")]
        if "grade" in prompt:
            return "\n".join(f"{line.split(']')[0]}] {3 if 'recipe' in line else 0}" for line in lines)
        ids = [line.split("]")[0][1:] for line in lines]
        best = [i for i, line in zip(ids, lines) if "recipe" in line]
        return " > ".join(f"[{i}]" for i in best + [i for i in ids if i not in best])

    return EchoBackend(answer=answer, scorer=scorer)


@pytest.mark.parametrize("stage", [
    "llm_pointwise", "llm_pointwise(mode=graded)", "llm_pointwise(mode=graded, max_grade=10)",
    "llm_listwise(window=2, stride=1)", "first(window=3, stride=1)", "llm_bsc(batch=2, samples=2)",
])
def test_llm_stages_in_pipeline_strings(index: cascade.Index, monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    fake = _scripted()
    monkeypatch.setitem(llm_stage._OPEN, "llama-cpp:qwen", CachedBackend(fake, root=index.path.parent / "c"))
    from cascade.core.executor import run_pipeline

    out = run_pipeline(_parse(f"bm25 % 4 >> {stage}", index), [cascade.Query("q", "cat")])
    top = out.to_run()["q"]
    assert max(top, key=top.get) == "d3"
    assert out.usage["calls"] >= 1 and out.usage["prompt_tokens"] > 0


def _parse(text: str, index: cascade.Index) -> cascade.Pipeline:
    from cascade.core.registry import Context
    from cascade.pipeline.parse import parse

    return parse(text, Context.of(index))


def test_listwise_counts_ok_repaired_failed(index: cascade.Index) -> None:
    from cascade.llm.listwise import LLMListwise

    answers = iter(["[2] > [1] > [3]", "[2] > [2]", "no idea"])
    stage = LLMListwise(index, backend=EchoBackend(answer=lambda p: next(answers)), window=3)
    for _ in range(3):
        stage.rank("q", ["a", "b", "c"])
    assert dict(stage.parse_counts) == {"ok": 1, "repaired": 1, "failed": 1}
    # failure keeps the original order
    stage = LLMListwise(index, backend=EchoBackend(answer=lambda p: "???"), window=3)
    assert np.argsort(-stage.rank("q", ["a", "b", "c"])).tolist() == [0, 1, 2]


def test_a_user_prompt_file_replaces_the_shipped_one(index: cascade.Index, tmp_path: Path) -> None:
    from cascade.llm.pointwise import LLMPointwise

    mine = tmp_path / "mine.txt"
    mine.write_text("Q={query} P={passage} relevant?")
    fake = EchoBackend()
    LLMPointwise(index, backend=fake, prompt=str(mine)).rank("cat", ["a cat"])
    assert fake.prompts == ["Q=cat P=a cat relevant?"]
    bad = tmp_path / "bad.txt"
    bad.write_text("{question}")
    with pytest.raises(CascadeError, match="question"):
        LLMPointwise(index, backend=fake, prompt=str(bad)).rank("cat", ["a cat"])
    with pytest.raises(CascadeError, match="cannot be read"):
        LLMPointwise(index, backend=fake, prompt=str(tmp_path / "none.txt"))


def test_bad_stage_parameters_are_one_line_errors(index: cascade.Index) -> None:
    for text, message in [("llm_pointwise(mode=maybe)", "mode"), ("llm_listwise(window=1)", "window"),
                          ("first(window=30)", "window")]:
        with pytest.raises(CascadeError, match=message):
            _parse(f"bm25 >> {text}", index)


def test_icr_refuses_a_backend_without_attention(index: cascade.Index) -> None:
    from cascade.llm.icr import ICR

    with pytest.raises(CascadeError, match="transformers"):
        ICR(index, backend=EchoBackend()).rank("q", ["a", "b"])


def test_graded_expected_value_and_yes_no_pooling() -> None:
    from cascade.llm.pointwise import expected_grade, yes_no_score

    lp = {"0": math.log(0.5), "1": -math.inf, "2": -math.inf, "3": math.log(0.5)}
    assert expected_grade(lp, ["0", "1", "2", "3"]) == pytest.approx(1.5)
    yn = {"yes": math.log(0.3), "Yes": math.log(0.3), "YES": -math.inf, "no": math.log(0.2), "No": -math.inf,
          "NO": -math.inf}
    assert yes_no_score(yn) == pytest.approx(math.log(0.6 / 0.2))


# -- accounting in the experiment table and JSON ----------------------------------------------


def test_llm_usage_reaches_the_experiment_table_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade.evaluation.experiment import EvalOptions, run_experiment
    from cascade.evaluation.render import stage_table
    from cascade.evaluation.results import StageResult

    data = tmp_path / "ds"
    data.mkdir()
    (data / "corpus.jsonl").write_text("".join(json.dumps({"_id": d.id, "text": d.text}) + "\n" for d in DOCS))
    (data / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "cat"}) + "\n")
    (data / "qrels").mkdir()
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td3\t1\n")
    monkeypatch.setenv("CASCADE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(llm_stage._OPEN, "llama-cpp:qwen", CachedBackend(_scripted(), root=tmp_path / "llm"))
    result = run_experiment(data, ["bm25 % 4 >> llm_pointwise"], opts=EvalOptions(metrics="nDCG@10"))
    stages = result.pipelines[0].stages
    llm = [s for s in stages if s.usage]
    assert len(llm) == 1 and llm[0].usage["calls"] == 3 and llm[0].usage["cached_calls"] == 0
    row = llm[0].to_dict()
    assert row["usage"]["prompt_tokens"] > 0 and StageResult.from_dict(row) == llm[0]
    table = stage_table(result.pipelines[0])
    assert "LLM calls (cached)" in table.header and any("3 (0)" in r for r in table.rows)
    assert "usage" not in next(s for s in stages if not s.usage).to_dict()
