"""Every door takes the fast path: `cascade eval`, pipelines and single-query search against the
direct batch call, measured side by side in one run.

    python bench/doors.py ../shared/datasets/scifact [--rounds 5] [--sparse] [--baseline-rev b00846d]

For each first stage (BM25; with --sparse also SPLADE inference-free and the RRF of the two):

- **direct**: the stage's own batch call on all queries (``BM25(index).search_batch``, ...),
  the median of ``--rounds`` timed calls after a warm-up;
- **pipeline**: the same stage parsed from a pipeline string and run through an ``Executor``
  (what ``cascade eval`` and ``cascade search -p`` run): the stage time the executor records;
- **cascade eval**: ``cascade eval DATASET -p STAGE --no-cache --json`` in a child process (the
  SPLADE rows pass ``--index`` with the encoded index): the search seconds it reports.

Queries/s = queries / seconds; the ratio direct ÷ eval says how much slower the CLI's path is.

Single queries: ``BM25(index).search(text, k=10)`` over every query, one call each, warm
(median of the rounds), with the compiled kernels and with ``engine="numpy"``; with
``--baseline-rev REV`` the same loop runs on that commit's code (a ``git worktree`` put first on
PYTHONPATH, so the same installed libraries) in the same run; ``--baseline-dir DIR`` does the
same with code already unpacked in DIR (e.g. ``git archive REV cascade | tar -x -C DIR``, which
leaves the repository as it is), named in the table by ``--baseline-name``.

Writes ``bench/results/doors-<date>.md`` (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import cascade
from cascade.core.executor import Executor
from cascade.data.beir import BeirDataset
from cascade.fuse.rrf import rrf
from cascade.pipeline.parse import parse

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"

SINGLE_QUERY_LOOP = """
import json, sys, time
import cascade
index = cascade.Index.open(sys.argv[1])
texts = json.loads(sys.argv[2])
rounds = int(sys.argv[3])
if hasattr(index, "bm25"):  # code from before the core layer (b00846d)
    bm25 = index.bm25()
else:
    bm25 = cascade.BM25(index, engine=sys.argv[4])
search = lambda t: bm25.search(t, k=10)
for t in texts:
    search(t)  # warm: analysis memo, impacts, kernels
times = []
for _ in range(rounds):
    start = time.perf_counter()
    for t in texts:
        search(t)
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def median_time(fn: Callable[[], Any], rounds: int) -> float:
    fn()  # warm-up: kernels loaded, impacts and memos filled
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pipeline_seconds(text: str, index: cascade.Index, queries: list[cascade.Query], rounds: int) -> float:
    """The stage time an Executor records for ``text`` (a fresh executor each round: no memo)."""
    node = parse(text, index=index).compile()
    times = []
    for _ in range(rounds + 1):
        ex = Executor()
        out = ex.run(node, queries)
        record = ex.record_of(out)
        times.append(float(record.query_seconds.sum()))
    return statistics.median(times[1:])


def eval_seconds(dataset: Path, text: str, index: Path | None, rounds: int) -> tuple[float, float]:
    """(search seconds `cascade eval --json` reports, the process's wall seconds): medians."""
    cli = str(Path(sys.executable).with_name("cascade"))
    cmd = [cli, "eval", str(dataset), "-p", text, "--no-cache", "--json"]
    if index is not None:
        cmd += ["--index", str(index)]
    search, wall = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        wall.append(time.perf_counter() - start)
        result = json.loads(done.stdout)["results"][0]
        search.append(float(result["seconds"]["search"]))
    return statistics.median(search), statistics.median(wall)


def single_query_qps(index_dir: Path, texts: list[str], rounds: int, *, code_dir: Path | None = None,
                     engine: str = "auto") -> float:
    """Queries/s of one-at-a-time BM25 search in a child process (``code_dir``: that code first)."""
    env = dict(os.environ)
    if code_dir is not None:
        env["PYTHONPATH"] = str(code_dir) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", SINGLE_QUERY_LOOP, str(index_dir), json.dumps(texts), str(rounds),
                           engine],
                          capture_output=True, text=True, check=True, env=env, cwd=code_dir or REPO)
    return len(texts) / statistics.median(json.loads(done.stdout))


FIRST_CALL = """
import json, sys, time
import cascade
from cascade.data.beir import BeirDataset
from cascade.pipeline.parse import parse
ds = BeirDataset(sys.argv[2])
qrels = ds.qrels("test")
queries = [q for q in ds.queries() if q.id in qrels]
stage = parse(sys.argv[3], index=cascade.Index.open(sys.argv[1])).compile()
prepare = getattr(stage, "prepare", None)
if prepare is not None:
    prepare()  # what a stage does before its clock starts (kernels loaded, impacts made)
start = time.perf_counter()
stage.search_batch(queries) if hasattr(stage, "search_batch") else stage(queries)
print(json.dumps(time.perf_counter() - start))
"""


def first_call_seconds(index_dir: Path, dataset: Path, text: str, rounds: int) -> float:
    """The stage's direct batch call as the first search of a fresh process (median of rounds)."""
    times = []
    for _ in range(rounds):
        done = subprocess.run([sys.executable, "-c", FIRST_CALL, str(index_dir), str(dataset), text],
                              capture_output=True, text=True, check=True)
        times.append(json.loads(done.stdout))
    return statistics.median(times)


BUILD = """
import sys
import cascade
from cascade.data.beir import BeirDataset
cascade.Index.build(BeirDataset(sys.argv[1]).corpus(), sys.argv[2])
"""


def build_with(code_dir: Path, dataset: Path, out: Path) -> None:
    """Index ``dataset`` with the code in ``code_dir`` (its own index format)."""
    env = {**os.environ, "PYTHONPATH": str(code_dir) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run([sys.executable, "-c", BUILD, str(dataset.resolve()), str(out)], check=True, env=env,
                   cwd=code_dir, capture_output=True)


def worktree(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), rev], check=True,
                   capture_output=True)
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sparse", action="store_true", help="also SPLADE inference-free and RRF(bm25, sparse)")
    parser.add_argument("--baseline-rev", default=None, help="also time single queries on this commit's code")
    parser.add_argument("--baseline-dir", type=Path, default=None,
                        help="also time single queries on the code unpacked in this directory (its cascade/ first)")
    parser.add_argument("--baseline-name", default=None, help="the --baseline-dir row's name in the table")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from cascade.retrieve.bm25 import BM25

    ds = BeirDataset(args.dataset)
    qrels = ds.qrels("test")
    queries = [q for q in ds.queries() if q.id in qrels]
    n = len(queries)
    work = Path(tempfile.mkdtemp(prefix="cascade-doors-"))
    index_dir = work / f"{ds.name}.idx"
    index = cascade.Index.build(ds.corpus(), index_dir, source={"path": str(args.dataset)})
    rows: list[tuple[str, float, float, float, float, float]] = []

    bm25 = BM25(index)
    direct = median_time(lambda: bm25.search_batch(queries), args.rounds)
    first = first_call_seconds(index_dir, args.dataset, "bm25", args.rounds)
    piped = pipeline_seconds("bm25", index, queries, args.rounds)
    cli_search, cli_wall = eval_seconds(args.dataset, "bm25", None, args.rounds)
    rows.append(("bm25", direct, first, piped, cli_search, cli_wall))

    if args.sparse:
        from cascade.retrieve.learned_sparse import LearnedSparse

        sparse = LearnedSparse(index, mode="inference_free")
        sparse.ensure_encoded()
        index = index.refresh()
        sparse, bm25 = LearnedSparse(index, mode="inference_free"), BM25(index)
        sparse.doc_freqs  # noqa: B018  (token ids stored before the timers)
        index = index.refresh()
        sparse, bm25 = LearnedSparse(index, mode="inference_free"), BM25(index)
        text = "sparse(mode=inference_free)"
        rows.append((text, median_time(lambda: sparse.search_batch(queries), args.rounds),
                     first_call_seconds(index_dir, args.dataset, text, args.rounds),
                     pipeline_seconds(text, index, queries, args.rounds),
                     *eval_seconds(args.dataset, text, index_dir, args.rounds)))
        fused = f"rrf(bm25, {text})"
        rows.append((fused, median_time(lambda: rrf([bm25.search_batch(queries), sparse.search_batch(queries)]),
                                        args.rounds),
                     first_call_seconds(index_dir, args.dataset, fused, args.rounds),
                     pipeline_seconds(fused, index, queries, args.rounds),
                     *eval_seconds(args.dataset, fused, index_dir, args.rounds)))

    texts = [q.text for q in queries]
    single = {"kernels": single_query_qps(index_dir, texts, args.rounds, engine="kernels"),
              "numpy": single_query_qps(index_dir, texts, args.rounds, engine="numpy")}
    if args.baseline_rev:
        old = worktree(args.baseline_rev, work / "baseline")
        try:
            build_with(old, args.dataset, work / "baseline.idx")  # that code's own index format
            single[f"code at {args.baseline_rev}"] = single_query_qps(work / "baseline.idx", texts, args.rounds,
                                                                      code_dir=old)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=False)
    if args.baseline_dir:
        old = args.baseline_dir.resolve()
        build_with(old, args.dataset, work / "baseline-dir.idx")
        single[f"code at {args.baseline_name or old}"] = single_query_qps(work / "baseline-dir.idx", texts,
                                                                         args.rounds, code_dir=old, engine="kernels")

    lines = [f"# Every door, one fast path: {ds.name}, {n} queries", "",
             f"Command: `python bench/{Path(__file__).name} {' '.join(shlex.quote(a) for a in sys.argv[1:])}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
             f"load average before the run {os.getloadavg()[0]:.2f}; median of {args.rounds} rounds.", "",
             "Direct batch: the stage's own call, warm (median of rounds after a warm-up) and as the first "
             "search of a fresh process (after the stage's `prepare()`, as a pipeline stage does before its "
             "clock starts). `cascade eval` runs each query once in a fresh process, so its peer is the "
             "first call; the warm figure shows what repeated batches get.", "",
             "| stage | direct batch q/s, warm | direct batch q/s, first call | pipeline (Executor) q/s, warm | "
             "`cascade eval` q/s | first call ÷ eval | eval process wall s |", "|---|--:|--:|--:|--:|--:|--:|"]
    for text, d, f, p, c, wall in rows:
        lines.append(f"| `{text}` | {n / d:,.0f} | {n / f:,.0f} | {n / p:,.0f} | {n / c:,.0f} | {c / f:.2f} | "
                     f"{wall:.2f} |")
    lines += ["", "Single-query search, `BM25(index).search(text, k=10)`, one call per query, warm:", "",
              "| code | queries/s |", "|---|--:|"]
    lines += [f"| {name} | {qps:,.0f} |" for name, qps in single.items()]
    report = "\n".join(lines) + "\n"
    print(report)
    out = args.out or RESULTS / f"doors-{datetime.date.today().isoformat()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
