"""Passage indexes against whole-document indexes (issue 18).

Two measurements, both written to ``bench/results/passages-<date>.md`` with the command:

1. **Long documents, dense** (MiniLM reads 256 WordPiece tokens): standard-library modules
   with every docstring at full length (``cascade.data.pydocs.python_module_docs``), the first
   sentence of every definition docstring that starts past WordPiece token 512 of its module's
   document as a query whose answer is that module. Success@1, success@5 and MRR@10 of
   ``dense`` over the whole documents and over passages (MaxP).
2. **SciFact, BM25** (abstracts of 200-300 words: passages should cost little): nDCG@10 and
   R@100 of BM25 over whole documents and over passages with MaxP, FirstP and the sum of the
   two best passages.

    python bench/passages.py                                   # both
    python bench/passages.py --modules ssl,argparse --skip-scifact
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import cascade  # noqa: E402
from cascade.data.pydocs import python_module_docs  # noqa: E402

MODULES = "ssl,argparse,socket,pydoc,http.client,smtplib,ftplib,imaplib"
SENTENCE = re.compile(r"(?<=[.!?])\s")


def deep_queries(docs: list[cascade.Doc], tok, past: int = 512) -> list[tuple[str, str]]:  # type: ignore
    """(module, first sentence) of every definition docstring starting past token ``past``."""
    out = []
    for d in docs:
        for m in re.finditer(r"^#{2,6} (\S+)\n\n(.+?)(?:\n\n|\Z)", d.text, re.M | re.S):
            first = " ".join(SENTENCE.split(m.group(2).strip())[0].split())
            if len(first.split()) >= 6 and len(tok.encode(d.text[:m.start(2)]).ids) > past:
                out.append((d.id, first))
    return out


def scores(run: dict[str, dict[str, float]], answers: dict[str, str]) -> dict[str, float]:
    ranks = []
    for qid, doc in answers.items():
        ids = list(run.get(qid, {}))[:10]
        ranks.append(ids.index(doc) + 1 if doc in ids else None)
    n = len(ranks)
    return {"success@1": sum(r == 1 for r in ranks) / n,
            "success@5": sum(r is not None and r <= 5 for r in ranks) / n,
            "MRR@10": sum(1 / r for r in ranks if r) / n}


def long_documents(modules: list[str], tokens: int, overlap: int, work: Path) -> list[str]:
    from tokenizers import Tokenizer

    from cascade.models.resolve import resolve_model

    tok = Tokenizer.from_file(os.path.join(resolve_model("minilm"), "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    docs = [d for d in python_module_docs() if d.id in modules]
    pairs = deep_queries(docs, tok)
    queries = [cascade.Query(f"q{i}", text) for i, (_, text) in enumerate(pairs)]
    answers = {f"q{i}": module for i, (module, _) in enumerate(pairs)}
    whole = cascade.Index.build(docs, work / "whole.idx", overwrite=True)
    parts = cascade.Index.build(docs, work / "passages.idx", overwrite=True,
                                passages={"tokens": tokens, "overlap": overlap})
    lines = [f"{len(docs)} modules ({sum(len(d.text.split()) for d in docs):,} words, "
             f"{sum(len(tok.encode(d.text).ids) for d in docs):,} WordPiece tokens), {parts.n_docs} passages "
             f"of at most {tokens} words ({overlap} overlapping); {len(queries)} queries (first sentences of "
             "docstrings starting past token 512).", "",
             "| index | pipeline | success@1 | success@5 | MRR@10 |", "|---|---|---|---|---|"]
    for name, idx, text in (("whole documents", whole, "dense(model=minilm) % 10"),
                            ("passages", parts, "dense(model=minilm) % 200 >> to_docs % 10")):
        run = cascade.parse(text, index=idx)(queries).to_run()
        s = scores(run, answers)
        lines.append(f"| {name} | `{text}` | {s['success@1']:.3f} | {s['success@5']:.3f} | {s['MRR@10']:.3f} |")
    return lines


def scifact(dataset: Path, tokens: int, overlap: int, work: Path) -> list[str]:
    from cascade.evaluation.experiment import EvalOptions, run_experiment

    corpus = list(cascade.open_corpus(dataset))
    whole = cascade.Index.build(corpus, work / "sf-whole.idx", overwrite=True)
    parts = cascade.Index.build(corpus, work / "sf-passages.idx", overwrite=True,
                                passages={"tokens": tokens, "overlap": overlap})
    lines = [f"SciFact test: {len(corpus):,} documents; {parts.n_docs:,} passages of at most {tokens} words "
             f"({overlap} overlapping).", "", "| index | pipeline | nDCG@10 | R@100 |", "|---|---|---|---|"]
    for name, idx, pipes in (("whole documents", whole, ["bm25"]),
                             ("passages", parts, ["bm25 >> to_docs", "bm25 >> to_docs(agg=firstp)",
                                                  "bm25 >> to_docs(agg=sum, n=2)"])):
        result = run_experiment(dataset, pipes, index_dir=idx.path, opts=EvalOptions(metrics="nDCG@10,R@100"))
        for p in result.pipelines:
            lines.append(f"| {name} | `{p.label}` | {p.metrics['nDCG@10']:.4f} | {p.metrics['R@100']:.4f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modules", default=MODULES)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--scifact", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact")
    ap.add_argument("--skip-scifact", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results" / f"passages-{dt.date.today()}.md")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="passages-bench-"))
    body = ["# Passage indexes vs whole documents", "",
            f"`python {shlex.join(['bench/passages.py', *sys.argv[1:]])}` on {platform.node()} "
            f"({os.cpu_count()} CPUs, {platform.python_version()}), {dt.datetime.now():%Y-%m-%d %H:%M}.", "",
            "## Long documents, dense (MiniLM, 256-token input)", ""]
    body += long_documents(args.modules.split(","), args.tokens, args.overlap, work)
    if not args.skip_scifact:
        body += ["", "## SciFact, BM25", ""] + scifact(args.scifact, 100, 20, work)
    args.out.write_text("\n".join(body) + "\n")
    print("\n".join(body))


if __name__ == "__main__":
    main()
