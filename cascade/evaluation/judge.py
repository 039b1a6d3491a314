"""LLM relevance judges: graded 0-3 labels for query-passage pairs, written as TREC qrels.

The prompt follows the design of UMBRELA (Upadhyay et al., 2024, "UMBRELA: UMbrela is the
(Open-Source Reproduction of the) Bing RELevance Assessor"), itself after Thomas et al. (2024,
"Large language models can accurately predict searcher preferences"): the four TREC DL grades
described in words, the query and the passage, a nudge to weigh the searcher's intent, how
well the passage meets it and whether it can be trusted, and a fixed answer form
(``##final score: N``). The wording is Cascade's own (``prompts/judge_umbrela*.txt``); a user
passes their own template file (placeholders ``{query}`` and ``{passage}``).

Two ways to read a label (``method``):

- ``logprobs``: one forward pass; the backend's log-probability of each label ``0``..``3`` as
  the first generated token (``Backend.label_logprobs``), the label the most probable one
  (``rule="argmax"``) or the expected grade rounded (``rule="expected"``, as ERank and the
  Pinterest assessment use the label distribution rather than one sample). Cheapest on a CPU.
- ``generate``: free text parsed robustly (``parse_label``: ``##final score: 2``, ``Score: ２``,
  a last lone digit); an answer with no grade in it counts as ``fallback`` (0) and as failed.

``auto`` uses log-probs when the backend has them and generation otherwise. Which pairs are
judged: the top ``depth`` of a run per query, by default only those the human qrels lack
(filling holes, as Judging the Judges and "the limits of automatic judgments" (Clarke & Dietz)
recommend: LLM labels complement human ones rather than replace them), or all with
``all_pairs``. :func:`fill_holes` merges the two, human labels always winning.

>>> parse_label("The passage answers it.\\n##final score: 2")
2
>>> fill_holes({"q1": {"d1": 3}}, {"q1": {"d1": 0, "d2": 1}, "q2": {"d3": 2}})
{'q1': {'d1': 3, 'd2': 1}, 'q2': {'d3': 2}}
"""

from __future__ import annotations

import math
import os
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cascade.core.errors import CascadeError, DataError
from cascade.core.types import Qrels, Run

if TYPE_CHECKING:
    from cascade.llm.backend import Backend

PROMPTS = Path(__file__).resolve().parent / "prompts"
TEMPLATES = {"generate": PROMPTS / "judge_umbrela.txt", "logprobs": PROMPTS / "judge_umbrela_label.txt"}
LABELS = ("0", "1", "2", "3")
METHODS = ("auto", "logprobs", "generate")
RULES = ("argmax", "expected")
MAX_PASSAGE_CHARS = 2000  # longer passages are cut (MS MARCO passages are far shorter)
FALLBACK = 0  # the label of an answer with no readable grade (UMBRELA does the same)


@dataclass(frozen=True)
class Pair:
    """One query-passage pair to judge."""

    qid: str
    docid: str
    query: str
    passage: str


@dataclass(frozen=True)
class Judgement:
    """The judge's label for one pair; ``probs`` (label -> probability) with log-probs,
    ``expected`` their expected grade, ``answer`` the text with generation, ``parsed`` False
    when no grade could be read from it (the label is then ``FALLBACK``)."""

    qid: str
    docid: str
    label: int
    expected: float | None = None
    probs: dict[str, float] | None = None
    answer: str | None = None
    parsed: bool = True


@dataclass
class JudgeResult:
    """What a judging run produced and cost. ``usage`` is the backend's tally for this run
    (calls, cached_calls, prompt_tokens, completion_tokens, seconds); ``seconds`` wall time."""

    model: str
    method: str
    rule: str
    template: str
    judgements: list[Judgement] = field(default_factory=list)
    considered: int = 0  # pairs in the runs' top ``depth``
    already_judged: int = 0  # of those, pairs the human qrels had (skipped unless --all)
    usage: dict[str, float | int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        """Answers with no readable grade (generation only)."""
        return sum(1 for j in self.judgements if not j.parsed)

    def qrels(self) -> Qrels:
        """The labels as qrels (qid -> docid -> label)."""
        out: Qrels = {}
        for j in self.judgements:
            out.setdefault(j.qid, {})[j.docid] = j.label
        return out

    def label_counts(self) -> dict[int, int]:
        """How many pairs got each label, 0..3."""
        counts = {int(label): 0 for label in LABELS}
        for j in self.judgements:
            counts[j.label] = counts.get(j.label, 0) + 1
        return counts

    def summary(self) -> dict[str, Any]:
        """Everything but the per-pair judgements (JSON-ready)."""
        return {"model": self.model, "method": self.method, "rule": self.rule, "template": self.template,
                "considered": self.considered, "already_judged": self.already_judged,
                "judged": len(self.judgements), "failed": self.failed,
                "labels": {str(k): v for k, v in self.label_counts().items()},
                "usage": dict(self.usage), "seconds": round(self.seconds, 3)}

    def to_dict(self) -> dict[str, Any]:
        """The summary plus every judgement."""
        return {**self.summary(), "judgements": [asdict(j) for j in self.judgements]}


# ---------------------------------------------------------------- prompts and parsing

def load_template(path: str | Path | None = None, method: str = "logprobs") -> str:
    """The prompt template: the file at ``path``, or the built-in one for ``method``.
    It must contain ``{query}`` and ``{passage}``."""
    source = Path(path) if path is not None else TEMPLATES["generate" if method == "generate" else "logprobs"]
    if not source.is_file():
        raise DataError(source, "no such prompt template file")
    text = source.read_text(encoding="utf-8")
    missing = [p for p in ("{query}", "{passage}") if p not in text]
    if missing:
        raise DataError(source, f"the prompt template lacks {' and '.join(missing)}")
    return text


def render(template: str, pair: Pair, max_chars: int = MAX_PASSAGE_CHARS) -> str:
    """The template filled for one pair (plain replacement: braces in texts stay as they are)."""
    passage = " ".join(pair.passage.split())
    if len(passage) > max_chars:
        passage = passage[:max_chars].rsplit(" ", 1)[0] + " ..."
    return template.replace("{query}", " ".join(pair.query.split())).replace("{passage}", passage)


_FINAL = re.compile(r"final\s*(?:score|grade|label|answer|relevance)?\s*[:=\-]?\s*\**\s*\(?(\d+)", re.I)
_KEYED = re.compile(r"(?:score|grade|label|relevance)\s*(?:is|of)?\s*[:=\-]?\s*\**\s*\(?(\d+)", re.I)
_LONE = re.compile(r"(?<!\d)(?<!\d\.)(\d+)(?!\d|\.\d)(\s*(?:/|out of)\s*(\d+))?")


def _ascii_digits(text: str) -> str:
    """Unicode decimal digits (fullwidth ２, Arabic-Indic ٢, ...) as ASCII ones."""
    return "".join(str(unicodedata.decimal(c)) if not c.isascii() and unicodedata.decimal(c, None) is not None
                   else c for c in text)


def parse_label(text: str, labels: Sequence[int] = (0, 1, 2, 3)) -> int | None:
    """The grade in a judge's answer, or None. Tried in order: the last ``final score: N``
    (any case, ``#``/``*`` decoration, unicode digits), the last ``score/grade/label: N``, a
    lone digit when the answer is only that, then the last in-range number that stands alone
    (not part of ``2/3``-style fractions of another scale). Out-of-range grades are ignored.

    >>> [parse_label(t) for t in ["##final score: 3", "**Final Score:** ２", "1", "Score = 2.", "it is a 7", ""]]
    [3, 2, 1, 2, None, None]
    """
    clean = _ascii_digits(text or "")
    for pattern in (_FINAL, _KEYED):
        found = [int(m.group(1)) for m in pattern.finditer(clean)]
        found = [v for v in found if v in labels]
        if found:
            return found[-1]
    lone = [int(m.group(1)) for m in _LONE.finditer(clean) if m.group(3) in (None, str(max(labels)))]
    lone = [v for v in lone if v in labels]
    return lone[-1] if lone else None


def label_from_logprobs(logprobs: dict[str, float], rule: str = "argmax") -> tuple[int, float, dict[str, float]]:
    """(label, expected grade, probabilities renormalised over the labels) from label log-probs.
    ``rule``: ``argmax`` (ties to the lower grade) or ``expected`` (the expected grade, rounded
    half up).

    >>> label_from_logprobs({"0": math.log(0.1), "1": math.log(0.2), "2": math.log(0.3), "3": math.log(0.4)})[:2]
    (3, 2.0)
    """
    finite = {k: v for k, v in logprobs.items() if k in LABELS and v is not None and math.isfinite(v)}
    if not finite:
        return FALLBACK, float(FALLBACK), {k: 0.0 for k in LABELS}
    top = max(finite.values())
    weights = {k: math.exp(finite[k] - top) if k in finite else 0.0 for k in LABELS}
    total = sum(weights.values())
    probs = {k: w / total for k, w in weights.items()}
    expected = sum(int(k) * p for k, p in probs.items())
    if rule == "expected":
        label = int(math.floor(expected + 0.5))
    else:
        label = int(max(LABELS, key=lambda k: (probs[k], -int(k))))
    return label, expected, probs


# ---------------------------------------------------------------- choosing pairs

def top_pairs(run: Run, depth: int, queries: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """(qid, docid) of each query's top ``depth`` (by score, ties by docid), queries in the
    order given (default: the run's)."""
    if depth < 1:
        raise CascadeError(f"--depth must be at least 1, got {depth}")
    out: list[tuple[str, str]] = []
    for qid in (queries if queries is not None else run):
        ranked = sorted(run.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:depth]
        out.extend((qid, doc) for doc, _ in ranked)
    return out


def unjudged(pairs: Iterable[tuple[str, str]], qrels: Qrels) -> list[tuple[str, str]]:
    """The pairs ``qrels`` has no label for (order kept, duplicates dropped)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for pair in pairs:
        if pair not in seen and pair[1] not in qrels.get(pair[0], {}):
            seen.add(pair)
            out.append(pair)
    return out


def fill_holes(human: Qrels, judged: Qrels) -> Qrels:
    """Human qrels with the judge's labels added for the pairs humans did not judge; a human
    label is never overridden."""
    out: Qrels = {q: dict(docs) for q, docs in human.items()}
    for qid, docs in judged.items():
        target = out.setdefault(qid, {})
        for doc, label in docs.items():
            target.setdefault(doc, label)
    return out


# ---------------------------------------------------------------- judging

class Judge:
    """Graded 0-3 relevance labels from an LLM backend (``cascade.llm.open_backend(...)``).

    ``method``: ``auto`` | ``logprobs`` | ``generate``; ``rule`` (log-probs): ``argmax`` |
    ``expected``; ``template``: a prompt file (default: the built-in one for the method);
    ``batch_size`` prompts go to the backend per call; ``max_tokens`` bounds a generated answer.
    """

    def __init__(self, backend: Backend, *, method: str = "auto", rule: str = "argmax",
                 template: str | Path | None = None, batch_size: int = 8, max_tokens: int = 160) -> None:
        if method not in METHODS:
            raise CascadeError(f"unknown judge method {method!r}; choose one of: {', '.join(METHODS)}")
        if rule not in RULES:
            raise CascadeError(f"unknown label rule {rule!r}; choose one of: {', '.join(RULES)}")
        if batch_size < 1:
            raise CascadeError(f"batch size must be at least 1, got {batch_size}")
        self.backend, self.rule, self.batch_size, self.max_tokens = backend, rule, batch_size, max_tokens
        self.method = method
        self.template_path = template
        self._template: str | None = None if method == "auto" else load_template(template, method)

    def judge(self, pairs: Sequence[Pair], progress: Callable[[int], None] | None = None) -> JudgeResult:
        """Label every pair, in batches; ``progress(done)`` after each batch."""
        before = _usage_snapshot(self.backend)
        start = time.perf_counter()
        out: list[Judgement] = []
        for i in range(0, len(pairs), self.batch_size):
            out.extend(self._batch(pairs[i:i + self.batch_size]))
            if progress is not None:
                progress(len(out))
        return JudgeResult(model=_model_name(self.backend), method=self._resolved(), rule=self.rule,
                           template=str(self.template_path or TEMPLATES[self._resolved()].name), judgements=out,
                           usage=_usage_delta(before, _usage_snapshot(self.backend)),
                           seconds=time.perf_counter() - start)

    def _resolved(self) -> str:
        return "logprobs" if self.method == "auto" else self.method

    def _batch(self, batch: Sequence[Pair]) -> list[Judgement]:
        if self.method == "auto":  # log-probs unless the backend has none: then generation, for good
            self._template = load_template(self.template_path, "logprobs")
            try:
                self.method = "logprobs"
                return self._by_logprobs(batch)
            except NotImplementedError:
                self.method = "generate"
                self._template = load_template(self.template_path, "generate")
        if self.method == "logprobs":
            return self._by_logprobs(batch)
        return self._by_generation(batch)

    def _prompts(self, batch: Sequence[Pair]) -> list[str]:
        assert self._template is not None
        return [render(self._template, p) for p in batch]

    def _by_logprobs(self, batch: Sequence[Pair]) -> list[Judgement]:
        results = self.backend.label_logprobs(self._prompts(batch), list(LABELS))
        out = []
        for pair, lp in zip(batch, results):
            label, expected, probs = label_from_logprobs(lp, self.rule)
            out.append(Judgement(pair.qid, pair.docid, label, round(expected, 4),
                                 {k: round(v, 5) for k, v in probs.items()}))
        return out

    def _by_generation(self, batch: Sequence[Pair]) -> list[Judgement]:
        gens = self.backend.generate(self._prompts(batch), max_tokens=self.max_tokens, temperature=0.0)
        out = []
        for pair, gen in zip(batch, gens):
            label = parse_label(gen.text)
            out.append(Judgement(pair.qid, pair.docid, FALLBACK if label is None else label,
                                 answer=gen.text, parsed=label is not None))
        return out


def _model_name(backend: Any) -> str:
    return f"{getattr(backend, 'name', '?')}:{getattr(backend, 'model', '?')}"


def _usage_snapshot(backend: Any) -> dict[str, float | int]:
    usage = getattr(backend, "usage", None)
    if usage is None:
        return {}
    return dict(usage.as_dict()) if hasattr(usage, "as_dict") else dict(vars(usage))


def _usage_delta(before: dict[str, float | int], after: dict[str, float | int]) -> dict[str, float | int]:
    return {k: round(v - before.get(k, 0), 3) if isinstance(v, float) else v - before.get(k, 0)
            for k, v in after.items()}


# ---------------------------------------------------------------- datasets, runs, files

def passages_for(corpus: Iterable[Any], ids: set[str]) -> dict[str, str]:
    """Texts (``title. text``) of the documents in ``ids``, read from a stream of Docs."""
    out: dict[str, str] = {}
    for doc in corpus:
        if doc.id in ids:
            out[doc.id] = f"{doc.title}. {doc.text}" if doc.title else doc.text
            if len(out) == len(ids):
                break
    return out


def make_pairs(wanted: Sequence[tuple[str, str]], queries: dict[str, str], passages: dict[str, str],
               source: str = "the run") -> list[Pair]:
    """Pairs with their texts; a query or passage the dataset lacks is an error naming it."""
    out = []
    for qid, doc in wanted:
        if qid not in queries:
            raise CascadeError(f"{source} has query {qid!r}, which the dataset's queries.jsonl lacks")
        if doc not in passages:
            raise CascadeError(f"{source} has document {doc!r} (query {qid}), which the dataset's corpus lacks")
        out.append(Pair(qid, doc, queries[qid], passages[doc]))
    return out


def write_qrels(qrels: Qrels, path: str | Path) -> None:
    """Write TREC qrels (``qid 0 docid label``, queries and documents sorted) atomically:
    a temp file beside ``path``, fsync'd, then renamed over it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            for qid in sorted(qrels):
                for doc in sorted(qrels[qid]):
                    fh.write(f"{qid} 0 {doc} {int(qrels[qid][doc])}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class JudgeOptions:
    """Which pairs of a dataset's run to judge: each query's top ``depth``, unjudged ones only
    unless ``all_pairs``, the first ``limit_queries`` judged queries of the run (None: all)."""

    depth: int = 20
    all_pairs: bool = False
    limit_queries: int | None = None
    split: str = "test"


@dataclass
class Selection:
    """The pairs to judge, with how many the runs' top ``depth`` held and how many of those
    already had a human label."""

    pairs: list[Pair]
    considered: int
    already_judged: int
    queries: int


def select_pairs(dataset_dir: str | Path, run_path: str | Path, opts: JudgeOptions | None = None) -> Selection:
    """The pairs of a BEIR dataset's run (TREC file; a relative path may be relative to the
    dataset) that ``opts`` picks, with their texts; queries the dataset lacks are left out."""
    from cascade.data.beir import BeirDataset
    from cascade.data.trec import read_trec_run

    opts = opts or JudgeOptions()
    dataset = BeirDataset(dataset_dir)
    run = read_trec_run(resolve_in(dataset.root, run_path))
    human = dataset.qrels(opts.split) if (dataset.root / "qrels" / f"{opts.split}.tsv").is_file() else {}
    queries = {q.id: q.text for q in dataset.queries()}
    qids = [q for q in run if q in queries]
    if not qids:
        raise DataError(run_path, f"no query of this run is in {dataset.name}'s queries.jsonl")
    if opts.limit_queries is not None:
        qids = qids[: max(1, opts.limit_queries)]
    considered = top_pairs(run, opts.depth, qids)
    wanted = list(dict.fromkeys(considered)) if opts.all_pairs else unjudged(considered, human)
    passages = passages_for(dataset.corpus(), {doc for _, doc in wanted})
    pairs = make_pairs(wanted, queries, passages, source=str(run_path))
    already = sum(1 for q, d in considered if d in human.get(q, {}))
    return Selection(pairs, len(considered), already, len(qids))


def judge_run(judge: Judge, dataset_dir: str | Path, run_path: str | Path, opts: JudgeOptions | None = None,
              progress: Callable[[int, int], None] | None = None) -> JudgeResult:
    """Judge the pairs :func:`select_pairs` picks; ``progress(done, total)`` as batches finish.

    >>> from cascade.llm.testing import EchoBackend
    >>> judge = Judge(EchoBackend(answer=lambda p: "##final score: 1"), method="generate")
    >>> result = judge_run(judge, "../shared/datasets/trec-dl19-passage-pool", "runs/BM25.top100.trec",
    ...                    JudgeOptions(depth=20, limit_queries=1))  # doctest: +SKIP
    """
    selection = select_pairs(dataset_dir, run_path, opts)
    return judge_selection(judge, selection, progress)


def judge_selection(judge: Judge, selection: Selection,
                    progress: Callable[[int, int], None] | None = None) -> JudgeResult:
    """Judge a selection's pairs; the result carries its counts."""
    total = len(selection.pairs)
    result = judge.judge(selection.pairs, None if progress is None else (lambda done: progress(done, total)))
    result.considered, result.already_judged = selection.considered, selection.already_judged
    return result


def resolve_in(root: Path, path: str | Path) -> Path:
    """``path`` as given when it exists, else relative to ``root``; a missing file is a DataError."""
    given = Path(path)
    for candidate in (given, root / given):
        if candidate.is_file():
            return candidate
    raise DataError(path, f"no such file (looked in the current directory and in {root})")


def read_judged_qrels(path: str | Path, dataset: Any, human: Qrels | None = None) -> Qrels:
    """A judge's qrels file (TREC or BEIR TSV) checked against a dataset (a ``BeirDataset``):
    it must exist, hold at least one label, and name only queries the dataset has (in its
    queries.jsonl or its human qrels)."""
    from cascade.data.readers import read_qrels

    source = Path(path)
    if not source.is_file():
        raise DataError(path, "no such qrels file")
    judged = read_qrels(source)
    if not judged:
        raise DataError(path, "holds no judgements")
    known = set(human or {})
    if dataset.queries_path.is_file():
        known |= {q.id for q in dataset.queries()}
    unknown = sorted(q for q in judged if q not in known)
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise DataError(path, f"{len(unknown)} quer{'y' if len(unknown) == 1 else 'ies'} unknown to dataset "
                              f"{dataset.name}: {shown}")
    return judged
