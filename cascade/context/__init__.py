"""Context selection: stages that choose which retrieved passages an LLM is given.

Each stage keeps a subset of its input candidates (their order and scores unchanged) and
records, per query, what it cut and why (:mod:`cascade.context.record`):

- ``budget(tokens=N)`` (:mod:`~cascade.context.budget`): a fixed budget of tokens;
- ``adaptive_k`` (:mod:`~cascade.context.adaptive_k`): cut at the largest gap of the sorted scores;
- ``mmr(k=N, lam=0.5)`` (:mod:`~cascade.context.mmr`): maximal marginal relevance, so near-duplicate
  passages do not crowd the context out.

>>> import tempfile, cascade
>>> docs = [cascade.Doc(str(i), t) for i, t in enumerate(["solar power", "solar power plants", "wind"])]
>>> idx = cascade.Index.build(docs, tempfile.mkdtemp() + "/i")
>>> out = cascade.parse("bm25 >> budget(tokens=3)", index=idx).search("solar power")
>>> list(out.to_run()["0"]), selections(out)[0][-1].cut[0].reason
(['0'], 'over the budget: needs 3 tokens, 1 left of 3')
"""

from cascade.context.record import Cut, QuerySelection, Selected, selections

__all__ = ["Cut", "QuerySelection", "Selected", "selections"]
