"""`cascade ask` on SciFact claims: how often a passage the answer cites is a relevant document.

    python bench/rag_ask.py ../shared/datasets/scifact --claims 20 --model llama-cpp:qwen

For the first ``--claims`` test claims (in the order of queries.jsonl, those with judgements),
``cascade.ask`` retrieves with ``--pipeline`` (default ``bm25 % 20 >> budget(tokens=1000)``),
gives the model the top ``--k`` kept passages, and checks its citations against the context
(invented numbers are dropped and counted). Reported, over every citation: the share that
names a relevant document (citation precision), against the share of context passages that
are relevant (what citing at random would give); per claim: whether some citation is relevant,
whether the context held a relevant document at all, dropped citations, tokens and seconds.

Every model call goes through the LLM call cache (``~/.cache/cascade/llm``; prompts and decoding
are deterministic), so a stopped run resumes where it stopped and a rerun costs nothing. The
report (``--out``, default ``bench/results/rag-ask-<date>.md``) and the answers in TREC RAG
(Ragnarök) JSON lines beside it (``.jsonl``) are rewritten after every claim.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from cascade.core.registry import Context
from cascade.data.beir import BeirDataset
from cascade.index.cache import cached_index
from cascade.llm import open_backend
from cascade.rag.ask import DEFAULT_PIPELINE, AskOptions, ask
from cascade.text.analyzer import Analyzer

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--claims", type=int, default=20)
    parser.add_argument("--model", default="llama-cpp:qwen")
    parser.add_argument("--pipeline", default=DEFAULT_PIPELINE)
    parser.add_argument("-k", type=int, default=5, help="passages in the context")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or RESULTS / f"rag-ask-{datetime.date.today()}.md"
    command = (f"python bench/rag_ask.py {args.dataset} --claims {args.claims} --model {args.model} "
               f"--pipeline '{args.pipeline}' -k {args.k} --max-tokens {args.max_tokens}")
    ds = BeirDataset(args.dataset)
    index, _, _ = cached_index(ds.name, ds.content_hash(), ds.corpus, analyzer=Analyzer())
    qrels = ds.qrels("test")
    claims = [q for q in ds.queries() if any(g >= 1 for g in qrels.get(q.id, {}).values())][:args.claims]
    backend = open_backend(args.model)
    opts = AskOptions(k=args.k, max_tokens=args.max_tokens)
    rows, answers = [], []
    for i, claim in enumerate(claims, 1):
        relevant = {d for d, g in qrels[claim.id].items() if g >= 1}
        start = time.perf_counter()
        answer = ask(index, claim.text, pipeline=args.pipeline, backend=backend, options=opts,
                     context=Context.of(index=index))
        seconds = time.perf_counter() - start
        context = [r.doc_id for r in answer.references]
        cited = [answer.references[n - 1].doc_id for s in answer.sentences for n in s.citations]
        rows.append({"id": claim.id, "context": len(context), "context_relevant": sum(d in relevant for d in context),
                     "citations": len(cited), "cited_relevant": sum(d in relevant for d in cited),
                     "dropped": len(answer.dropped), "sentences": len(answer.sentences),
                     "calls": int(answer.usage.get("calls", 0)), "cached": int(answer.usage.get("cached_calls", 0)),
                     "tokens": int(answer.usage.get("prompt_tokens", 0) + answer.usage.get("completion_tokens", 0)),
                     "seconds": round(seconds, 1)})
        answers.append(answer.to_dict(topic_id=claim.id, run_id=f"cascade-{args.model}"))
        print(f"[{i}/{len(claims)}] {claim.id}: {rows[-1]}", flush=True)
        write(out, command, rows, answers, len(claims))
    print(f"wrote {out}")
    return 0


def write(out: Path, command: str, rows: list[dict], answers: list[dict],  # type: ignore[type-arg]
          wanted: int) -> None:
    citations = sum(r["citations"] for r in rows)
    cited_rel = sum(r["cited_relevant"] for r in rows)
    context = sum(r["context"] for r in rows)
    context_rel = sum(r["context_relevant"] for r in rows)
    n = len(rows)
    lines = [
        "# cascade ask on SciFact claims: are the cited passages relevant?\n",
        f"Command: `{command}`\n",
        f"Claims answered: {n} of {wanted}.\n",
        f"- citations: {citations} ({citations / max(n, 1):.2f} per claim); naming a relevant document: {cited_rel} "
        f"(precision {cited_rel / citations:.3f})" if citations else "- citations: 0",
        f"- context passages: {context}; relevant: {context_rel} ({context_rel / max(context, 1):.3f}: the precision "
        "of citing at random)",
        f"- claims with a relevant citation: {sum(r['cited_relevant'] > 0 for r in rows)}; with a relevant document "
        f"in the context: {sum(r['context_relevant'] > 0 for r in rows)}; with no citation: "
        f"{sum(r['citations'] == 0 for r in rows)}",
        f"- invented citation numbers dropped: {sum(r['dropped'] for r in rows)}",
        f"- model calls: {sum(r['calls'] for r in rows)} ({sum(r['cached'] for r in rows)} from the cache), "
        f"tokens {sum(r['tokens'] for r in rows):,.0f}, seconds in this run {sum(r['seconds'] for r in rows):,.0f}\n",
        "| claim | context (relevant) | citations (relevant) | dropped | sentences | seconds |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['id']} | {r['context']} ({r['context_relevant']}) | {r['citations']} ({r['cited_relevant']}) | "
              f"{r['dropped']} | {r['sentences']} | {r['seconds']} |" for r in rows]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".jsonl").write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers))


if __name__ == "__main__":
    sys.exit(main())
