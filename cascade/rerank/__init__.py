"""Reranking stages: neural models that rescore the candidates an earlier stage retrieved."""
