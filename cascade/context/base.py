"""What the context-selection stages share: reading the candidates' stored texts, counting
their tokens, and turning a per-query choice into :class:`~cascade.context.record.Selected`.

A subclass implements :meth:`Selector.choose`: for one query's candidates (best first) it
returns the positions to keep, in order, and a reason for each position it cuts.

>>> count_tokens("Cats purr, dogs bark.")
6
"""

from __future__ import annotations

import re
import time
from typing import Any, Iterator, Sequence

import numpy as np

from cascade.context.record import Cut, QuerySelection, Selected, selections
from cascade.core.candidates import SHARED, Candidates
from cascade.core.errors import CascadeError
from cascade.core.nodes import Pipeline, Runner, format_call
from cascade.core.params import ParamInfo, check_params, non_defaults
from cascade.core.types import Doc, Query
from cascade.index.index import Index
from cascade.rerank.base import index_numbers

# A word or a punctuation mark counts one token: close to what LLM tokenizers give English text
# (they split rarer words further, so this errs low by about a fifth on technical prose).
TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Tokens of ``text`` as the budget counts them (words and punctuation marks)."""
    return len(TOKEN.findall(text))


def passage_text(doc: Doc) -> str:
    """What a generator is shown of a stored document or passage: its title, then its text."""
    return "\n".join(part for part in (doc.title, doc.text) if part)


def entry_numbers(cands: Candidates, index: Index) -> tuple[np.ndarray, Any]:
    """The candidates' entry numbers in ``index`` (documents, or passages in a passage index) and
    the doc-id space a selection's output keeps: the input's own when its numbers already are
    the index's entries (the index itself, or the document view ``to_docs`` makes of a passage
    index, whose numbers are each document's best passage), else the index (a stored run's ids
    are looked up)."""
    if cands.space is index or getattr(cands.space, "passages_of", None) is index:
        return cands.doc.astype(np.int64), cands.space
    return index_numbers(cands, index), index


class Texts:
    """One query's candidate texts, read from the docstore in chunks as they are asked for (a
    budget that fills after ten passages never reads the thousandth)."""

    CHUNK = 32

    def __init__(self, index: Index, nums: np.ndarray) -> None:
        self.index, self.nums = index, nums
        self._texts: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.nums)

    def __getitem__(self, pos: int) -> str:
        if pos not in self._texts:
            if not 0 <= pos < len(self.nums):
                raise IndexError(pos)
            start = pos - pos % self.CHUNK
            chunk = self.nums[start:start + self.CHUNK]
            self._texts.update((start + i, passage_text(d)) for i, d in enumerate(self.index.docs(chunk)))
        return self._texts[pos]

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))


class Choice:
    """One query's selection: positions kept (in order) and ``{position: reason}`` for the cut."""

    def __init__(self, kept: Sequence[int], cut: dict[int, str], detail: dict[str, Any] | None = None) -> None:
        self.kept = sorted(int(p) for p in kept)  # input order, so scores stay best first
        self.cut = cut
        self.detail = detail or {}


class Selector(Pipeline):
    """Base of the selection stages: ``params`` declared on the class, values checked once."""

    name = "select"
    params: tuple[ParamInfo, ...] = ()

    def __init__(self, index: Index, **given: Any) -> None:
        self.index = index
        self.values = check_params(self.name, self.params, given)

    def settings(self) -> dict[str, Any]:
        return non_defaults(self.params, self.values)

    def key(self) -> tuple[Any, ...]:
        return (self.name, tuple(sorted(self.values.items())), self.index.version)

    def __str__(self) -> str:
        return format_call(self.name, (), self.settings())

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        if candidates is None:
            raise CascadeError(f"{self.name} selects among retrieved candidates: put a first stage before it, "
                               f"e.g. 'bm25 % 20 >> {self.name}'")
        return self.select(queries, candidates)

    def select(self, queries: Sequence[Query], candidates: Candidates) -> Selected:
        """The kept candidates of every query, with what was cut and why."""
        start = time.perf_counter()
        by_id = {q.id: q for q in queries}
        nums, space = entry_numbers(candidates, self.index)
        ids = space.doc_ids(nums)
        before = selections(candidates)
        label = str(self)
        keep_rows: list[np.ndarray] = []
        log: list[list[QuerySelection]] = []
        for i, qid in enumerate(candidates.query_ids):
            s, e = int(candidates.offsets[i]), int(candidates.offsets[i + 1])
            texts = Texts(self.index, nums[s:e])
            choice = self.choose(by_id.get(qid, Query(qid, "")), nums[s:e], candidates.score[s:e], texts) \
                if e > s else Choice([], {})
            keep_rows.append(s + np.asarray(choice.kept, dtype=np.int64))
            cuts = [Cut(ids[s + p], p + 1, float(candidates.score[s + p]), reason)
                    for p, reason in sorted(choice.cut.items())]
            step = QuerySelection(qid, label, e - s, [ids[s + p] for p in choice.kept], cuts, choice.detail)
            log.append(before[i] + [step])
        rows = np.concatenate(keep_rows) if keep_rows else np.empty(0, np.int64)
        offsets = np.zeros(len(candidates.query_ids) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in keep_rows], out=offsets[1:])
        out = Selected(list(candidates.query_ids), offsets, nums[rows], candidates.score[rows], space, log=log)
        return out.timed(time.perf_counter() - start, SHARED)

    def choose(self, query: Query, nums: np.ndarray, scores: np.ndarray, texts: Texts) -> Choice:
        """Which of one query's candidates (doc numbers, scores best first, texts) to keep."""
        raise NotImplementedError
