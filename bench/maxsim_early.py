"""Early pruning of MaxSim reranking, measured: candidate pruning (``min_ratio``) and early
termination (``patience``) against unpruned MaxSim, side by side in one process.

    python bench/maxsim_early.py DATASET [--model minilm] [--pipeline-prefix "bm25 % 100"]
        [--min-ratio 0.3,0.5,0.7] [--patience 1,2,4] [--chunk 8] [--watch N] [--repeat 3]
        [--queries N] [--permutations 10000] [--out FILE]

The two options of :mod:`cascade.rerank.maxsim` follow the idea of Martinico, Nardini, Rulli &
Venturini, "Multivector Reranking in the Era of Strong First-Stage Retrievers" (2025): prune
low-quality candidates before or while scoring them. Every configuration is
``PREFIX >> maxsim(model=M, ...)`` with no cutoff after it (so early termination watches the
top ``--watch``, default 10, and the stage's output keeps every input candidate), parsed with
:func:`cascade.parse` over the dataset's cached evaluation index and run through
:func:`cascade.evaluation.experiment.run_experiment` on the judged test queries, all
configurations in one experiment (one executor: the shared prefix runs once), no stage output
read from the stage cache. ``--repeat`` experiments, the configurations' order rotated each
time, after one untimed warm-up (model load, query encodings: those are kept per process, so
every timed MaxSim pass scores only). ``--queries N`` keeps the first N judged test queries
(a copy of the dataset with those qrels; the index cache entry is the same, it is keyed by
the corpus).

Reported per configuration: seconds of the MaxSim stage (the sum of its per-query latencies,
median over the repetitions) and the speed-up over unpruned, the share of candidates scored
exactly (``MaxSim.counts``), nDCG@10 and R@100 (ir_measures, through the experiment), the mean
overlap of each query's top 10 with unpruned's and the share of queries whose top 10 is
identical (same documents, same order), and the paired t-test and randomisation test of
nDCG@10 against unpruned (:mod:`cascade.evaluation.significance`, Holm-corrected over the
configurations). Writes Markdown with the command line (default
``bench/results/maxsim-early-<model>-<date>.md``).
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from neural import machine  # noqa: E402

import cascade  # noqa: E402
from cascade.core.nodes import Pipeline, Then, format_call  # noqa: E402
from cascade.data.beir import BeirDataset  # noqa: E402
from cascade.data.trec import read_trec_run  # noqa: E402
from cascade.evaluation.experiment import EvalOptions, run_experiment  # noqa: E402
from cascade.evaluation.significance import (  # noqa: E402
    holm_bonferroni,
    paired_randomization_test,
    paired_t_test,
    paired_vectors,
)
from cascade.index.cache import cached_index  # noqa: E402
from cascade.rerank.maxsim import CHUNK, WATCH, MaxSim  # noqa: E402
from cascade.text.analyzer import Analyzer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TOP = 10
ALPHA = 0.05


def first_queries(dataset: Path, n: int, split: str = "test") -> Path:
    """A copy of ``dataset`` (same directory name, corpus linked) whose qrels hold only its first
    ``n`` judged queries, in queries.jsonl order."""
    ds = BeirDataset(dataset)
    judged = ds.qrels(split)
    keep = [q.id for q in ds.queries() if q.id in judged][:n]
    out = Path(tempfile.mkdtemp(prefix="maxsim-early-")) / ds.name
    (out / "qrels").mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (out / name).symlink_to((dataset / name).resolve())
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{r}" for q in keep for d, r in judged[q].items()]
    (out / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return out


def configurations(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """(label, maxsim parameters besides the model): unpruned first."""
    ratios = [float(x) for x in args.min_ratio.split(",") if x]
    patiences = [int(x) for x in args.patience.split(",") if x]
    early = {"chunk": args.chunk, **({"watch": args.watch} if args.watch is not None else {})}
    out: list[tuple[str, dict[str, Any]]] = [("unpruned", {})]
    out += [(f"min_ratio={r:g}", {"min_ratio": r}) for r in ratios]
    out += [(f"patience={p}, chunk={args.chunk}", {"patience": p, **early}) for p in patiences]
    if ratios and patiences and not args.no_combined:
        out.append((f"min_ratio={ratios[0]:g} + patience={patiences[0]}",
                    {"min_ratio": ratios[0], "patience": patiences[0], **early}))
    return out


def maxsim_of(pipeline: Pipeline) -> MaxSim:
    last = pipeline.steps[-1] if isinstance(pipeline, Then) else pipeline
    if not isinstance(last, MaxSim):
        raise SystemExit(f"expected the pipeline to end in maxsim: {pipeline}")
    return last


def top(ranking: dict[str, float], k: int = TOP) -> list[str]:
    return [d for d, _ in sorted(ranking.items(), key=lambda item: (-item[1], item[0]))[:k]]


def agreement(base: dict[str, dict[str, float]], other: dict[str, dict[str, float]]) -> tuple[float, float]:
    """Mean overlap of the top 10s (share of the unpruned top 10 also in the other's) and the
    share of queries whose top 10 is identical in order, over the queries unpruned answered."""
    overlaps, same = [], 0
    for qid, ranking in base.items():
        a, b = top(ranking), top(other.get(qid, {}))
        overlaps.append(len(set(a) & set(b)) / len(a) if a else 1.0)
        same += a == b
    return (statistics.fmean(overlaps), same / len(base)) if base else (1.0, 1.0)


def experiment(dataset: Path, index: cascade.Index, texts: dict[str, str], permutations: int
               ) -> dict[str, dict[str, Any]]:
    """One run_experiment over every configuration (in the given order): per label its MaxSim
    seconds, counts, metrics, per-query nDCG@10 and run."""
    pipes = {label: cascade.parse(text, index=index) for label, text in texts.items()}
    with tempfile.TemporaryDirectory() as tmp:
        opts = EvalOptions(metrics="nDCG@10,R@100", use_cache=False, save_run=Path(tmp) / "run.trec",
                           judged_depths=(), permutations=permutations)
        result = run_experiment(dataset, list(pipes.values()), opts=opts)
        out = {}
        for (label, pipe), res in zip(pipes.items(), result.pipelines):
            stage = res.stages[-1]
            assert stage.stage.startswith("maxsim") and not stage.cached, stage
            counts = maxsim_of(pipe).counts
            out[label] = {"seconds": stage.seconds, "scored": counts.scored, "candidates": counts.candidates,
                          "metrics": dict(res.metrics), "queries": result.queries,
                          "ndcg": {q: v["nDCG@10"] for q, v in res.per_query.items()},
                          "run": read_trec_run(res.run_file) if res.run_file else {}}
    return out


def significance(base: dict[str, float], others: list[dict[str, float]], permutations: int
                 ) -> list[tuple[float, float, bool, float, float, bool]]:
    """Per configuration: t-test p, Holm p, significant; randomisation p, Holm p, significant."""
    pairs = [paired_vectors(base, o) for o in others]
    t_raw = [paired_t_test(a, b) for a, b in pairs]
    r_raw = [paired_randomization_test(a, b, n_permutations=permutations) for a, b in pairs]
    return [(t, ta, ts, r, ra, rs) for t, (ta, ts), r, (ra, rs)
            in zip(t_raw, holm_bonferroni(t_raw, ALPHA), r_raw, holm_bonferroni(r_raw, ALPHA))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--model", default="minilm", help="any model name or path maxsim accepts")
    parser.add_argument("--pipeline-prefix", default="bm25 % 100", help="the first stage(s) before maxsim")
    parser.add_argument("--min-ratio", default="0.3,0.5,0.7", help="comma-separated values, one row each ('' for none)")
    parser.add_argument("--patience", default="1,2,4", help="comma-separated values, one row each ('' for none)")
    parser.add_argument("--chunk", type=int, default=CHUNK)
    parser.add_argument("--watch", type=int, default=None, help=f"top early termination watches (default {WATCH})")
    parser.add_argument("--no-combined", action="store_true", help="leave out the row with both options")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--queries", type=int, default=None, help="only the first N judged test queries")
    parser.add_argument("--permutations", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    dataset = first_queries(args.dataset, args.queries) if args.queries else args.dataset
    try:
        return run(args, dataset, argv)
    finally:
        if dataset != args.dataset:
            shutil.rmtree(dataset.parent, ignore_errors=True)


def run(args: argparse.Namespace, dataset: Path, argv: list[str] | None) -> int:
    ds = BeirDataset(dataset)
    index, _, _ = cached_index(ds.name, ds.content_hash(), ds.corpus, analyzer=Analyzer())
    configs = configurations(args)
    texts = {label: f"{args.pipeline_prefix} >> {format_call('maxsim', params={'model': args.model, **params})}"
             for label, params in configs}
    labels = list(texts)
    print("warm-up (untimed): encode the collection if needed, load the model, encode the queries", flush=True)
    experiment(dataset, index, {labels[0]: texts[labels[0]]}, args.permutations)
    reps: list[dict[str, dict[str, Any]]] = []
    for rep in range(args.repeat):
        order = labels[rep % len(labels):] + labels[:rep % len(labels)]
        reps.append(experiment(dataset, index, {label: texts[label] for label in order}, args.permutations))
        print(f"repetition {rep + 1}/{args.repeat}: " +
              ", ".join(f"{label} {reps[-1][label]['seconds']:.2f} s" for label in labels), flush=True)

    first = reps[0]
    stable = all(r[label]["ndcg"] == first[label]["ndcg"] for r in reps for label in labels)
    seconds = {label: statistics.median(r[label]["seconds"] for r in reps) for label in labels}
    base = first[labels[0]]
    tests = significance(base["ndcg"], [first[label]["ndcg"] for label in labels[1:]], args.permutations)
    rows = ["| maxsim options | MaxSim s (median) | ms/query | speed-up | scored exactly | nDCG@10 | Δ nDCG@10 | "
            "R@100 | top-10 overlap | identical top 10 | t-test p (Holm) | randomisation p (Holm) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, label in enumerate(labels):
        r = first[label]
        n = r["queries"]
        ndcg, recall = r["metrics"]["nDCG@10"], r["metrics"].get("R@100", float("nan"))
        overlap, identical = agreement(base["run"], r["run"])
        if i == 0:
            sig = "(baseline) | (baseline)"
        else:
            t, ta, ts, p, pa, ps = tests[i - 1]
            sig = f"{t:.3g} ({ta:.3g}){' †' if ts else ''} | {p:.3g} ({pa:.3g}){' †' if ps else ''}"
        rows.append(f"| `{label}` | {seconds[label]:.3f} | {1000 * seconds[label] / n:.2f} | "
                    f"{seconds[labels[0]] / seconds[label]:.2f}x | {r['scored'] / max(r['candidates'], 1):.1%} | "
                    f"{ndcg:.4f} | {ndcg - base['metrics']['nDCG@10']:+.4f} | {recall:.4f} | {overlap:.3f} | "
                    f"{identical:.1%} | {sig} |")
    per_rep = ["| maxsim options | " + " | ".join(f"rep {i + 1}" for i in range(len(reps))) + " |",
               "|---|" + "---|" * len(reps)]
    per_rep += [f"| `{label}` | " + " | ".join(f"{r[label]['seconds']:.3f}" for r in reps) + " |" for label in labels]
    command = "python bench/maxsim_early.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    watch = args.watch if args.watch is not None else WATCH
    text = "\n".join([
        f"# MaxSim early pruning on {ds.name} ({args.model})", "",
        f"Command: `{command}`", "", f"Machine: {machine()}", "",
        f"Pipelines: `{texts[labels[0]]}` and the same with the options below; {base['queries']} judged test "
        f"queries{f' (the first {args.queries})' if args.queries else ''}; {args.repeat} repetitions after a "
        "warm-up, the configurations' order rotated each time; MaxSim seconds = the stage's summed per-query "
        f"latencies (query encodings cached by the warm-up). Early termination watches the top {watch} "
        f"(no cutoff follows the stage) in chunks of {args.chunk}. Candidates not scored follow the scored ones in "
        "first-stage order, so R@100 is the prefix's.", "",
        *rows, "",
        "Overlap: the share of unpruned's top 10 also in the configuration's top 10, mean over queries; "
        "identical: same 10 documents in the same order. p-values: paired tests of per-query nDCG@10 against "
        f"unpruned ({args.permutations} permutations), Holm-adjusted over the {len(labels) - 1} configurations "
        f"in brackets; † significant at {ALPHA} after adjustment.",
        f"Per-query nDCG@10 identical in every repetition: {stable}.", "",
        "MaxSim seconds per repetition:", "", *per_rep,
    ]) + "\n"
    print(text)
    out = args.out or RESULTS / f"maxsim-early-{Path(args.model).name}-{datetime.date.today()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
