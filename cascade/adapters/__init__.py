"""Cascade pipelines behind the interfaces of RAG and IR frameworks (each an optional extra):

- :mod:`cascade.adapters.langchain`: ``CascadeRetriever`` (a LangChain ``BaseRetriever``) and
  ``CascadeReranker`` (a ``BaseDocumentCompressor``); extra ``langchain``;
- :mod:`cascade.adapters.llama_index`: ``CascadeLlamaRetriever`` (a LlamaIndex ``BaseRetriever``)
  and ``CascadeNodePostprocessor`` (a ``BaseNodePostprocessor``); extra ``llamaindex``;
- :mod:`cascade.adapters.pyterrier`: ``CascadeTransformer`` (a PyTerrier ``Transformer``); extra
  ``pyterrier``.

Each is a thin wrapper over :mod:`cascade.adapters.common`: a pipeline (a string parsed against
the index, or a built one) run on one query, or on the documents a framework hands over to be
reranked. A module imports its framework when one of its classes is first used, so importing
Cascade never needs one; without it, that use is one CascadeError line naming the extra.
"""
