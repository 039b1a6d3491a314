"""Readers and a writer at once: N reader processes open, refresh and search an index while a
writer process adds, updates, deletes and merges for S seconds. Afterwards every answer a
reader got is compared with a fresh build of the live documents of the generation it came from:
0 errors and 0 differences are the pass mark.

The writer logs the live documents after each of its operations (each is one commit, or a few
document-preserving merge commits), so the live documents of every generation are known. Each
reader records, per search, the generation of the snapshot it searched, the query, every hit's
id and BM25 score (k above the collection size, so ties cannot hide a document) and the stored
text of the first hits; the check rebuilds each generation seen from scratch and compares scores
bit for bit and texts exactly.

    python bench/concurrency.py --seconds 60 --readers 4   # writes bench/results/concurrency-<date>.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

WORDS = [f"w{i}" for i in range(200)]
QUERIES = ["w1 w2 w3", "w10 w20", "w7", "w100 w150 w199 w3", "w42 w42 w5", "w0 w1"]
K = 10_000  # above any collection size here: every matching document comes back
FIELDS = {"year": "int"}


def _doc(rng: random.Random, doc_id: str) -> dict[str, Any]:
    return {"id": doc_id, "text": " ".join(rng.choices(WORDS, k=rng.randint(3, 25))),
            "meta": {"year": rng.randint(2000, 2019)}}


def _docs(records: list[dict[str, Any]]) -> list[Any]:
    from cascade.core.types import Doc

    return [Doc(r["id"], r["text"], meta=r["meta"]) for r in records]


def build(path: Path, seed: int, n: int = 120) -> dict[str, Any]:
    from cascade.index.index import Index

    rng = random.Random(seed)
    records = [_doc(rng, f"d{i}") for i in range(n)]
    Index.build(_docs(records), path, filter_fields=FIELDS).close()
    return {r["id"]: r for r in records}


def writer(path: Path, seconds: float, seed: int, log: Path, pause: float = 0.02) -> None:
    """Add, update, delete and merge for ``seconds``; log {generation: live records}."""
    from cascade.index.index import Index
    from cascade.index.merge import TieredMergePolicy

    rng = random.Random(seed)
    idx = Index.open(path)
    live = {d.id: {"id": d.id, "text": d.text, "meta": d.meta} for d in idx}
    generations = {idx.generation: dict(live)}
    next_id = 100_000
    ops: Counter[str] = Counter()
    end = time.time() + seconds
    while time.time() < end:
        r = rng.random()
        if r < 0.3 and len(live) < 400 or len(live) < 40:
            batch = [_doc(rng, f"n{next_id + i}") for i in range(rng.randint(1, 12))]
            next_id += len(batch)
            idx.add(_docs(batch), merge=False)
            live.update((d["id"], d) for d in batch)
            ops["add"] += 1
        elif r < 0.5:
            batch = [_doc(rng, doc_id) for doc_id in rng.sample(sorted(live), rng.randint(1, 5))]
            idx.update(_docs(batch), merge=False)
            live.update((d["id"], d) for d in batch)
            ops["update"] += 1
        elif r < 0.75:
            gone = rng.sample(sorted(live), rng.randint(1, 10))
            idx.delete(gone)
            for doc_id in gone:
                del live[doc_id]
            ops["delete"] += 1
        elif r < 0.9:
            idx.optimize(policy=TieredMergePolicy(factor=3))
            ops["merge (policy)"] += 1
        else:
            idx.optimize()
            ops["merge (all)"] += 1
        now = idx.refresh()
        for generation in range(max(generations) + 1, now.generation + 1):
            generations[generation] = dict(live)  # one doc-changing commit per op, then merges
        idx = now
        time.sleep(pause)
    log.write_text(json.dumps({"generations": generations, "ops": ops}))


def reader(path: Path, seconds: float, seed: int, out: Path) -> None:
    """Open, refresh and search for ``seconds``; record every answer with its generation."""
    from cascade.index.index import Index
    from cascade.retrieve.bm25 import BM25

    rng = random.Random(seed)
    idx = None
    answers, errors = [], []
    counts: Counter[str] = Counter()
    end = time.time() + seconds
    while time.time() < end:
        try:
            if idx is None or rng.random() < 0.4:
                idx = Index.open(path)
                counts["opens"] += 1
            else:
                idx = idx.refresh()
                counts["refreshes"] += 1
            bm25 = BM25(idx)
            for q in rng.sample(range(len(QUERIES)), 2):
                hits = bm25.search(QUERIES[q], k=K)
                answers.append([idx.generation, q, [[h.id, h.score] for h in hits],
                                [[h.id, h.text] for h in hits[:3]]])
                counts["searches"] += 1
        except Exception as err:  # noqa: BLE001  (every error counts against the run)
            errors.append(f"{type(err).__name__}: {err}")
            idx = None
    out.write_text(json.dumps({"answers": answers, "errors": errors, "counts": counts}))


def check(workdir: Path, generations: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Compare every answer with a fresh build of its generation's live documents."""
    from cascade.index.index import Index
    from cascade.retrieve.bm25 import BM25

    by_generation: dict[int, list[Any]] = {}
    for result in results:
        for answer in result["answers"]:
            by_generation.setdefault(answer[0], []).append(answer)
    differences = []
    for generation, answers in sorted(by_generation.items()):
        live = generations.get(str(generation))
        if live is None:
            differences.append(f"generation {generation}: not in the writer's log")
            continue
        fresh = Index.build(_docs(list(live.values())), workdir / "fresh", filter_fields=FIELDS, overwrite=True)
        bm25 = BM25(fresh)
        want = {q: {h.id: h.score for h in bm25.search(text, k=K)} for q, text in enumerate(QUERIES)}
        for _, q, hits, texts in answers:
            if {doc_id: score for doc_id, score in hits} != want[q]:
                differences.append(f"generation {generation}, query {QUERIES[q]!r}: scores differ from a fresh build")
            for doc_id, text in texts:
                if live[doc_id]["text"] != text:
                    differences.append(f"generation {generation}: stored text of {doc_id} differs")
        fresh.close()
    return {"generations_checked": len(by_generation), "answers_checked": sum(map(len, by_generation.values())),
            "differences": differences}


def run(workdir: Path, seconds: float, readers: int = 4, seed: int = 0) -> dict[str, Any]:
    """The whole experiment in ``workdir``; returns its counts (errors and differences listed)."""
    path = workdir / "live.idx"
    build(path, seed)
    script, python = str(Path(__file__).resolve()), sys.executable
    log = workdir / "writer.json"
    procs = [subprocess.Popen([python, script, "reader", str(path), str(seconds), str(seed + 1 + i),
                               str(workdir / f"reader-{i}.json")]) for i in range(readers)]
    time.sleep(min(2.0, seconds / 5))  # let the readers start (imports) before the writer commits
    procs.append(subprocess.Popen([python, script, "writer", str(path), str(seconds), str(seed), str(log)]))
    codes = [p.wait(timeout=seconds * 4 + 120) for p in procs]
    if any(codes):
        raise AssertionError(f"a process failed: exit codes {codes}")
    written = json.loads(log.read_text())
    results = [json.loads((workdir / f"reader-{i}.json").read_text()) for i in range(readers)]
    checked = check(workdir, written["generations"], results)
    counts: Counter[str] = Counter()
    for result in results:
        counts.update(result["counts"])
    return {"seconds": seconds, "readers": readers, "writer_ops": written["ops"],
            "commits": max(map(int, written["generations"])) - min(map(int, written["generations"])),
            "reader_counts": dict(counts), "errors": [e for r in results for e in r["errors"]], **checked}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("reader", "writer"):
        role, path, seconds, seed, out = sys.argv[1:6]
        (reader if role == "reader" else writer)(Path(path), float(seconds), int(seed), Path(out))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp), args.seconds, args.readers, args.seed)
    command = "python " + " ".join(sys.argv)
    text = (f"# Readers and a writer at once, {dt.date.today()}\n\n`{command}`\n\n"
            f"- {result['readers']} reader processes for {result['seconds']:.0f} s: {result['reader_counts']}\n"
            f"- writer: {result['commits']} commits; operations {result['writer_ops']}\n"
            f"- answers compared with a fresh build of their generation: {result['answers_checked']} "
            f"({result['generations_checked']} generations)\n"
            f"- errors: {len(result['errors'])}; answers differing from the fresh build: "
            f"{len(result['differences'])}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"concurrency-{dt.date.today()}.md").write_text(text, encoding="utf-8")
    print(text)
    if result["errors"] or result["differences"]:
        print("\n".join((result["errors"] + result["differences"])[:20]))
        sys.exit(1)


if __name__ == "__main__":
    main()
