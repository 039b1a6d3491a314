"""LLM judge vs human assessors on TREC DL19 passages: Cohen's kappa and Kendall's tau.

    python bench/judge_agreement.py ../shared/datasets/trec-dl19-passage-pool --model llama-cpp:qwen \\
        --depth 5 --minutes 60

What is judged: the judged queries in a seeded random order (``--seed``); for each, the union
of the top ``--depth`` documents of the five runs in ``DATASET/runs``, every pair, human-judged
or not (``--all`` in `cascade judge` terms), with Cascade's UMBRELA-style prompt and label
log-probabilities (``cascade.evaluation.judge``). Whole queries are judged until ``--queries``
queries are done or ``--minutes`` have passed, so the sample is "every pool pair of the first N
queries of a seeded order" (not stratified over labels; the label mix of the top-5 pool is
close to even). From it:

- per pair (the pairs humans also judged): kappa over the four grades and binary (grade >= 2,
  the DL passage convention), exact agreement, confusion; for the argmax label and for the
  expected grade rounded, both read from the same log-probs;
- per system: the five runs ordered by nDCG@depth (only the top ``depth`` is judged by the
  LLM) on the queries done, under human qrels and under the LLM's (``llm``: its labels alone;
  ``filled``: human labels with the LLM's for the pairs humans lack), and Kendall's tau.

Results are rewritten after every query (``bench/results/judge-agreement-<date>.md`` and the
LLM's qrels beside it), so a stopped run still leaves its figures; the LLM call cache makes a
rerun of judged pairs free.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import random
import sys
import time
from pathlib import Path

from cascade.data.beir import BeirDataset
from cascade.data.trec import read_trec_run
from cascade.evaluation.agreement import pair_agreement, system_agreement
from cascade.evaluation.judge import (
    Judge,
    JudgeResult,
    label_from_logprobs,
    make_pairs,
    passages_for,
    top_pairs,
    write_qrels,
)
from cascade.llm import open_backend

RESULTS = Path(__file__).resolve().parent / "results"


def pool_pairs(runs: dict[str, dict], qid: str, depth: int) -> list[tuple[str, str]]:
    """The union of the runs' top ``depth`` for one query (first-seen order, run by run)."""
    seen: dict[tuple[str, str], None] = {}
    for run in runs.values():
        for pair in top_pairs(run, depth, [qid]):
            seen.setdefault(pair, None)
    return list(seen)


def relabel(result: JudgeResult, rule: str) -> dict[str, dict[str, int]]:
    """The judged labels under another log-prob rule."""
    out: dict[str, dict[str, int]] = {}
    for j in result.judgements:
        lp = {k: (-math.inf if p <= 0 else math.log(p)) for k, p in (j.probs or {}).items()}
        out.setdefault(j.qid, {})[j.docid] = label_from_logprobs(lp, rule)[0] if lp else j.label
    return out


def table(matrix: list[list[int]], labels: list[int]) -> str:
    head = "| human \\ LLM | " + " | ".join(str(x) for x in labels) + " |\n|---|" + "---|" * len(labels) + "\n"
    return head + "".join(f"| {lab} | " + " | ".join(str(n) for n in row) + " |\n" for lab, row in zip(labels, matrix))


def signal(result: JudgeResult, human: dict) -> dict:
    """Whether the LLM's expected grade orders pairs like the humans, calibration aside: its mean
    per human grade, and the AUC of the expected grade for human relevance (grade >= 2)."""
    from scipy.stats import mannwhitneyu

    by_grade: dict[int, list[float]] = {}
    for j in result.judgements:
        if j.docid in human.get(j.qid, {}) and j.expected is not None:
            by_grade.setdefault(human[j.qid][j.docid], []).append(j.expected)
    rel = [e for g, es in by_grade.items() if g >= 2 for e in es]
    non = [e for g, es in by_grade.items() if g < 2 for e in es]
    auc = float(mannwhitneyu(rel, non).statistic) / (len(rel) * len(non)) if rel and non else None
    return {"mean_expected_by_human_grade": {g: round(sum(es) / len(es), 3) for g, es in sorted(by_grade.items())},
            "auc_expected_for_relevant": auc, "relevant": len(rel), "non_relevant": len(non)}


def signal_text(sig: dict) -> str:
    means = ", ".join(f"{g}: {m:.3f}" for g, m in sig["mean_expected_by_human_grade"].items())
    auc = "n/a" if sig["auc_expected_for_relevant"] is None else f"{sig['auc_expected_for_relevant']:.3f}"
    return (f"\nRanking signal, calibration aside: the LLM's expected grade averages {means} for human grades "
            f"0..3; as a score for human relevance (grade >= 2) its AUC is {auc} "
            f"({sig['relevant']} relevant, {sig['non_relevant']} not; 0.5 = chance).\n")


def first_cost(ledger: dict, done: list[str]) -> str:
    """What judging the done queries cost when their pairs were first judged (the cost ledger)."""
    known = [ledger[q] for q in done if q in ledger]
    if not known:
        return ""
    pairs, seconds = sum(c["calls"] for c in known), sum(c["seconds"] for c in known)
    tokens = sum(c["prompt_tokens"] for c in known)
    return (f" When first judged ({len(known)} of these queries, recorded in the cost ledger): {pairs} pairs, "
            f"{tokens:,} prompt tokens, {seconds:.0f} s of model time, {seconds / max(1, pairs):.1f} s per pair.")


def report(args: argparse.Namespace, command: str, human: dict, runs: dict, results: list[JudgeResult],
           done: list[str], wall: float, finished: bool, ledger: dict) -> str:
    merged = JudgeResult(results[0].model, results[0].method, results[0].rule, results[0].template,
                         [j for r in results for j in r.judgements])
    usage: dict[str, float] = {}
    for r in results:
        for k, v in r.usage.items():
            usage[k] = usage.get(k, 0) + v
    n = len(merged.judgements)
    metric = f"nDCG@{args.depth}"
    lines = [f"# LLM judge agreement on DL19 passages ({datetime.date.today()})\n",
             f"Command: `{command}`\n",
             f"Model `{args.model}` ({merged.method}, prompt `{merged.template}`), {len(done)} of "
             f"{len(human)} judged queries ({'all asked for' if finished else 'the time budget or --queries stopped it there'}), "
             f"seeded order (seed {args.seed}): {', '.join(done)}.\n",
             f"Judged: every pair in the union of the five runs' top {args.depth} for those queries: {n} pairs "
             f"(human-judged: {sum(1 for j in merged.judgements if j.docid in human.get(j.qid, {}))}). "
             f"Not stratified; labels as they fall in the pool.\n",
             f"Cost: {usage.get('calls', 0)} calls ({usage.get('cached_calls', 0)} from the call cache), "
             f"{usage.get('prompt_tokens', 0):,} prompt tokens, {usage.get('completion_tokens', 0)} completion "
             f"tokens, {usage.get('seconds', 0):.0f} s of model time, {wall:.0f} s wall "
             f"({usage.get('seconds', 0) / max(1, usage.get('calls', 0) - usage.get('cached_calls', 0)):.1f} s per "
             f"uncached pair; 2 shared cores).{first_cost(ledger, done)}\n"]
    summary: dict = {"queries": done, "pairs": n, "usage": usage, "signal": signal(merged, human)}
    lines.append(signal_text(summary["signal"]))
    for rule in ("argmax", "expected"):
        qrels = relabel(merged, rule)
        a = pair_agreement(human, qrels, threshold=2)
        h_counts = [sum(row) for row in a.confusion]
        j_counts = [sum(col) for col in zip(*a.confusion)]
        lines += [f"\n## Labels by {rule}\n",
                  f"Pairs judged by both: {a.pairs}. Cohen's kappa: **{a.kappa:.3f}** (4 grades), "
                  f"**{a.kappa_binary:.3f}** (binary, relevant = grade >= 2); exact agreement {a.accuracy:.1%}. "
                  f"Human label counts {dict(zip(a.labels, h_counts))}, LLM {dict(zip(a.labels, j_counts))}.\n",
                  table(a.confusion, a.labels)]
        summary[rule] = {"pairs": a.to_dict()}
        if len(done) >= 2:
            for kind in ("llm", "filled"):
                s = system_agreement(runs, human, qrels, metric=metric, kind=kind, queries=done)
                lines += [f"\n{metric} of the five runs on the {s.queries} queries, human vs LLM qrels ({kind}): "
                          + (f"Kendall's tau **{s.tau:.3f}** (p = {s.p_value:.3f})\n" if s.defined else
                           "Kendall's tau undefined (the LLM scores every run alike)\n"),
                          "| run | human | LLM |\n|---|---|---|\n" + "".join(
                              f"| {name} | {h:.4f} | {j:.4f} |\n" for name, h, j in zip(s.systems, s.human, s.judge))]
                summary[rule][kind] = s.to_dict()
    lines.append(f"\n```json\n{json.dumps(summary, indent=1, default=str)[:20000]}\n```\n")
    return "".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--model", default="llama-cpp:qwen")
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--queries", type=int, default=43)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / f"judge-agreement-{datetime.date.today()}.md")
    args = parser.parse_args()
    command = "python bench/judge_agreement.py " + " ".join(sys.argv[1:])
    data = BeirDataset(args.dataset)
    human = data.qrels("test")
    queries = {q.id: q.text for q in data.queries()}
    runs = {p.name.removesuffix(".top100.trec"): read_trec_run(p) for p in sorted((data.root / "runs").glob("*.trec"))}
    order = sorted(q for q in queries if q in human)
    random.Random(args.seed).shuffle(order)
    wanted = {q: pool_pairs(runs, q, args.depth) for q in order[: args.queries]}
    passages = passages_for(data.corpus(), {d for pairs in wanted.values() for _, d in pairs})
    options = {} if args.threads is None else {"n_threads": args.threads}
    judge = Judge(open_backend(args.model, **options), method="logprobs", batch_size=4)
    start, results, done = time.time(), [], []
    ledger_path = args.out.with_suffix(".cost.json")  # per query: the usage when its pairs were first judged
    ledger = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for qid, pairs in wanted.items():
        if time.time() - start > args.minutes * 60:
            break
        results.append(judge.judge(make_pairs(pairs, queries, passages)))
        done.append(qid)
        if not results[-1].usage.get("cached_calls"):  # judged now, not replayed: what it cost
            ledger[qid] = results[-1].usage
            ledger_path.write_text(json.dumps(ledger, indent=1))
        wall = time.time() - start
        print(f"{len(done)}/{len(wanted)} queries, {sum(len(r.judgements) for r in results)} pairs, {wall:.0f} s",
              flush=True)
        text = report(args, command, human, runs, results, done, wall, len(done) == len(wanted), ledger)
        write_qrels({q: d for r in results for q, d in r.qrels().items()}, args.out.with_suffix(".qrels"))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
