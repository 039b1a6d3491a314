"""Ask a question of an index: retrieve, select the context, answer with checked citations.

``ask(index, question)`` runs a pipeline (by default BM25's top 20 cut to a budget of 1000
tokens: ``bm25 % 20 >> budget(tokens=1000)``), numbers the passages it kept, and asks an LLM
backend (:func:`cascade.llm.open_backend`: a local GGUF through llama-cpp, or an
OpenAI-compatible server) to answer from them, citing passages by number. The citations are
then checked: a number outside the context is dropped and reported in ``Answer.dropped``, so
every citation of an :class:`~cascade.rag.answer.Answer` names a passage the model was shown.
On a passage index (:mod:`cascade.index.passages`) a pipeline string is run on passages (no
``to_docs`` is appended; write one to give each document's best passage instead), so the
references are passages, each knowing its document (``Reference.doc_id``).

>>> import tempfile, cascade
>>> from cascade.llm.testing import EchoBackend
>>> idx = cascade.Index.build([cascade.Doc("cats", "Cats purr when they are content.")], tempfile.mkdtemp() + "/i")
>>> llm = EchoBackend(answer=lambda prompt: "Cats purr when content [1]. Dogs bark [4].")
>>> answer = ask(idx, "why do cats purr?", backend=llm)
>>> answer.text(), [r.id for r in answer.cited()], answer.dropped
('Cats purr when content. [1] Dogs bark.', ['cats'], [(1, 4)])
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from cascade.context.base import entry_numbers
from cascade.context.record import selections
from cascade.core.candidates import cut
from cascade.core.errors import CascadeError
from cascade.core.executor import Executor
from cascade.core.nodes import Pipeline
from cascade.core.registry import Context
from cascade.core.types import Query
from cascade.index.index import Index
from cascade.index.passages import PASSAGE_KEY
from cascade.llm.backend import Backend
from cascade.llm.prompting import fill, template
from cascade.llm.stage import shared_backend, usage_of, usage_since
from cascade.pipeline.parse import parse
from cascade.rag.answer import Answer, Reference, Sentence
from cascade.rag.citations import parse_answer

DEFAULT_PIPELINE = "bm25 % 20 >> budget(tokens=1000)"
DEFAULT_MODEL = "llama-cpp:qwen"


@dataclass(frozen=True)
class AskOptions:
    """How :func:`ask` builds the prompt and calls the model."""

    k: int = 10  # at most this many passages of the pipeline's output go into the context
    max_words: int = 200  # each passage is cut to this many words in the prompt
    max_tokens: int = 256  # the answer's length limit (model tokens)
    max_sentences: int = 4  # what the prompt asks for
    prompt: str | None = None  # a template file with {question}, {passages}, {max_sentences}

    def check(self) -> None:
        for name in ("k", "max_words", "max_tokens", "max_sentences"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CascadeError(f"ask: {name} must be a positive integer (got {value!r})")


def answer_template(override: str | None = None) -> str:
    """The shipped answer prompt (``cascade/rag/prompts/answer.txt``), or the file ``override``."""
    return template("answer", override, package="cascade.rag")


def format_passages(references: list[Reference], max_words: int) -> str:
    """The numbered passages as the prompt shows them: ``[n] title`` and the text cut to ``max_words``."""
    blocks = []
    for r in references:
        words = r.text.split()
        text = " ".join(words[:max_words]) + (" ..." if len(words) > max_words else "")
        blocks.append(f"[{r.number}] {r.title}\n{text}" if r.title else f"[{r.number}] {text}")
    return "\n\n".join(blocks)


def context_references(index: Index, cands: Any, k: int) -> list[Reference]:
    """The first query's top ``k`` candidates as numbered references (entries of ``index``)."""
    top = cut(cands, k)
    nums, _ = entry_numbers(top, index)
    docs = index.docs(nums) if len(nums) else []
    out = []
    for n, (doc, score) in enumerate(zip(docs, top.score.tolist()), 1):
        info = doc.meta.get(PASSAGE_KEY)
        parent = str(info["doc"]) if isinstance(info, dict) and "doc" in info else doc.id
        out.append(Reference(n, doc.id, round(float(score), 6), doc.title, doc.text, parent))
    return out


def ask(index: Index, question: str, *, pipeline: str | Pipeline = DEFAULT_PIPELINE, model: str = DEFAULT_MODEL,
        backend: Backend | None = None, options: AskOptions | None = None, context: Context | None = None,
        **option_values: Any) -> Answer:
    """Answer ``question`` from ``index``: retrieval and context selection by ``pipeline`` (a
    string, parsed against ``index`` with passage results on a passage index, or a built
    pipeline), then ``backend`` (default: the process's shared backend for the spec ``model``).
    ``options`` (or its fields as keywords: ``k=5, max_tokens=128``) shape the prompt; ``context``
    carries stage defaults and progress."""
    if not isinstance(question, str) or not question.strip():
        raise CascadeError("ask: the question is empty")
    opts = options or AskOptions(**option_values)
    if options is not None and option_values:
        raise CascadeError("ask: give options= or option keywords, not both")
    opts.check()
    template = answer_template(opts.prompt)
    if isinstance(pipeline, str):
        ctx = context or Context.of(index=index)
        node = parse(pipeline, ctx if ctx.has_index() else replace(ctx, _index=index), passages=True)
    else:
        node = pipeline
    cands = Executor().run(node.compile(), [Query("0", question.strip())])
    references = context_references(index, cands, opts.k)
    steps = selections(cands)[0] if len(cands.query_ids) else []
    if not references:
        return Answer(question, [], [], raw="", selection=steps, model=model if backend is None else backend.model,
                      pipeline=str(node))
    llm = backend if backend is not None else shared_backend(model)
    prompt = fill(template, question=question.strip(), passages=format_passages(references, opts.max_words),
                  max_sentences=opts.max_sentences)
    before = usage_of(llm)
    raw = llm.generate([prompt], max_tokens=opts.max_tokens, temperature=0.0, seed=0)[0].text
    parsed, dropped = parse_answer(raw, len(references))
    return Answer(question, references, [Sentence(text, cited) for text, cited in parsed], dropped, raw, steps,
                  usage_since(llm, before), llm.model, str(node))
