"""LLM rerankers on TREC DL19: BM25's top 20 reranked by each LLM stage, against BM25 itself.

    python bench/get_models.py                       # once: Qwen2.5-Coder-1.5B-Instruct GGUF
    python bench/llm_rerank.py [--queries 43] [--stages pointwise,first,listwise,graded,bsc,icr]
                               [--icr-queries 10] [--model llama-cpp:qwen] [--icr-model transformers:...]

The queries are the first ``--queries`` of ``queries.jsonl`` in file order (never chosen by
results); every stage reranks the same queries, from ``runs/BM25.top100.trec`` cut to the top
20. DL19 is a test set: no prompt or setting was tuned on it. Per stage: nDCG@10 (ir_measures,
:mod:`cascade.evaluation.metrics`), seconds and tokens per query, LLM calls (and cached calls),
the paired t-test and randomisation test against BM25 (:mod:`cascade.evaluation.significance`),
and per-query nDCG@10 differences. ``first``, ``listwise`` and ``icr`` see the same windows
(window 20 = the whole top 20: one window per query), so their seconds per query compare
single-token scoring and attention with generating the order. The LLM call cache makes a rerun
free (``cached`` calls); ``--no-cache`` measures afresh. Writes
``bench/results/llm-rerank-<date>.md`` (and a ``.json`` beside it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cascade.data.trec import read_trec_run
from cascade.evaluation.metrics import evaluate
from cascade.evaluation.significance import compare
from cascade.llm.backend import open_backend
from cascade.llm.stage import usage_of, usage_since

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "datasets" / "trec-dl19-passage-pool"
DEPTH = 20


def load(data: Path, n_queries: int) -> tuple[list[tuple[str, str]], dict, dict, dict[str, str]]:
    queries = [json.loads(line) for line in (data / "queries.jsonl").read_text().splitlines() if line.strip()]
    queries = [(q["_id"], q["text"]) for q in queries][:n_queries]
    qrels: dict[str, dict[str, int]] = {}
    for line in (data / "qrels" / "anserini_qrels.dl19-passage.txt").read_text().splitlines():
        qid, _, did, rel = line.split()
        qrels.setdefault(qid, {})[did] = int(rel)
    full = read_trec_run(data / "runs" / "BM25.top100.trec")
    run = {qid: dict(sorted(full[qid].items(), key=lambda kv: -kv[1])[:DEPTH]) for qid, _ in queries}
    need = {d for docs in run.values() for d in docs}
    texts = {}
    with open(data / "corpus.jsonl") as f:
        for line in f:
            doc = json.loads(line)
            if doc["_id"] in need:
                texts[doc["_id"]] = " ".join(x for x in (doc.get("title"), doc["text"]) if x)
    return queries, qrels, run, texts


def make_stage(name: str, backend: Any, max_words: int) -> Any:
    """The stage ``name`` of the bench, on ``backend``; window 20 = the whole top 20."""
    import importlib

    module, cls, params = {
        "pointwise": ("pointwise", "LLMPointwise", {}),
        "graded": ("pointwise", "LLMPointwise", {"mode": "graded", "max_grade": 3}),
        "first": ("first", "First", {"window": 20, "stride": 10}),
        "listwise": ("listwise", "LLMListwise", {"window": 20, "stride": 10}),
        "bsc": ("bsc", "LLMBatchedSelfConsistency", {"batch": 10, "samples": 3}),
        "icr": ("icr", "ICR", {"window": 20, "stride": 10}),
    }[name]
    stage_class = getattr(importlib.import_module(f"cascade.llm.{module}"), cls)
    return stage_class(None, backend=backend, max_words=max_words, **params)


def run_query(name: str, stage: Any, backend: Any, qid: str, text: str, run: dict, texts: dict[str, str],
              into: dict[str, Any]) -> None:
    """Rerank one query with one stage; its scores, seconds, usage and parse counts go into ``into``."""
    ids = list(run[qid])
    before = usage_of(backend)
    counts = dict(getattr(stage, "parse_counts", {}))
    start = time.perf_counter()
    scores = stage.rank(text, [texts[d] for d in ids])
    cost = {"seconds": time.perf_counter() - start, **usage_since(backend, before)}
    for k, v in getattr(stage, "parse_counts", {}).items():
        cost[f"parse_{k}"] = v - counts.get(k, 0)
    into["run"][qid] = {d: float(s) for d, s in zip(ids, scores)}
    into["cost"][qid] = cost
    print(f"  {name} {qid} {cost['seconds']:.1f}s", file=sys.stderr, flush=True)


def rank_preserving(scores: dict[str, float]) -> dict[str, float]:
    """BM25's own order as strictly decreasing scores (ties in the file's order)."""
    return {d: float(len(scores) - i) for i, d in enumerate(scores)}


def _row(name: str, r: dict[str, Any], qids: list[str], qrels: dict, base_pq: dict[str, float]) -> tuple[str, dict]:
    ev = evaluate({q: r["run"][q] for q in qids}, qrels, ["nDCG@10"], queries=qids)
    pq = {q: ev.per_query.get(q, {}).get("nDCG@10", 0.0) for q in qids}
    b = {q: base_pq[q] for q in qids}
    n = len(qids)
    t = compare(b, pq, test="t-test") if len(qids) > 1 else float("nan")
    rnd = compare(b, pq, test="randomization") if len(qids) > 1 else float("nan")
    cost = {k: sum(r["cost"][q].get(k, 0) for q in qids) for k in r["cost"][qids[0]]}
    parse = f"{cost['parse_ok']:.0f}/{cost['parse_repaired']:.0f}/{cost['parse_failed']:.0f}" \
        if "parse_ok" in cost else ""
    mean, base = np.mean(list(pq.values())), np.mean(list(b.values()))
    fresh = [q for q in qids if not r["cost"][q].get("cached_calls")] or qids  # a cached call costs no time
    seconds = sum(r["cost"][q]["seconds"] for q in fresh) / len(fresh)
    row = (f"| {name} | {n} | {mean:.4f} | {base:.4f} | {mean - base:+.4f} "
           f"| {t:.3g} | {rnd:.3g} | {seconds:.1f} ({len(fresh)}) | "
           f"{(cost['prompt_tokens'] + cost['completion_tokens']) / n:.0f} ({cost['prompt_tokens'] / n:.0f}+"
           f"{cost['completion_tokens'] / n:.0f}) | {cost['calls'] / n:.1f} | {cost['cached_calls']:.0f} | {parse} |")
    return row, pq


def report(results: dict[str, Any], queries: list[tuple[str, str]], qrels: dict, run: dict, args: Any) -> str:
    """Each stage on the queries it finished (the first ones, in file order), BM25 on the same ones."""
    order = [q for q, _ in queries]
    done = {name: [q for q in order if q in r["run"]] for name, r in results.items()}
    common = [q for q in order if all(q in d for d in done.values())]
    lines = [f"# LLM rerankers on TREC DL19 (BM25 top {DEPTH}), {datetime.date.today()}", "",
             f"Command: `python bench/llm_rerank.py {' '.join(sys.argv[1:])}`", "",
             f"Machine: {platform.machine()}, 2 CPU cores shared with other jobs; model `{args.model}` "
             f"(ICR: `{args.icr_model}`); passages cut "
             f"to {args.max_words} words. Queries: the first of queries.jsonl in file order; each row gives how many "
             f"a stage finished (BM25's figures are on the same queries); {len(common)} are common to all stages.", ""]
    all_pq = {q: v.get("nDCG@10", 0.0) for q, v in evaluate({q: rank_preserving(run[q]) for q in order}, qrels,
                                                             ["nDCG@10"], queries=order).per_query.items()}
    lines += ["| stage | queries | nDCG@10 | BM25 on them | Δ | t-test p | randomisation p | s/query (over n queries "
              "with no cached call) | tokens/query "
              "(prompt+completion) | calls/query | cached calls | parse ok/repaired/failed |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    per_query = {}
    for name, r in results.items():
        if done[name]:
            row, per_query[name] = _row(name, r, done[name], qrels, all_pq)
            lines.append(row)
    lines += ["", "## Per-query nDCG@10", "", "| query | BM25 | " + " | ".join(per_query) + " |",
              "|---|---|" + "---|" * len(per_query)]
    for qid, text in queries:
        if any(qid in pq for pq in per_query.values()):
            cells = [f"{per_query[s][qid]:.3f}" if qid in per_query[s] else "" for s in per_query]
            lines.append(f"| {qid} {text[:45]} | {all_pq.get(qid, 0.0):.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--queries", type=int, default=43)
    p.add_argument("--stages", default="pointwise,first,listwise,graded,bsc")
    p.add_argument("--model", default="llama-cpp:qwen")
    p.add_argument("--icr-model", default="transformers:qwen")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--max-words", type=int, default=50, help="words of each passage in a prompt")
    p.add_argument("--report-only", action="store_true", help="rewrite the report from the .json of a run")
    p.add_argument("--out", type=Path, default=HERE / "results" / f"llm-rerank-{datetime.date.today()}.md")
    args = p.parse_args(argv)
    queries, qrels, run, texts = load(args.data, args.queries)
    partial = args.out.with_suffix(".json")
    results: dict[str, Any] = json.loads(partial.read_text()) if partial.exists() and not args.report_only else {}
    if args.report_only:
        results = json.loads(partial.read_text())
    names = args.stages.split(",")
    backends: dict[str, Any] = {}
    stages: dict[str, Any] = {}
    for name in names if not args.report_only else []:
        spec = args.icr_model if name == "icr" else args.model
        if spec not in backends:
            backends[spec] = open_backend(spec, cache=not args.no_cache)
        stages[name] = make_stage(name, backends[spec], args.max_words)
        results.setdefault(name, {"run": {}, "cost": {}})
    # query by query, every stage in turn: whenever the run stops, all stages have the same queries
    for qid, text in queries if not args.report_only else []:
        for name in names:
            if qid in results[name]["run"]:
                continue
            spec = args.icr_model if name == "icr" else args.model
            run_query(name, stages[name], backends[spec], qid, text, run, texts, results[name])
        partial.write_text(json.dumps(results))
        args.out.write_text(report(results, queries, qrels, run, args))
    args.out.write_text(report(results, queries, qrels, run, args))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
