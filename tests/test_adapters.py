"""The framework adapters, each exercised through the framework's own classes and calls
(skipped, with the reason, where the framework is not installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

import cascade
from cascade.core.errors import CascadeError

DOCS = [cascade.Doc("cats", "Cats purr when they are content.", "Cats"),
        cascade.Doc("dogs", "Dogs bark at strangers and purr never.", "Dogs"),
        cascade.Doc("tea", "Green tea is steamed after picking.", "Tea")]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> cascade.Index:
    return cascade.Index.build(DOCS, tmp_path_factory.mktemp("adapters") / "i.idx")


def test_langchain_retriever_and_compressor(index: cascade.Index) -> None:
    pytest.importorskip("langchain_core", reason="langchain-core is not installed (extra: langchain)")
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    from cascade.adapters.langchain import CascadeReranker, CascadeRetriever

    retriever = CascadeRetriever(index=index, pipeline="bm25", k=2)
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke("why do cats purr")
    assert [d.metadata["id"] for d in docs] == ["cats", "dogs"]
    assert docs[0].page_content == DOCS[0].text and docs[0].metadata["rank"] == 1
    expected = cascade.BM25(index).search("why do cats purr", k=2)
    assert [d.metadata["score"] for d in docs] == pytest.approx([h.score for h in expected])

    # documents of the index, reranked by id: "tea" shares no term with the query and is left out by bm25
    handed = [Document(page_content=d.text, metadata={"id": d.id}) for d in reversed(DOCS)]
    ranked = CascadeReranker(pipeline="bm25", index=index).compress_documents(handed, "cats purr")
    assert [d.metadata["id"] for d in ranked] == ["cats", "dogs"]
    assert ranked[0].metadata["cascade_score"] > ranked[1].metadata["cascade_score"]
    # foreign documents: a temporary index of their texts
    foreign = [Document(page_content="green tea"), Document(page_content="black tea with green leaves tea")]
    assert [d.page_content for d in CascadeReranker(top_n=1).compress_documents(foreign, "tea")] == [
        "black tea with green leaves tea"]


def test_llama_index_retriever_and_postprocessor(index: cascade.Index) -> None:
    pytest.importorskip("llama_index.core", reason="llama-index-core is not installed (extra: llamaindex)")
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from cascade.adapters.llama_index import CascadeLlamaRetriever, CascadeNodePostprocessor

    retriever = CascadeLlamaRetriever(index, "bm25", k=1)
    assert isinstance(retriever, BaseRetriever)
    found = retriever.retrieve("steamed tea")
    assert [(n.node.node_id, n.node.metadata["title"]) for n in found] == [("tea", "Tea")]
    assert found[0].score == pytest.approx(cascade.BM25(index).search("steamed tea")[0].score)

    post = CascadeNodePostprocessor(pipeline="bm25", index=index)
    assert isinstance(post, BaseNodePostprocessor)
    nodes = [NodeWithScore(node=TextNode(id_=d.id, text=d.text), score=0.0) for d in DOCS]
    ranked = post.postprocess_nodes(nodes, query_str="dogs bark")
    assert [n.node.node_id for n in ranked] == ["dogs"]
    assert ranked[0].node is nodes[1].node
    with pytest.raises(CascadeError, match="reranks for a query"):
        post.postprocess_nodes(nodes)
    assert post.postprocess_nodes(nodes, QueryBundle("purr"))[0].node.node_id == "cats"


def test_pyterrier_transformer_retrieves_and_reranks(index: cascade.Index) -> None:
    pt = pytest.importorskip("pyterrier", reason="python-terrier is not installed (extra: pyterrier)")
    import pandas as pd

    from cascade.adapters.pyterrier import CascadeTransformer

    bm25 = CascadeTransformer(index, "bm25", k=10)
    assert isinstance(bm25, pt.Transformer)
    res = bm25(pd.DataFrame([{"qid": "q1", "query": "cats purr"}, {"qid": "q2", "query": "green tea"}]))
    assert res[res.qid == "q1"].docno.tolist() == ["cats", "dogs"]
    assert res[res.qid == "q2"].docno.tolist() == ["tea"] and res["rank"].min() == 0
    # composed with PyTerrier's own operator: retrieve, then rerank (cut to 1 by the second transformer)
    pipe = bm25 >> CascadeTransformer(index, "bm25", k=1)
    out = pipe(pd.DataFrame([{"qid": "q1", "query": "dogs purr"}]))
    assert out.docno.tolist() == ["dogs"]
    with pytest.raises(CascadeError, match="needs columns qid and query"):
        bm25(pd.DataFrame([{"text": "x"}]))


def test_missing_framework_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cascade.adapters import common, langchain

    langchain._classes.cache_clear()
    monkeypatch.setattr(common, "find_spec", lambda name: None)
    try:
        with pytest.raises(CascadeError, match=r"pip install 'cascade-ir\[langchain\]'"):
            langchain.CascadeRetriever  # noqa: B018
    finally:
        langchain._classes.cache_clear()
