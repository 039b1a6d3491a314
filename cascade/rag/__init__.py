"""Retrieval-augmented answers: ``ask`` (retrieve, select the context, answer with numbered
citations that are checked against the context), the :class:`~cascade.rag.answer.Answer` type
with its TREC RAG (Ragnarök) JSON form, and the citation parser. Sits at layer 4 beside
``pipeline`` (it parses pipeline strings); the selection stages are ``cascade.context`` (layer 3).
"""

from cascade.rag.answer import Answer, Reference, Sentence
from cascade.rag.ask import AskOptions, ask

__all__ = ["Answer", "AskOptions", "Reference", "Sentence", "ask"]
