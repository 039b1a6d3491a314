"""Local-to-global re-ranking (``mds_rerank``) after ``bm25 % 100 >> maxsim``, with and without it.

    python bench/mds_rerank.py [DATASET ...] [--model minilm] [--permutations 10000]

Default datasets: SciFact, NFCorpus (preprocessed) and the TREC DL19 passage pool from
``../shared/datasets`` (test queries, ``qrels/test.tsv``). Per dataset, through
:func:`cascade.evaluation.experiment.run_experiment` (one executor, so the shared prefix
``bm25 % 100 >> maxsim`` runs once; the index and the MiniLM token vectors come from the eval
cache, encoded on first use; no stage output is read from the stage cache, every stage is timed):

- ``bm25 % 100 >> maxsim`` (the baseline),
- ``bm25 % 100 >> maxsim >> mds_rerank`` (defaults k=20, dims=8, alpha=0.5, fixed before any
  run: nothing was tuned on these test queries),
- ``bm25 % 100 >> maxsim >> mds_rerank(alpha=0)`` (the MDS distance alone),
- with ``--variant 'dims=16, alpha=0.9'``: more settings, chosen on training queries only
  (``bench/mds_tune.py``).

With ``--threads-rounds N``: per dataset, the wall time of ``mds_rerank`` re-ranking the same
``bm25 % 100 >> maxsim`` candidates of the test queries with ``threads=1`` and with the default
(every core), each N times in turn (the stage's own ``rerank``, what a pipeline calls).

Reported: nDCG@10 (ir_measures), judged@10, the paired t-test and randomisation test against
the baseline (:mod:`cascade.evaluation.significance`, Holm-corrected over the
comparisons) and each stage's milliseconds per query (mean; ``mds_rerank`` timed per query,
its share of the batched eigendecomposition included). Writes
``bench/results/mds-rerank-<date>.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import cascade
from cascade.data.beir import BeirDataset
from cascade.evaluation.experiment import EvalOptions, run_experiment
from cascade.evaluation.results import ExperimentResult
from cascade.index.cache import cached_index
from cascade.rerank.maxsim import available_cores
from cascade.text.analyzer import Analyzer

HERE = Path(__file__).resolve().parent
DATASETS = HERE.parent.parent / "shared" / "datasets"
DEFAULT = ("scifact", "nfcorpus-preprocessed", "trec-dl19-passage-pool")


def base_pipeline(model: str) -> str:
    return "bm25 % 100 >> maxsim" + ("" if model == "minilm" else f"(model={model})")


def mds(model: str, settings: str = "") -> str:
    """``mds_rerank`` with ``model`` (unless the default) and ``settings``."""
    args = ", ".join(([] if model == "minilm" else [f"model={model}"]) + ([settings] if settings else []))
    return f"mds_rerank({args})" if args else "mds_rerank"


def pipelines(model: str, variants: list[str]) -> list[str]:
    base = base_pipeline(model)
    return [base, f"{base} >> {mds(model)}", f"{base} >> {mds(model, 'alpha=0')}",
            *(f"{base} >> {mds(model, v)}" for v in variants)]


def rows(result: ExperimentResult) -> list[str]:
    base = result.pipelines[0]
    out = []
    for p in result.pipelines:
        sig = p.significance.get("nDCG@10")
        tests = "baseline | | " if sig is None else \
            f"{sig.t_test:.3g} ({sig.t_test_holm:.3g}) | {sig.randomization:.3g} ({sig.randomization_holm:.3g}) | "
        delta = p.metrics["nDCG@10"] - base.metrics["nDCG@10"]
        stages = "; ".join(f"{s.stage.split('(')[0]} {s.latency.mean_ms:.1f}" for s in p.stages)
        out.append(f"| {result.dataset} | `{p.label}` | {p.metrics['nDCG@10']:.4f} | {delta:+.4f} | "
                   f"{p.judged.get('judged@10', float('nan')):.3f} | {tests}{stages} |")
    return out


def threads_speed(data: Path, index_path: Path, model: str, rounds: int) -> list[str]:
    """Wall seconds of mds_rerank over the same candidates, one thread against every core."""
    ds = BeirDataset(data)
    judged = set(ds.qrels("test"))
    queries = [q for q in ds.queries() if q.id in judged]
    index = cascade.Index.open(index_path)
    candidates = cascade.parse(base_pipeline(model), index=index).search(queries)
    # the default is what a pipeline gets: every available core
    stages = {"threads=1": cascade.parse(mds(model, "threads=1"), index=index),
              "default": cascade.parse(mds(model), index=index)}
    for stage in stages.values():
        stage.prepare()
        stage.rerank(queries[:8], cascade.parse("bm25 % 100", index=index).search(queries[:8]))  # warm-up
    walls: dict[str, list[float]] = {n: [] for n in stages}
    for _ in range(rounds):
        for n, stage in stages.items():
            start = time.perf_counter()
            stage.rerank(queries, candidates)
            walls[n].append(time.perf_counter() - start)
    one, every = (statistics.median(walls[n]) for n in stages)
    runs = "; ".join(f"{n}: " + ", ".join(f"{w:.2f}" for w in ws) for n, ws in walls.items())
    return [f"| {data.name} | {len(queries)} | {one:.2f} | {every:.2f} ({available_cores()} threads) | "
            f"{one / every:.2f}x | {runs} |"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", type=Path)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--permutations", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads-rounds", type=int, default=0,
                        help="also time mds_rerank on one thread against every core, this many rounds")
    parser.add_argument("--skip-quality", action="store_true", help="only the --threads-rounds timing")
    parser.add_argument("--variant", action="append", default=[],
                        help="more mds_rerank settings, e.g. 'dims=16, alpha=0.9' (chosen on training queries only)")
    args = parser.parse_args(argv)
    datasets = args.datasets or [DATASETS / name for name in DEFAULT]
    today = datetime.date.today().isoformat()
    out = args.out or HERE / "results" / f"mds-rerank-{today}.md"
    lines = [f"# mds_rerank after bm25 % 100 >> maxsim, {today}", "",
             f"Command: `python bench/mds_rerank.py {shlex.join(sys.argv[1:] if argv is None else argv)}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs, Python "
             f"{platform.python_version()}; model `{args.model}` (contextual token vectors of the index). "
             "mds_rerank defaults fixed a priori (k=20, dims=8, alpha=0.5); variants, if any, were chosen on "
             "training queries (bench/mds_tune.py); no setting was tuned on these queries.",
             ""]
    if not args.skip_quality:
        lines += ["p-values: raw (Holm-corrected over the comparisons with the baseline). ms/query: mean per stage.",
                  "", "| dataset | pipeline | nDCG@10 | Δ | judged@10 | t-test p | randomisation p | "
                  "ms/query by stage |", "|---|---|---:|---:|---:|---|---|---|"]
    speed = ["", "## mds_rerank on one thread and on every core (wall seconds, median of "
             f"{args.threads_rounds} rounds)", "",
             "| dataset | queries | threads=1 | default | speed-up | runs (s) |", "|---|--:|--:|--:|--:|---|"]
    for data in datasets:
        start = time.perf_counter()
        ds = BeirDataset(data)
        index, _, _ = cached_index(ds.name, ds.content_hash(), ds.corpus, analyzer=Analyzer())
        if not args.skip_quality:
            # the eval cache's index (token vectors stored there once), but no stage cache: every stage is timed
            opts = EvalOptions(metrics="nDCG@10", baseline=0, permutations=args.permutations, use_cache=False)
            result = run_experiment(data, pipelines(args.model, args.variant), index_dir=index.path, opts=opts)
            lines += rows(result)
        if args.threads_rounds:
            speed += threads_speed(data, index.path, args.model, args.threads_rounds)
        print(f"{data.name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        out.write_text("\n".join(lines + (speed if args.threads_rounds else [])) + "\n")  # partial results survive
    lines += speed if args.threads_rounds else []
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
