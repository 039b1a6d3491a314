"""Fault injection: SIGKILL an index writer at random moments during add, update, delete and
merge, many times, and check after every kill that the index opens, passes `cascade check`,
and holds exactly the last committed state.

The writer is a forked child that runs a planned sequence of operations (each one commit)
and reports each one it finishes on a pipe. The parent knows the document set after every
operation of the plan, so after a kill the index must equal the state after the last
reported operation, or after the one in flight (killed between its commit and its report).
The next child resumes from whichever state was found.

    python bench/kill_loop.py --kills 1000          # writes bench/results/kill-loop-<date>.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

WORDS = [f"w{i}" for i in range(300)]
FIELDS = {"year": "int", "lang": "keyword"}


def make_doc(rng: random.Random, doc_id: str):  # type: ignore[no-untyped-def]
    from cascade.core.types import Doc

    return Doc(doc_id, " ".join(rng.choices(WORDS, k=rng.randint(3, 30))),
               meta={"year": rng.randint(2000, 2019), "lang": rng.choice(["en", "de", "fr"])})


def plan(n_ops: int, seed: int) -> tuple[list[tuple[str, Any]], list[dict[str, str]]]:
    """Operations and the live {id: text} after each (states[0]: the initial build)."""
    rng = random.Random(seed)
    next_id = 0
    initial = []
    for _ in range(60):
        initial.append(make_doc(rng, f"d{next_id}"))
        next_id += 1
    live = {d.id: d for d in initial}
    ops: list[tuple[str, Any]] = [("build", initial)]
    states = [{k: d.text for k, d in live.items()}]
    for _ in range(n_ops):
        r = rng.random()
        big = len(live) > 250
        if (r < 0.35 and not big) or len(live) < 20:
            batch = []
            for _ in range(rng.randint(3, 15)):
                batch.append(make_doc(rng, f"d{next_id}"))
                next_id += 1
            ops.append(("add", batch))
            live.update((d.id, d) for d in batch)
        elif r < 0.55:
            ids = rng.sample(sorted(live), min(len(live), rng.randint(1, 5))) + [f"d{next_id}"]
            next_id += 1
            batch = [make_doc(rng, i) for i in ids]
            ops.append(("update", batch))
            live.update((d.id, d) for d in batch)
        elif r < 0.75:
            ids = rng.sample(sorted(live), min(len(live) - 5, rng.randint(1, 20 if big else 6)))
            ops.append(("delete", ids))
            for i in ids:
                del live[i]
        elif r < 0.85:
            year = rng.randint(2000, 2019)
            lang = rng.choice(["en", "de", "fr"])
            ops.append(("delete_where", f'year = {year} AND lang = "{lang}"'))
            for i in [k for k, d in live.items() if d.meta["year"] == year and d.meta["lang"] == lang]:
                del live[i]
        else:
            ops.append(("merge", rng.random() < 0.5))
        states.append({k: d.text for k, d in live.items()})
    return ops, states


def run_op(path: Path, op: tuple[str, Any]) -> None:
    from cascade.index.index import Index
    from cascade.index.merge import TieredMergePolicy

    kind, arg = op
    if kind == "build":
        Index.build(arg, path, filter_fields=FIELDS, overwrite=True).close()
        return
    idx = Index.open(path, verify=False)
    try:
        if kind == "add":
            idx.add(arg, merge=False)
        elif kind == "update":
            idx.update(arg, merge=False)
        elif kind == "delete":
            idx.delete(arg)
        elif kind == "delete_where":
            idx.delete(where=arg)
        else:
            idx.optimize(policy=None if arg else TieredMergePolicy(factor=3))
    finally:
        idx.close()


def child(path: Path, ops: list, start: int, wfd: int) -> None:
    """Run ops[start:], reporting each finished one; never returns."""
    try:
        for i in range(start, len(ops)):
            run_op(path, ops[i])
            os.write(wfd, f"{i}\n".encode())
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001  (a real failure: tell the parent)
        os.write(wfd, f"error {exc!r}\n".encode())
        os._exit(3)


def observed(path: Path) -> dict[str, str]:
    """Open (re-hashing every file) and read the live documents."""
    from cascade.index.index import Index

    idx = Index.open(path, verify=True)
    try:
        assert idx.verify() == []
        docs = {d.id: d.text for d in idx}
        assert idx.n_docs == len(docs)
        return docs
    finally:
        idx.close()


def cli_check(path: Path) -> None:
    from typer.testing import CliRunner

    from cascade.cli import app

    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output


def scores_match_fresh(path: Path, tmp: Path) -> None:
    from cascade.core.types import Doc
    from cascade.index.index import Index
    from cascade.retrieve.bm25 import BM25

    idx = Index.open(path)
    fresh = Index.build([Doc(d.id, d.text, meta=d.meta) for d in idx], tmp / "fresh", filter_fields=FIELDS,
                        overwrite=True)
    for q in ("w1 w2 w3", "w10 w200", "w7"):
        a = {h.id: h.score for h in BM25(idx).search(q, k=1000)}
        b = {h.id: h.score for h in BM25(fresh).search(q, k=1000)}
        assert a == b, q
    idx.close()
    fresh.close()


def kill_loop(workdir: Path, kills: int, seed: int = 0, max_delay: float = 0.4,
              score_check_every: int = 25) -> dict[str, Any]:
    """Kill a writer ``kills`` times; raises AssertionError on any lost or corrupted commit."""
    rng = random.Random(seed)
    path = workdir / "live.idx"
    warm = workdir / "warm.idx"  # load every module and compiled kernel once, so children fork warm
    run_op(warm, ("build", plan(0, seed)[0][0][1]))
    run_op(warm, ("add", [make_doc(rng, "warm")]))
    run_op(warm, ("merge", True))
    ops, states = plan(40 * kills + 100, seed)
    pos = 0  # ops[:pos] are committed (the index holds states[pos - 1])
    in_flight: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    done = 0
    start = time.perf_counter()
    while done < kills:
        if pos >= len(ops):
            raise RuntimeError("plan exhausted; raise the plan length")
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            child(path, ops, pos, wfd)
        os.close(wfd)
        time.sleep(rng.uniform(0.0, max_delay))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with os.fdopen(rfd) as report:
            lines = report.read().split()
        if any(line.startswith("error") for line in lines):
            raise AssertionError(f"writer failed: {lines}")
        finished = [int(x) for x in lines if x.isdigit()]
        acked = finished[-1] + 1 if finished else pos
        kind = ops[acked][0] if acked < len(ops) else "none"
        in_flight[kind] += 1
        if pos == 0 and acked == 0 and not path.exists():
            outcomes["nothing built yet"] += 1
            done += 1
            continue
        actual = observed(path)
        cli_check(path)
        if acked > 0 and actual == states[acked - 1]:
            pos = acked
            outcomes["last reported commit"] += 1
        elif acked < len(ops) and actual == states[acked]:
            pos = acked + 1
            outcomes["commit made, not yet reported"] += 1
        else:
            raise AssertionError(f"kill {done}: index matches neither the state after op {acked - 1} "
                                 f"nor after op {acked} ({kind})")
        done += 1
        if score_check_every and done % score_check_every == 0:
            scores_match_fresh(path, workdir)
    return {"kills": done, "ops_committed": pos, "seconds": time.perf_counter() - start,
            "in_flight": dict(in_flight), "outcomes": dict(outcomes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=0.4)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = kill_loop(Path(tmp), args.kills, args.seed, args.max_delay)
    command = "python " + " ".join(sys.argv)
    text = (f"# Kill loop, {dt.date.today()}\n\n`{command}`\n\n"
            f"- kills: {result['kills']} in {result['seconds']:.1f} s; operations committed: "
            f"{result['ops_committed']}\n- operation in flight at each kill: {result['in_flight']}\n"
            f"- state found after each kill: {result['outcomes']}\n- corrupted or lost commits: 0 "
            "(any would have stopped the run)\n")
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"kill-loop-{dt.date.today()}.md"
    target.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
