"""LangChain: a Cascade pipeline as a ``BaseRetriever``, and as a ``BaseDocumentCompressor``
(a reranker, for ``ContextualCompressionRetriever``). Extra ``langchain`` (langchain-core).

Results are ``Document(page_content=text, metadata={"id", "score", "rank", "title", ...stored
metadata})``; on a passage index the ids are passage ids and ``metadata["_passage"]["doc"]``
names the document. The compressor reranks the documents it is given: by their
``metadata["id"]`` in ``index`` when every one is there, else through a temporary index of
their texts (:func:`cascade.adapters.common.rerank`), and adds ``metadata["cascade_score"]``.

>>> idx = cascade.Index.open("my.idx")                                                # doctest: +SKIP
>>> retriever = CascadeRetriever(index=idx, pipeline="bm25 % 100 >> maxsim", k=5)    # doctest: +SKIP
>>> retriever.invoke("what causes diabetes")[0].metadata["id"]                                   # doctest: +SKIP
"""

from __future__ import annotations

from functools import cache
from typing import Any

from cascade.adapters.common import Item, PipelineSearcher, Result, require, rerank

EXTRA = "langchain"


def to_document(result: Result) -> Any:
    from langchain_core.documents import Document

    meta = {**result.meta, "id": result.id, "score": result.score, "rank": result.rank, "title": result.title}
    return Document(page_content=result.text, metadata=meta, id=result.id)


@cache
def _classes() -> dict[str, type]:
    require("langchain_core", EXTRA, "the LangChain adapter")
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import BaseDocumentCompressor, Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict, PrivateAttr

    class CascadeRetriever(BaseRetriever):
        """A Cascade pipeline over ``index`` answering LangChain's ``invoke(query)``: its top ``k``."""

        model_config = ConfigDict(arbitrary_types_allowed=True)
        index: Any
        pipeline: Any = "bm25"
        k: int = 10
        _searcher: Any = PrivateAttr(default=None)

        def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
            if self._searcher is None:
                self._searcher = PipelineSearcher(self.index, self.pipeline)
            return [to_document(r) for r in self._searcher.search(query, self.k)]

    class CascadeReranker(BaseDocumentCompressor):
        """Rerank LangChain documents with a Cascade pipeline (a reranker stage, or ``bm25``)."""

        model_config = ConfigDict(arbitrary_types_allowed=True)
        pipeline: Any = "bm25"
        index: Any = None
        top_n: int | None = None
        id_key: str = "id"

        def compress_documents(self, documents: Any, query: str, callbacks: Any = None) -> list[Document]:
            docs = list(documents)
            items = [Item(str(d.metadata.get(self.id_key) or ""), d.page_content, str(d.metadata.get("title") or ""))
                     for d in docs]
            out = []
            for pos, score in rerank(query, items, self.pipeline, self.index, self.top_n):
                d = docs[pos]
                out.append(Document(page_content=d.page_content, metadata={**d.metadata, "cascade_score": score},
                                    id=d.id))
            return out

    return {"CascadeRetriever": CascadeRetriever, "CascadeReranker": CascadeReranker}


def __getattr__(name: str) -> Any:
    if name in ("CascadeRetriever", "CascadeReranker"):
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
