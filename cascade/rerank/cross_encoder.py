"""Cross-encoder reranking: a sequence-classification model reads each (query, document) pair.

Nogueira & Cho, "Passage Re-ranking with BERT" (2019): query and document form one input,
``[CLS] query [SEP] document [SEP]`` (the document truncated to ``max_length`` tokens), and
the classification head's output is the relevance score. Any
``AutoModelForSequenceClassification`` checkpoint works, by directory or hub id: with one
label the score is its logit; with two (not relevant, relevant) it is the last logit minus
the first. The (query, document) pairs of *all* queries are pooled, sorted by length and
batched, so short pairs are not padded to long ones and the model sees full batches even
when each query has few candidates. A document's text is its title and text from the
index's docstore; candidates from a run file (an ``IdTable`` space) are mapped to the index
by doc id. The output lives in the index's doc-number space, best first, ties by doc number.

With ``k`` set, only the top ``k`` incoming candidates of each query are rescored (the
compiler pushes that cutoff into the first stage); without it, everything that comes in.

>>> import tempfile, pathlib, cascade
>>> from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "vocab.txt").write_text("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "apple", "pie", "car"]))
>>> _ = BertTokenizerFast(str(d / "vocab.txt")).save_pretrained(d / "ce")
>>> BertForSequenceClassification(BertConfig(vocab_size=8, hidden_size=16, num_hidden_layers=1,
...     num_attention_heads=2, intermediate_size=32, num_labels=1)).save_pretrained(d / "ce")
>>> index = cascade.Index.build([cascade.Doc("a", "apple pie"), cascade.Doc("b", "apple car")], d / "i")
>>> p = cascade.BM25(index) >> CrossEncoder(index, str(d / "ce"), batch_size=8)
>>> sorted(p.search("apple").to_run()["0"])
['a', 'b']
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cascade.core.candidates import Candidates, cut
from cascade.core.errors import CascadeError
from cascade.core.nodes import Pipeline, Runner, format_call
from cascade.core.params import ParamInfo, check_params, non_defaults
from cascade.core.registry import Context, register_stage
from cascade.core.types import Doc, Query
from cascade.index.index import Index
from cascade.models.resolve import default_device, load_transformers, require, resolve_model
from cascade.rerank.base import Reranker, Scored

ProgressFn = Callable[[int, int], None]  # (pairs scored so far, pairs in all)
BAR_THRESHOLD = 1000  # pairs; below this no progress bar is worth drawing
PARAMS = (
    ParamInfo("model", str, None, "a sequence-classification checkpoint: directory or hub id"),
    ParamInfo("batch_size", int, 32, "pairs per forward pass", min=1),
    ParamInfo("max_length", int, 512, "tokens per (query, document) pair", min=4),
    ParamInfo("k", int, None, "rescore only each query's top k incoming candidates (default: all)", min=1,
              optional=True),
)


class CrossEncoder(Reranker):
    """Rescore incoming candidates with a cross-encoder, pairs of all queries batched together."""

    name = "cross_encoder"
    params = PARAMS

    def __init__(self, index: Index, model: str, *, batch_size: int = 32, max_length: int = 512,
                 k: int | None = None, label: str | None = None, progress: ProgressFn | None = None) -> None:
        values = check_params(self.name, PARAMS, {"model": model, "batch_size": batch_size,
                                                  "max_length": max_length, "k": k})
        if not values["model"]:
            raise CascadeError("cross_encoder needs a model: cross_encoder(model=DIR or hub id)")
        super().__init__(index)  # every candidate it reads comes out, re-sorted
        self.label = label if label is not None else values["model"]  # the model as the user wrote it
        self.location = resolve_model(values["model"])
        self.fingerprint = _fingerprint(self.location)
        self.batch_size, self.max_length, self.top = values["batch_size"], values["max_length"], values["k"]
        self.progress = progress

    # -- identity and compilation -----------------------------------------------------------

    def key(self) -> tuple[Any, ...]:  # batch_size is left out: it changes speed, not scores
        return (self.name, self.location, self.fingerprint, self.max_length, self.top, self.k, self.index.version)

    @property
    def input_depth(self) -> int | None:  # type: ignore[override]
        return self.top

    # -- the model ---------------------------------------------------------------------------

    @cached_property
    def loaded(self) -> tuple[Any, Any]:
        """(tokenizer, model), loaded on first use."""
        tokenizer, model = load_transformers(self.location, "ForSequenceClassification")
        model = model.to(default_device())
        n_labels = int(model.config.num_labels)
        if n_labels not in (1, 2):
            raise CascadeError(f"cross_encoder needs a model with 1 or 2 output labels; {self.label} has {n_labels}")
        archs = getattr(model.config, "architectures", None) or []
        if not any("ForSequenceClassification" in a for a in archs):
            warnings.warn(f"{self.label} was not saved as a sequence classifier (architectures: {archs}); its "
                          "classification head is randomly initialised and its scores mean nothing", stacklevel=2)
        return tokenizer, model

    def prepare(self) -> None:
        """Load the model now."""
        self.loaded  # noqa: B018

    def _effective_max_length(self, tokenizer: Any) -> int:
        limit = getattr(tokenizer, "model_max_length", None)
        return min(self.max_length, limit) if isinstance(limit, int) and 0 < limit < 1_000_000 else self.max_length

    # -- scoring -----------------------------------------------------------------------------

    def score_pairs(self, pairs: Sequence[tuple[str, str]], progress: ProgressFn | None = None) -> np.ndarray:
        """float32 score of each (query, document) pair, in the order given (batched by length)."""
        torch = require("torch", "cross-encoder reranking")
        tokenizer, model = self.loaded
        max_length = self._effective_max_length(tokenizer)
        groups = _batches(pairs, self._long_queries(pairs, tokenizer, max_length), self.batch_size)
        out = np.zeros(len(pairs), dtype=np.float32)
        progress = progress or self.progress or _default_bar(len(pairs))
        done = 0
        with torch.inference_mode():
            for batch, strategy in groups:
                features = tokenizer([pairs[i][0] for i in batch], [pairs[i][1] for i in batch], padding=True,
                                     truncation=strategy, max_length=max_length, return_tensors="pt").to(model.device)
                logits = model(**features).logits.float()
                scores = logits[:, 0] if logits.shape[1] == 1 else logits[:, -1] - logits[:, 0]
                out[batch] = scores.cpu().numpy()
                done += len(batch)
                if progress is not None:
                    progress(done, len(pairs))
        return out

    @staticmethod
    def _long_queries(pairs: Sequence[tuple[str, str]], tokenizer: Any, max_length: int) -> np.ndarray:
        """Pairs whose query alone leaves no room for the document (truncated from both sides)."""
        room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - 1
        lengths = {q: len(tokenizer(q, add_special_tokens=False)["input_ids"]) for q in {q for q, _ in pairs}}
        return np.array([lengths[q] > room for q, _ in pairs], dtype=bool)

    # -- the stage ---------------------------------------------------------------------------

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        if candidates is not None and self.top is not None:
            candidates = cut(candidates, self.top)
        return super().execute(runner, queries, candidates)

    def score(self, queries: Sequence[Query], docs: list[np.ndarray], k: int) -> Scored:
        """Every query's candidates rescored, the pairs of all queries pooled into batches."""
        lengths = [len(d) for d in docs]
        nums = np.concatenate(docs) if docs else np.empty(0, np.int64)
        unique, inverse = np.unique(nums, return_inverse=True)
        texts = [_text(doc) for doc in self.index.docs(unique)]
        qidx = np.repeat(np.arange(len(queries)), lengths)
        pairs = [(queries[q].text, texts[t]) for q, t in zip(qidx.tolist(), inverse.ravel().tolist())]
        scores = self.score_pairs(pairs)
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return [(np.arange(n), scores[a:a + n]) for n, a in zip(lengths, starts[:-1].tolist())]

    def __str__(self) -> str:
        values = {"model": self.label, "batch_size": self.batch_size, "max_length": self.max_length,
                  "k": self.top}
        shown = non_defaults(PARAMS, values)
        shown["model"] = self.label
        return format_call(self.name, (), shown)


def _build(ctx: Context, model: str | None, **params: Any) -> Pipeline:
    if model is None or str(model) == "":
        raise CascadeError("cross_encoder needs a model: cross_encoder(model=DIR or hub id)")
    text = str(model)
    local = ctx.path(text)
    hook = ctx.on_progress  # a front end's (label, done, total) listener, when it has one
    progress = (lambda done, total: hook("cross-encoding pairs", done, total)) if hook is not None else None
    return CrossEncoder(ctx.index("cross_encoder"), str(local) if local.exists() else text, label=text,
                        progress=progress, **params)


register_stage("cross_encoder", _build, params=PARAMS, positional=("model",),
               help="rerank candidates with a cross-encoder (pairs of all queries batched)")


# -- helpers ---------------------------------------------------------------------------------


def _text(doc: Doc) -> str:
    return " ".join(part for part in (doc.title, doc.text) if part)


def _batches(pairs: Sequence[tuple[str, str]], long_query: np.ndarray,
             batch_size: int) -> list[tuple[np.ndarray, str]]:
    """(pair positions, truncation) per batch: longest pairs first, long-query pairs on their own."""
    lengths = np.array([len(q) + len(d) for q, d in pairs], dtype=np.int64)
    out = []
    for flag, strategy in ((False, "only_second"), (True, "longest_first")):
        group = np.flatnonzero(long_query == flag)
        group = group[np.argsort(-lengths[group], kind="stable")]
        out.extend((group[s:s + batch_size], strategy) for s in range(0, len(group), batch_size))
    return out


def _fingerprint(location: str) -> str:
    """Names, sizes and mtimes of a local model's files (a retrained model gets a new cache key)."""
    path = Path(location)
    if not path.is_dir():
        return ""  # a hub id: its revision is the hub's business
    h = hashlib.blake2b(digest_size=12)
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _default_bar(total: int) -> ProgressFn | None:
    """A tqdm bar on an interactive stderr for long work; otherwise nothing."""
    if total < BAR_THRESHOLD or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    bar = tqdm(total=total, desc="cross_encoder", unit="pair", leave=False)

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)
        if done >= _total:
            bar.close()

    return update
