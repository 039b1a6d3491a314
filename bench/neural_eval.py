"""A neural `cascade eval` as a newcomer runs it: with the encodings stored, and from a clean cache
with the torch fp32 and the int8 ONNX encoder, measured side by side in one run.

    python bench/neural_eval.py ../shared/datasets/scifact [--baseline-rev b00846d] [--rounds 2]
                                [--skip-clean | --skip-stored]

1. **Encodings stored**: the collection is indexed and encoded once with ``cascade encode``
   (MiniLM, torch), then ``cascade eval DATASET --index IDX -p PIPELINE --no-cache --json`` runs
   in a child process, once untimed (anything a first search stores, e.g. MaxSim bounds, is
   stored then, and the ONNX export the queries are then encoded with, see
   :mod:`cascade.models.onnx_export`) and ``--rounds`` times timed, also with
   ``CASCADE_QUERY_ONNX=0`` (queries by torch); with ``--baseline-rev REV`` the same runs use that
   commit's code (a ``git worktree`` first on PYTHONPATH: the same installed libraries), on an
   index that code built and encoded (its own format). The timed runs go in rounds, each code
   once per round in turn, so all see the same machine state. Reported: the median wall time of
   the process, the ratio per round, and nDCG@10.
2. **Clean cache** (skipped with ``--skip-clean``; ``--skip-stored`` runs only this part):
   ``cascade eval DATASET -p PIPELINE`` with an empty ``CASCADE_CACHE_DIR``, so the index is
   built and the collection encoded inside the run, once with ``model=minilm``
   (sentence-transformers on torch, fp32) and once with ``model=minilm-onnx`` (onnxruntime, int8
   weights, fused layers, no torch for encoding).

The pipeline is ``rrf(bm25, dense) % 100 >> maxsim % 10`` (``--pipeline`` for another, written
with ``{model}`` where the model goes). Writes ``bench/results/neural-eval-<dataset>-<date>[-clean|-stored].md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
PIPELINE = "rrf(bm25, dense(model={model})) % 100 >> maxsim(model={model}) % 10"
CLI = "import sys; from cascade.cli import main; sys.argv[0] = 'cascade'; sys.exit(main())"


def cascade_cmd(*args: str) -> list[str]:
    """``cascade ARGS`` through the interpreter, so PYTHONPATH decides which code runs."""
    return [sys.executable, "-c", CLI, *args]


def run_eval(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, dict]:  # type: ignore[type-arg]
    """(wall seconds, the JSON result of the first pipeline) of one `cascade eval ... --json`."""
    start = time.perf_counter()
    done = subprocess.run(cascade_cmd("eval", *args, "--json"), capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"cascade eval failed ({' '.join(args)}):\n{done.stderr[-3000:]}")
    return wall, json.loads(done.stdout)["results"][0]


@dataclass
class Setting:
    """One way of running the stored-encodings eval: which code, on which index, with what environment."""

    name: str
    index: Path
    env: dict[str, str]
    cwd: Path
    walls: list[float] = field(default_factory=list)
    ndcg: float = 0.0


def stored_encodings(dataset: Path, pipeline: str, settings: list[Setting], rounds: int) -> None:
    """One untimed eval per setting, then ``rounds`` rounds that time each setting once, in turn:
    every setting sees the same state of the machine (page cache, other load) in each round."""
    def args(setting: Setting) -> list[str]:
        return [str(dataset), "--index", str(setting.index), "-p", pipeline, "--no-cache", "--metrics", "nDCG@10"]

    for setting in settings:
        run_eval(args(setting), setting.env, setting.cwd)
    for _ in range(rounds):
        for setting in settings:
            wall, result = run_eval(args(setting), setting.env, setting.cwd)
            setting.walls.append(wall)
            setting.ndcg = float(result["metrics"]["nDCG@10"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--pipeline", default=PIPELINE)
    parser.add_argument("--baseline-rev", default=None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-clean", action="store_true")
    parser.add_argument("--skip-stored", action="store_true", help="time only the clean-cache runs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    dataset = args.dataset.resolve()
    work = Path(tempfile.mkdtemp(prefix="cascade-neural-eval-"))
    env = {**os.environ, "CASCADE_CACHE_DIR": str(work / "cache")}
    torch_pipeline = args.pipeline.format(model="minilm")
    lines = [f"# Neural `cascade eval` on {dataset.name}", "",
             f"Command: `python bench/{Path(__file__).name} {' '.join(shlex.quote(a) for a in sys.argv[1:])}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
             f"load average before the run {os.getloadavg()[0]:.2f}.", ""]

    if not args.skip_stored:
        lines += stored_section(args, dataset, work, env, torch_pipeline)
    if not args.skip_clean:
        lines += clean_section(args, dataset, work, env)
    shutil.rmtree(work, ignore_errors=True)
    report = "\n".join(lines) + "\n"
    print(report)
    part = "-clean" if args.skip_stored else "-stored" if args.skip_clean else ""  # a part never overwrites the whole
    out = args.out or RESULTS / f"neural-eval-{dataset.name}-{datetime.date.today().isoformat()}{part}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)


def stored_section(args: argparse.Namespace, dataset: Path, work: Path, env: dict[str, str],
                   torch_pipeline: str) -> list[str]:
    """Part 1: evals on an index whose encodings are stored, this code against ``--baseline-rev``."""
    index = work / "encoded.idx"
    start = time.perf_counter()
    subprocess.run(cascade_cmd("index", str(dataset), "-o", str(index)), check=True, env=env, capture_output=True)
    subprocess.run(cascade_cmd("encode", str(index), "--model", "minilm"), check=True, env=env, capture_output=True)
    encode_seconds = time.perf_counter() - start
    settings = [Setting("this code", index, env, REPO),
                Setting("this code, `CASCADE_QUERY_ONNX=0` (queries by torch)", index,
                        {**env, "CASCADE_QUERY_ONNX": "0"}, REPO)]
    old = work / "baseline"
    try:
        if args.baseline_rev:
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), args.baseline_rev],
                           check=True, capture_output=True)
            old_index = work / "encoded-baseline.idx"  # that code's own index format, encoded by that code
            old_env = {**env, "PYTHONPATH": str(old) + os.pathsep + env.get("PYTHONPATH", "")}
            subprocess.run(cascade_cmd("index", str(dataset), "-o", str(old_index)), check=True, env=old_env,
                           cwd=old, capture_output=True)
            subprocess.run(cascade_cmd("encode", str(old_index), "--model", "minilm"), check=True, env=old_env,
                           cwd=old, capture_output=True)
            settings.append(Setting(f"code at {args.baseline_rev}", old_index, old_env, old))
        stored_encodings(dataset, torch_pipeline, settings, args.rounds)
    finally:
        if args.baseline_rev:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=False)
    rows = [(st.name, st.walls, st.ndcg) for st in settings]
    lines = [f"## Encodings stored (`{torch_pipeline}`)", "",
              f"Indexing and encoding the collection once (MiniLM, torch): {encode_seconds:.0f} s. Each eval: "
              f"one untimed run each, then {args.rounds} rounds timing each code in turn; a whole `cascade eval` "
              "process each.", "",
              "| code | wall s (median) | runs | nDCG@10 |", "|---|--:|---|--:|"]
    for name, walls, ndcg in rows:
        lines.append(f"| {name} | {statistics.median(walls):.1f} | {', '.join(f'{w:.1f}' for w in walls)} | "
                     f"{ndcg:.4f} |")
    lines += ["", "This code encodes the queries with the ONNX export of MiniLM that the untimed run made "
              "(`cascade.models.onnx_export`: no torch import); the second row keeps torch for queries."]
    if len(rows) > 2:
        ratios = [b / a for a, b in zip(rows[0][1], rows[2][1])]
        speedup = statistics.median(rows[2][1]) / statistics.median(rows[0][1])
        lines += ["", f"Speed-up over {rows[2][0]}: {speedup:.2f}x "
                      f"(queries by torch: {statistics.median(rows[2][1]) / statistics.median(rows[1][1]):.2f}x); "
                      f"per round: {', '.join(f'{r:.2f}x' for r in ratios)}."]
    return lines


def clean_section(args: argparse.Namespace, dataset: Path, work: Path, env: dict[str, str]) -> list[str]:
    """Part 2: one `cascade eval` per encoder from an empty cache (index, encode, evaluate)."""
    lines = ["", "## From a clean cache (index, encode and evaluate in one `cascade eval`)", "",
             "| encoder | pipeline | wall s | nDCG@10 |", "|---|---|--:|--:|"]
    clean = {}
    for model in ("minilm", "minilm-onnx"):
        text = args.pipeline.format(model=model)
        shutil.rmtree(work / "cache", ignore_errors=True)
        wall, result = run_eval([str(dataset), "-p", text, "--metrics", "nDCG@10"], env, REPO)
        clean[model] = (wall, float(result["metrics"]["nDCG@10"]))
        lines.append(f"| {model} | `{text}` | {wall:.0f} | {clean[model][1]:.4f} |")
    (t_torch, n_torch), (t_onnx, n_onnx) = clean["minilm"], clean["minilm-onnx"]
    return lines + ["", f"int8 ONNX against torch fp32: {t_torch / t_onnx:.2f}x faster, nDCG@10 "
                        f"{n_onnx - n_torch:+.4f}."]


if __name__ == "__main__":
    main()
