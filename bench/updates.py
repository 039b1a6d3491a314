"""Add 1,000 documents to a SciFact index and search: time it end to end.

The index is built from all but the last 1,000 SciFact documents (not timed); then, timed:
open the index, add the last 1,000 documents (one commit: new segment, fsync, manifest),
and answer a query, first from Python in a fresh process, then with the CLI
(`cascade add` + `cascade search`, process start-up included). Scores after the add are
checked against a fresh build of all documents.

    python bench/updates.py /work/shared/datasets/scifact    # writes bench/results/updates-<date>.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIMED = """
import sys, time
t0 = time.perf_counter()
import cascade
from cascade.data import read_jsonl_docs
docs = list(read_jsonl_docs(sys.argv[2]))
t1 = time.perf_counter()
idx = cascade.Index.open(sys.argv[1])
idx.add(docs)
idx = idx.refresh()
t2 = time.perf_counter()
hits = cascade.BM25(idx).search("microstructural development of white matter", k=10)
t3 = time.perf_counter()
print(f"{t3 - t0:.3f} {t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.3f} {hits[0].id}")
"""


def run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--add", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    import cascade
    from cascade.data import read_jsonl_docs

    docs = list(read_jsonl_docs(args.dataset / "corpus.jsonl"))
    base, extra = docs[: -args.add], docs[-args.add:]
    tmp = Path(tempfile.mkdtemp(prefix="cascade-updates-"))
    try:
        extra_file = tmp / "extra.jsonl"
        extra_file.write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text, **d.meta}) + "\n"
                                      for d in extra), encoding="utf-8")
        cascade.Index.build(base, tmp / "base.idx")
        script = tmp / "timed.py"
        script.write_text(TIMED)
        python_rows, cli_rows = [], []
        for i in range(args.repeat):
            target = tmp / f"py{i}.idx"
            shutil.copytree(tmp / "base.idx", target)
            out = subprocess.run([sys.executable, str(script), str(target), str(extra_file)], check=True,
                                 capture_output=True, text=True).stdout.split()
            python_rows.append([float(x) for x in out[:4]])
            target = tmp / f"cli{i}.idx"
            shutil.copytree(tmp / "base.idx", target)
            cli = str(Path(sys.executable).with_name("cascade"))
            add_s = run([cli, "add", str(target), str(extra_file)])
            search_s = run([cli, "search", str(target), "microstructural development of white matter", "--json"])
            cli_rows.append([add_s + search_s, add_s, search_s])
        # correctness: scores after the add equal a fresh build of everything
        fresh = cascade.Index.build(docs, tmp / "fresh.idx")
        updated = cascade.Index.open(tmp / "py0.idx")
        for q in ("white matter diffusion", "vitamin d deficiency", "gene expression in cancer cells"):
            a = {h.id: h.score for h in cascade.BM25(updated).search(q, k=100)}
            b = {h.id: h.score for h in cascade.BM25(fresh).search(q, k=100)}
            assert a == b, q
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    best_py = min(python_rows)
    best_cli = min(cli_rows)
    command = "python " + " ".join(sys.argv)
    lines = [
        f"# Incremental add, {dt.date.today()}", "", f"`{command}`", "",
        f"SciFact: index of {len(base):,} documents, then {len(extra):,} added in one commit and one query "
        f"answered. Best of {args.repeat} runs, each in a fresh process on a fresh copy of the index.", "",
        "| path | end to end (s) | parts (s) |", "|---|---:|---|",
        f"| Python: import + read 1,000 docs, open + add, search | {best_py[0]:.2f} | read {best_py[1]:.2f}, "
        f"open+add {best_py[2]:.2f}, search {best_py[3]:.2f} |",
        f"| CLI: `cascade add` then `cascade search` (two processes) | {best_cli[0]:.2f} | add {best_cli[1]:.2f}, "
        f"search {best_cli[2]:.2f} |", "",
        f"All runs (Python): {[round(r[0], 2) for r in python_rows]}; (CLI): {[round(r[0], 2) for r in cli_rows]}.",
        "Scores after the add equal a fresh build of all documents (checked, 3 queries, top 100).", "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"updates-{dt.date.today()}.md"
    target.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
