"""Session-level evaluation: sDCG and the Normalized U-Measure (NUM) over sessions of queries.

A *session* is the sequence of queries one user issued for one information need. The session
file (TREC Session track style: sessions as ordered query sequences whose judgments pool over
the session) has one line per query, ``SESSION_ID QUERY_ID`` separated by white space, in the
order the user issued them; blank lines and lines starting with ``#`` are ignored; query ids
are those of the dataset's ``queries.jsonl``, judged in its qrels::

    # session  query
    s1  1037798
    s1  104861
    s2  1063750

**sDCG@k** (Järvelin, Price, Delcambre & Nielsen, "Discounted Cumulated Gain Based Evaluation
of Multiple-Query IR Sessions", ECIR 2008): each query's DCG@k, discounted by its position in
the session, ``sDCG = sum_j DCG@k(L_j) / (1 + log_bq(j))``, with
``DCG@k(L) = sum_r rel(L_r) / log_b(r + b - 1)`` (gain = the graded label of the query's own
qrels; ``b`` = 2, ``bq`` = 4 as in the paper). ``nsDCG@k`` divides by the sDCG of the same
session with each query's ideal ranking.

**NUM@k** (Chen, Dou & Mao, "Session-level Normalization and Click-through Data Enhancement
for Session-based Evaluation", arXiv 2401.12445, 2024), on Sakai & Dou's U-measure
(SIGIR 2013): the session is read as one *trailtext*, the top k of each query in turn, each
query costing ``reform_cost`` positions before its results. A document's session label is its
highest label for any query of the session (A2: relevant to one reformulation, relevant to
the session), and it gains only where it is first read. ``U = sum gain(pos) * max(0, 1 - pos /
patience)``. The ideal session (A1) is one query ranking every session-relevant document first,
by label: ``NUM = U(actual) / U(ideal)``, in [0, 1]. Positions count documents (every document
one unit), as the rank-based U-measure does when text lengths are not used.

Sessions with no relevant document are left out (their ideal is 0) and listed in ``left_out``.

>>> qrels = {"a": {"d1": 1, "d2": 2}, "b": {"d2": 2, "d3": 1}}
>>> run = {"a": {"d9": 2.0, "d1": 1.0}, "b": {"d2": 1.0}}
>>> e = evaluate_sessions(run, qrels, {"s": ["a", "b"]}, k=2, patience=10, reform_cost=1)
>>> round(e.per_session["s"]["NUM@2"], 4)   # U = 1*(1-3/10) + 2*(1-5/10) = 1.7; ideal = 2*.8 + 1*.7 + 1*.6 = 2.9
0.5862
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from cascade.core.errors import CascadeError
from cascade.core.types import Qrels, Run

Sessions = dict[str, list[str]]  # session id -> its query ids, in the order issued

B = 2.0  # sDCG rank discount base (log_b(r + b - 1))
BQ = 4.0  # sDCG query discount base (1 + log_bq(j))
PATIENCE = 50.0  # NUM: the trailtext position (in documents) at which gain decays to 0
REFORM_COST = 1.0  # NUM: positions a query costs before its results are read


def read_sessions(path: Path, known: Sequence[str] | None = None) -> Sessions:
    """The sessions of a session file (see the module docstring); with ``known``, every query id
    must be one of them. A bad line or unknown id is one CascadeError naming file and line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CascadeError(f"--sessions {path}: {exc.strerror or exc}") from None
    allowed = set(known) if known is not None else None
    sessions: Sessions = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split()
        if len(parts) != 2:
            raise CascadeError(f"{path}:{number}: expected 'SESSION_ID QUERY_ID', got {text!r}")
        session, query = parts
        if allowed is not None and query not in allowed:
            raise CascadeError(f"{path}:{number}: query {query!r} is not a judged query of the dataset")
        sessions.setdefault(session, []).append(query)
    if not sessions:
        raise CascadeError(f"{path}: no sessions (expected lines 'SESSION_ID QUERY_ID')")
    return sessions


def ranked(docs: Mapping[str, float], k: int) -> list[str]:
    """The top ``k`` of a query's results, by score (ties keep the run's order)."""
    order = sorted(enumerate(docs.items()), key=lambda item: (-item[1][1], item[0]))
    return [doc for _, (doc, _) in order[:k]]


def dcg(labels: Sequence[float], b: float = B) -> float:
    """``sum_r labels[r-1] / log_b(r + b - 1)`` (rank 1 undiscounted)."""
    return sum(g / math.log(r + b - 1, b) for r, g in enumerate(labels, 1) if g > 0)


def sdcg(lists: Sequence[Sequence[float]], bq: float = BQ, b: float = B) -> float:
    """Session DCG of per-query label lists (in session order): ``sum_j DCG(L_j) / (1 + log_bq j)``."""
    return sum(dcg(labels, b) / (1.0 + math.log(j, bq)) for j, labels in enumerate(lists, 1))


def u_measure(gains: Sequence[tuple[float, float]], patience: float) -> float:
    """Sakai & Dou's U-measure of (position, gain) pairs: ``sum gain * max(0, 1 - pos / patience)``."""
    return sum(g * max(0.0, 1.0 - pos / patience) for pos, g in gains)


def session_labels(queries: Sequence[str], qrels: Qrels) -> dict[str, int]:
    """Each document's highest label over the session's queries (NUM's assumption A2)."""
    out: dict[str, int] = {}
    for q in queries:
        for doc, rel in qrels.get(q, {}).items():
            out[doc] = max(rel, out.get(doc, rel))
    return out


def num(lists: Sequence[Sequence[str]], labels: Mapping[str, int], patience: float = PATIENCE,
        reform_cost: float = REFORM_COST) -> float | None:
    """NUM of a session's result lists (each already cut at k) under session labels; None when
    the session has no relevant document."""
    seen: set[str] = set()
    gains: list[tuple[float, float]] = []
    pos = 0.0
    for docs in lists:
        pos += reform_cost
        for doc in docs:
            pos += 1
            if doc not in seen:
                seen.add(doc)
                gains.append((pos, max(labels.get(doc, 0), 0)))
    ideal_labels = sorted((g for g in labels.values() if g > 0), reverse=True)
    ideal = u_measure([(reform_cost + r, g) for r, g in enumerate(ideal_labels, 1)], patience)
    if ideal <= 0:
        return None
    return u_measure(gains, patience) / ideal


@dataclass
class SessionEvaluation:
    """Per-session values (``sDCG@k``, ``nsDCG@k``, ``NUM@k``) and their means; ``left_out``:
    sessions with no relevant document."""

    mean: dict[str, float]
    per_session: dict[str, dict[str, float]] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)


def evaluate_sessions(run: Run, qrels: Qrels, sessions: Sessions, k: int = 10, *, bq: float = BQ, b: float = B,
                      patience: float = PATIENCE, reform_cost: float = REFORM_COST) -> SessionEvaluation:
    """sDCG@k, nsDCG@k and NUM@k of ``run`` for every session (see the module docstring); a
    query with no results contributes an empty list."""
    names = (f"sDCG@{k}", f"nsDCG@{k}", f"NUM@{k}")
    per: dict[str, dict[str, float]] = {}
    left_out = []
    for sid, queries in sessions.items():
        lists = [ranked(run.get(q, {}), k) for q in queries]
        labels = session_labels(queries, qrels)
        value = num(lists, labels, patience, reform_cost)
        if value is None:
            left_out.append(sid)
            continue
        own = [[max(qrels.get(q, {}).get(d, 0), 0) for d in docs] for q, docs in zip(queries, lists)]
        ideal = [sorted((g for g in qrels.get(q, {}).values() if g > 0), reverse=True)[:k] for q in queries]
        best = sdcg(ideal, bq, b)
        actual = sdcg(own, bq, b)
        per[sid] = dict(zip(names, (actual, actual / best if best > 0 else 0.0, value)))
    mean = {n: (sum(v[n] for v in per.values()) / len(per) if per else 0.0) for n in names}
    return SessionEvaluation(mean, per, left_out)


__all__ = ["Sessions", "read_sessions", "evaluate_sessions", "SessionEvaluation", "sdcg", "dcg", "num",
           "u_measure", "session_labels"]
