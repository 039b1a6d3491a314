"""LlamaIndex: a Cascade pipeline as a ``BaseRetriever``, and as a ``BaseNodePostprocessor`` (a
reranker). Extra ``llamaindex`` (llama-index-core).

Results are ``NodeWithScore(node=TextNode(id_=id, text=text, metadata={"title", ...stored
metadata}), score=score)``; on a passage index the ids are passage ids and
``metadata["_passage"]["doc"]`` names the document. The postprocessor reranks the nodes it is
given: by their ids in ``index`` when every one is there, else through a temporary index of
their texts (:func:`cascade.adapters.common.rerank`).

>>> retriever = CascadeLlamaRetriever(cascade.Index.open("my.idx"), "bm25 % 100 >> maxsim", k=5)  # doctest: +SKIP
>>> retriever.retrieve("what causes diabetes")[0].node.node_id                                 # doctest: +SKIP
"""

from __future__ import annotations

from functools import cache
from typing import Any

from cascade.adapters.common import Item, PipelineSearcher, Result, require, rerank
from cascade.core.errors import CascadeError

EXTRA = "llamaindex"


def to_node(result: Result) -> Any:
    from llama_index.core.schema import NodeWithScore, TextNode

    meta = {**result.meta, "title": result.title, "rank": result.rank}
    return NodeWithScore(node=TextNode(id_=result.id, text=result.text, metadata=meta), score=result.score)


@cache
def _classes() -> dict[str, type]:
    require("llama_index.core", EXTRA, "the LlamaIndex adapter")
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle
    from pydantic import ConfigDict, Field

    class CascadeLlamaRetriever(BaseRetriever):
        """A Cascade pipeline over ``index`` answering LlamaIndex's ``retrieve(query)``: its top ``k``."""

        def __init__(self, index: Any, pipeline: Any = "bm25", k: int = 10, **kwargs: Any) -> None:
            self._searcher = PipelineSearcher(index, pipeline)
            self._k = k
            super().__init__(**kwargs)

        def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
            return [to_node(r) for r in self._searcher.search(query_bundle.query_str, self._k)]

    class CascadeNodePostprocessor(BaseNodePostprocessor):
        """Rerank LlamaIndex nodes with a Cascade pipeline (a reranker stage, or ``bm25``)."""

        model_config = ConfigDict(arbitrary_types_allowed=True)
        pipeline: Any = Field(default="bm25")
        index: Any = Field(default=None)
        top_n: int | None = Field(default=None)

        @classmethod
        def class_name(cls) -> str:
            return "CascadeNodePostprocessor"

        def _postprocess_nodes(self, nodes: list[NodeWithScore],
                               query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
            if query_bundle is None:
                raise CascadeError("CascadeNodePostprocessor reranks for a query: pass query_str= or a QueryBundle")
            items = [Item(n.node.node_id, n.node.get_content(), str(n.node.metadata.get("title") or "")) for n in nodes]
            ranked = rerank(query_bundle.query_str, items, self.pipeline, self.index, self.top_n)
            return [NodeWithScore(node=nodes[pos].node, score=score) for pos, score in ranked]

    return {"CascadeLlamaRetriever": CascadeLlamaRetriever, "CascadeNodePostprocessor": CascadeNodePostprocessor}


def __getattr__(name: str) -> Any:
    if name in ("CascadeLlamaRetriever", "CascadeNodePostprocessor"):
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
