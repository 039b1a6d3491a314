"""PyTerrier: a Cascade pipeline as a ``pt.Transformer``. Extra ``pyterrier`` (python-terrier;
no Java is started).

Given a frame of queries (``qid``, ``query``) it retrieves: one row per result with ``docno``,
``score``, ``rank`` (0-based, PyTerrier's convention) and ``text``; given a frame of results
(with ``docno``) it reranks each query's documents (by their ids in ``index`` when every one is
there, else through a temporary index of their ``text``). So it composes with PyTerrier's
operators: ``CascadeTransformer(idx, "bm25") >> other`` or ``other >> CascadeTransformer(idx,
"cross_encoder")``.

>>> bm25 = CascadeTransformer(cascade.Index.open("my.idx"), "bm25", k=100)          # doctest: +SKIP
>>> bm25.search("what causes diabetes").head()                                       # doctest: +SKIP
"""

from __future__ import annotations

from functools import cache
from typing import Any

from cascade.adapters.common import Item, PipelineSearcher, require, rerank
from cascade.core.errors import CascadeError

EXTRA = "pyterrier"


@cache
def _classes() -> dict[str, type]:
    require("pyterrier", EXTRA, "the PyTerrier adapter")
    import pandas as pd
    import pyterrier as pt

    class CascadeTransformer(pt.Transformer):
        """Retrieve with (queries in) or rerank with (results in) a Cascade pipeline."""

        def __init__(self, index: Any, pipeline: Any = "bm25", k: int = 1000) -> None:
            self.index, self.pipeline_text, self.k = index, pipeline, k
            self._searcher = PipelineSearcher(index, pipeline)

        def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
            if "qid" not in inp.columns or "query" not in inp.columns:
                raise CascadeError(f"CascadeTransformer needs columns qid and query (got {', '.join(inp.columns)})")
            rows: list[dict[str, Any]] = []
            if "docno" in inp.columns:
                for qid, group in inp.groupby("qid", sort=False):
                    query = str(group["query"].iloc[0])
                    texts = group["text"].astype(str).tolist() if "text" in group.columns else [""] * len(group)
                    items = [Item(str(d), t) for d, t in zip(group["docno"].tolist(), texts)]
                    for rank, (pos, score) in enumerate(rerank(query, items, self.pipeline_text, self.index, self.k)):
                        rows.append({**group.iloc[pos].to_dict(), "score": score, "rank": rank})
            else:
                for qid, query in zip(inp["qid"].tolist(), inp["query"].tolist()):
                    for r in self._searcher.search(str(query), self.k):
                        rows.append({"qid": qid, "query": query, "docno": r.id, "score": r.score,
                                     "rank": r.rank - 1, "text": r.text})
            columns = ["qid", "query", "docno", "score", "rank"]
            return pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)

    return {"CascadeTransformer": CascadeTransformer}


def __getattr__(name: str) -> Any:
    if name == "CascadeTransformer":
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
