"""The Pyserini REST / rank_llm / UMBRELA candidate format (cascade/data/wire.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cascade
from cascade.core.errors import CascadeError
from cascade.data.wire import candidates_to_wire, read_wire, wire_to_docs, wire_to_hits, write_wire


def test_candidates_round_trip_through_the_format(tmp_path: Path) -> None:
    docs = [cascade.Doc("a", "solar power", title="Sun", meta={"year": 2020}), cascade.Doc("b", "solar wind")]
    index = cascade.Index.build(docs, tmp_path / "i.idx")
    queries = [cascade.Query("q1", "power"), cascade.Query("q2", "wind")]
    cands = cascade.BM25(index).search_batch(queries, k=10)
    requests = candidates_to_wire(queries, cands, index.docs_by_id, k=1)
    assert [r["query"] for r in requests] == [{"qid": "q1", "text": "power"}, {"qid": "q2", "text": "wind"}]
    first = requests[1]["candidates"]
    assert len(first) == 1 and first[0]["docid"] == "b" and isinstance(first[0]["score"], float)
    assert first[0]["doc"] == {"title": "", "text": "solar wind", "segment": "solar wind"}
    for suffix in (".json", ".jsonl"):
        path = tmp_path / f"r{suffix}"
        write_wire(requests, path)
        back = read_wire(path)
        assert [(q.id, [h.id for h in hits]) for q, hits in back] == [("q1", ["a"]), ("q2", ["b"])]
    assert wire_to_docs(requests[0])[0] == cascade.Doc("a", "solar power", "Sun", {"year": 2020})


def test_reads_what_rank_llm_and_umbrela_write() -> None:
    rank_llm = {"query": {"text": "flea", "qid": 264014},
                "candidates": [{"docid": 4834547, "score": 14.9, "doc": {"contents": "The life cycle of a flea"}},
                               {"docid": "7", "score": 3, "doc": {"segment": "seg text", "title": "T"}}]}
    query, hits = wire_to_hits(rank_llm)
    assert query == cascade.Query("264014", "flea")
    assert [(h.id, h.rank, h.text, h.title) for h in hits] == [("4834547", 1, "The life cycle of a flea", ""),
                                                               ("7", 2, "seg text", "T")]
    umbrela = {"query": {"text": "q", "qid": "1"}, "candidates": [{"docid": "d", "doc": "plain passage"}]}
    assert wire_to_hits(umbrela)[1][0].text == "plain passage"


@pytest.mark.parametrize("bad, message", [
    ({"candidates": []}, "missing 'query'"),
    ({"query": {"text": "x"}}, "missing 'qid'"),
    ({"query": {"qid": 1, "text": "x"}, "candidates": [{"score": 1}]}, r"candidates\[0\]: missing 'docid'"),
    ({"query": {"qid": 1, "text": "x"}, "candidates": [{"docid": "a", "score": "high"}]}, "'score' must be a number"),
    ({"query": {"qid": 1, "text": "x"}, "candidates": {}}, "must be a list"),
])
def test_bad_requests_name_the_field(bad: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(CascadeError, match=message):
        wire_to_hits(bad)


def test_a_bad_file_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"query": {"qid": "1", "text": "a"}, "candidates": []}) + "\n{oops\n")
    with pytest.raises(CascadeError, match="not JSON"):
        read_wire(path)
