"""How far an LLM judge agrees with human assessors: per pair and per system ranking.

Two views, as in the literature on automatic relevance judgments (Faggioli et al., 2023,
"Perspectives on LLMs for relevance judgment"; Thomas et al., 2024; UMBRELA; "Judging the
Judges"; Clarke & Dietz, "LLM-based relevance assessment still can't replace human
relevance assessment"):

- **per pair**: Cohen's kappa on the four grades and on binary labels (relevant = grade >=
  ``threshold``; 2 for the TREC DL passage tasks, whose official "relevant" is grade >= 2),
  and the confusion matrix (rows human, columns judge);
- **per system**: the systems (runs) ordered by a metric (default nDCG@10, through
  :func:`cascade.evaluation.metrics.evaluate`) under human qrels and under the judge's qrels,
  and Kendall's tau between the two orderings (``scipy.stats.kendalltau``, tau-b). Judge
  qrels come in two forms: ``filled`` (human labels, the judge's only where humans have none)
  and ``llm`` (the judge's labels alone). Both orderings use the same queries: those the
  judge labelled at least one pair of.

>>> human = {"q": {"a": 0, "b": 1, "c": 2, "d": 3}}
>>> judge = {"q": {"a": 0, "b": 2, "c": 2, "d": 3}}
>>> a = pair_agreement(human, judge)
>>> a.pairs, round(a.kappa, 3), a.kappa_binary
(4, 0.667, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cascade.core.errors import CascadeError
from cascade.core.types import Qrels, Run

GRADES = (0, 1, 2, 3)
QRELS_KINDS = ("filled", "llm")


def cohen_kappa(a: Sequence[int], b: Sequence[int], labels: Sequence[int] | None = None) -> float:
    """Cohen's kappa (unweighted) between two raters' labels of the same items:
    (p_o - p_e) / (1 - p_e). Raters in perfect agreement on a single label give 1.0 (sklearn
    gives nan there); no items is an error.

    >>> cohen_kappa([0, 1, 1, 0], [0, 1, 0, 0])
    0.5
    """
    if len(a) != len(b):
        raise CascadeError(f"kappa needs two label lists of one length, got {len(a)} and {len(b)}")
    if not a:
        raise CascadeError("kappa needs at least one pair judged by both")
    labels = sorted(set(a) | set(b)) if labels is None else list(labels)
    n = len(a)
    observed = sum(1 for x, y in zip(a, b) if x == y) / n
    expected = sum((list(a).count(k) / n) * (list(b).count(k) / n) for k in labels)
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


def confusion_matrix(a: Sequence[int], b: Sequence[int], labels: Sequence[int] = GRADES) -> list[list[int]]:
    """Counts ``m[i][j]`` of items ``a`` labels ``labels[i]`` and ``b`` labels ``labels[j]``
    (``a`` is the rows: human). Labels outside ``labels`` are not counted.

    >>> confusion_matrix([0, 0, 1], [0, 1, 1], labels=[0, 1])
    [[1, 1], [0, 1]]
    """
    index = {label: i for i, label in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for x, y in zip(a, b):
        if x in index and y in index:
            m[index[x]][index[y]] += 1
    return m


def binarize(labels: Sequence[int], threshold: int) -> list[int]:
    """1 where the grade is at least ``threshold``, else 0."""
    return [int(v >= threshold) for v in labels]


@dataclass
class PairAgreement:
    """Agreement on the pairs both label: ``kappa`` over the grades, ``kappa_binary`` at
    ``threshold``, ``accuracy`` (exact grade), ``confusion`` (rows human, columns judge, over
    ``labels``) and the number of ``pairs``; ``judge_only`` pairs the humans never judged."""

    pairs: int
    kappa: float
    kappa_binary: float
    threshold: int
    accuracy: float
    labels: list[int]
    confusion: list[list[int]]
    judge_only: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def common_pairs(human: Qrels, judged: Qrels) -> list[tuple[str, str]]:
    """The (qid, docid) both qrels label, sorted."""
    return sorted((q, d) for q, docs in judged.items() for d in docs if d in human.get(q, {}))


def pair_agreement(human: Qrels, judged: Qrels, threshold: int = 2,
                   labels: Sequence[int] = GRADES) -> PairAgreement:
    """Kappa (graded and binary), accuracy and confusion over the pairs both label."""
    pairs = common_pairs(human, judged)
    if not pairs:
        raise CascadeError("the judge's qrels and the human qrels share no (query, document) pair")
    h = [human[q][d] for q, d in pairs]
    j = [judged[q][d] for q, d in pairs]
    labels = sorted(set(labels) | set(h) | set(j))
    total = sum(len(docs) for docs in judged.values())
    return PairAgreement(pairs=len(pairs), kappa=cohen_kappa(h, j, labels),
                         kappa_binary=cohen_kappa(binarize(h, threshold), binarize(j, threshold), [0, 1]),
                         threshold=threshold, accuracy=sum(x == y for x, y in zip(h, j)) / len(pairs),
                         labels=labels, confusion=confusion_matrix(h, j, labels), judge_only=total - len(pairs))


@dataclass
class SystemAgreement:
    """The systems' ``metric`` under human qrels and under the judge's (``kind``: ``filled``
    or ``llm``) on ``queries`` queries, and Kendall's tau-b (with its p-value) between the two
    orderings."""

    metric: str
    kind: str
    queries: int
    systems: list[str]
    human: list[float]
    judge: list[float]
    tau: float
    p_value: float
    human_order: list[str] = field(default_factory=list)
    judge_order: list[str] = field(default_factory=list)

    @property
    def defined(self) -> bool:
        """False when tau is undefined: one of the orderings is all ties (e.g. every score 0)."""
        return not math.isnan(self.tau)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: an undefined tau or p-value is null."""
        d = asdict(self)
        for key in ("tau", "p_value"):
            d[key] = None if math.isnan(d[key]) else d[key]
        return d


def judge_qrels(human: Qrels, judged: Qrels, kind: str) -> Qrels:
    """The qrels a system is scored with under the judge: ``filled`` or ``llm`` (judge only)."""
    from cascade.evaluation.judge import fill_holes

    if kind not in QRELS_KINDS:
        raise CascadeError(f"unknown qrels kind {kind!r}; choose one of: {', '.join(QRELS_KINDS)}")
    return fill_holes(human, judged) if kind == "filled" else {q: dict(d) for q, d in judged.items()}


def system_agreement(runs: Mapping[str, Run], human: Qrels, judged: Qrels, *, metric: str = "nDCG@10",
                     kind: str = "llm", queries: Sequence[str] | None = None) -> SystemAgreement:
    """Score every run under human qrels and under the judge's, on the same queries (default:
    those the judge labelled that the human qrels also have), and Kendall's tau between them."""
    from scipy.stats import kendalltau

    if len(runs) < 2:
        raise CascadeError(f"Kendall's tau needs at least 2 runs, got {len(runs)}")
    qids = sorted(q for q in (queries if queries is not None else judged) if q in human and judged.get(q))
    if not qids:
        raise CascadeError("no query has both human and judge labels")
    other = judge_qrels(human, judged, kind)
    names = list(runs)
    h = [_mean(runs[n], human, metric, qids) for n in names]
    j = [_mean(runs[n], other, metric, qids) for n in names]
    tau, p = kendalltau(h, j)
    return SystemAgreement(metric=metric, kind=kind, queries=len(qids), systems=names, human=h, judge=j,
                           tau=float(tau), p_value=float(p), human_order=_order(names, h),
                           judge_order=_order(names, j))


def _mean(run: Run, qrels: Qrels, metric: str, qids: Sequence[str]) -> float:
    from cascade.evaluation.metrics import evaluate

    sub_run = {q: run.get(q, {}) for q in qids}
    sub_qrels = {q: qrels.get(q, {}) for q in qids}
    return evaluate(sub_run, sub_qrels, [metric], queries=qids).mean[metric]


def _order(names: Sequence[str], scores: Sequence[float]) -> list[str]:
    return [n for n, _ in sorted(zip(names, scores), key=lambda ns: (-ns[1], ns[0]))]


@dataclass
class AgreementReport:
    """Everything `cascade judge-agreement` prints: pair agreement and, given runs, the
    system-order agreement under each qrels kind."""

    pairs: PairAgreement
    systems: list[SystemAgreement] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": self.pairs.to_dict(), "systems": [s.to_dict() for s in self.systems]}


def agreement_report(human: Qrels, judged: Qrels, runs: Mapping[str, Run] | None = None, *, threshold: int = 2,
                     metric: str = "nDCG@10", kinds: Sequence[str] = QRELS_KINDS) -> AgreementReport:
    """Pair agreement, plus system agreement under each of ``kinds`` when ``runs`` are given."""
    report = AgreementReport(pair_agreement(human, judged, threshold))
    if runs:
        report.systems = [system_agreement(runs, human, judged, metric=metric, kind=k) for k in kinds]
    return report
