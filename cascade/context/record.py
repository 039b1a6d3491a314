"""What a context-selection stage kept and cut, and why: typed records carried by its output.

A selection stage returns :class:`Selected` candidates: ordinary
:class:`~cascade.core.candidates.Candidates` (the kept ones, in their input order, scores
unchanged) plus, per query, the list of selection steps that produced them (a pipeline may
chain several, ``bm25 % 50 >> mmr(k=10) >> budget(tokens=1500)``), each a
:class:`QuerySelection` naming every cut candidate with its reason.

>>> step = QuerySelection("q1", "budget(tokens=5)", considered=2, kept=["a"],
...                       cut=[Cut("b", 2, 1.5, "over the budget: needs 9 tokens, 2 left of 5")])
>>> step.to_dict()["cut"][0]["reason"]
'over the budget: needs 9 tokens, 2 left of 5'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cascade.core.candidates import Candidates


@dataclass(frozen=True)
class Cut:
    """One candidate a selection left out: its id, its 1-based rank and score in the stage's
    input, and why."""

    id: str
    rank: int
    score: float
    reason: str


@dataclass
class QuerySelection:
    """One selection step for one query: ``considered`` input candidates, the ``kept`` ids (in
    order) and every ``cut`` one; ``detail`` holds the method's own figures (tokens used, the
    gap found, the similarity used)."""

    query_id: str
    method: str
    considered: int
    kept: list[str]
    cut: list[Cut]
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Selected(Candidates):
    """Candidates chosen by context selection, with ``log[i]``: the selection steps of query ``i``
    (earliest first)."""

    log: list[list[QuerySelection]] = field(default_factory=list, compare=False)


def selections(cands: Candidates) -> list[list[QuerySelection]]:
    """Per query, the selection steps behind ``cands`` (empty lists when no selection ran)."""
    if isinstance(cands, Selected) and len(cands.log) == len(cands.query_ids):
        return cands.log
    return [[] for _ in cands.query_ids]
