"""A teacher's margins for distillation: any Cascade pipeline scores the training pairs.

Hofstätter et al., "Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge
Distillation" (2020): the student learns the teacher's score *margin* between a relevant and a
non-relevant document (MarginMSE), not its raw scores, so teachers and students of any scale can
be paired. The teacher is a pipeline string (e.g. ``bm25 % 30 >> llm_pointwise(model=qwen)``);
it runs on the training queries and a margin is kept for each (query, positive, negative) of the
mined examples whose two documents it both scored.

>>> import cascade, tempfile
>>> idx = cascade.Index.build([cascade.Doc("a", "apple pie"), cascade.Doc("b", "apple tart")],
...                           tempfile.mkdtemp() + "/i")
>>> from cascade.train.examples import Example
>>> m = teacher_margins(idx, [Example("q", "apple pie", "apple pie", ("apple tart",), "a", ("b",))], "bm25")
>>> round(m[("q", "a", "b")], 3) > 0
True
"""

from __future__ import annotations

from typing import Sequence

from cascade.core.errors import CascadeError
from cascade.core.types import Query
from cascade.index.index import Index
from cascade.pipeline.parse import parse
from cascade.train.examples import Example, Margins


def teacher_margins(index: Index, examples: Sequence[Example], teacher: str) -> Margins:
    """(query id, positive id, negative id) -> teacher score of the positive minus the negative's."""
    queries = list({e.query_id: Query(e.query_id, e.query) for e in examples}.values())
    run = parse(teacher, index=index)(queries).to_run() if queries else {}
    margins = {}
    for e in examples:
        scores = run.get(e.query_id, {})
        if e.positive_id not in scores:
            continue
        for neg in e.negative_ids:
            if neg in scores:
                margins[(e.query_id, e.positive_id, neg)] = scores[e.positive_id] - scores[neg]
    if not margins:
        raise CascadeError(f"the teacher {teacher!r} scored no (relevant, negative) pair of the training "
                           "examples: give it a first stage deep enough to reach them (e.g. 'bm25 % 100 >> ...')")
    return margins
