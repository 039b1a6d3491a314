"""Load test of `cascade serve` on loopback: N concurrent clients search SciFact with BM25 and a
neural pipeline while a writer adds documents; compares with the library called in-process.

    python bench/server_load.py ../shared/datasets/scifact --clients 50 --seconds 30 --add 1000 \
        [--neural "bm25 % 100 >> dense_rerank"] [--out bench/results/server-load-DATE.md]

The index is built fresh in a temporary directory; with --neural it is encoded first
(`cascade encode`), so adds encode their documents too. Clients are asyncio tasks on one
httpx.AsyncClient each (no connection sharing); 429s are counted apart (deliberate refusals).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import cascade

KEY = "bench-key-0123456789abcdef"
HEALTH = "(GET /v1/health: what the clients and HTTP alone reach)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(index: Path, pipelines: list[str], concurrency: int, queue: int) -> tuple[subprocess.Popen, str]:  # type: ignore[type-arg]
    from cascade.server.config import Limits, ServerConfig

    config = ServerConfig(index, api_key=KEY, pipelines=tuple(pipelines),
                          limits=Limits(concurrency=concurrency, queue=queue, timeout_s=60))
    port = free_port()
    env = {**os.environ, "CASCADE_SERVER_CONFIG": config.to_env()}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "cascade.server.app:app_from_env", "--factory",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                             "--backlog", "2048"], env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


async def client(url: str, queries: list[str], pipeline: str | None, until: float, out: dict[str, Any]) -> None:
    path = "/v1/health" if pipeline == HEALTH else "/v1/search"
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        while time.monotonic() < until:
            params: dict[str, Any] = {"q": random.choice(queries), "k": 10}
            if pipeline:
                params["pipeline"] = pipeline
            start = time.perf_counter()
            try:
                r = await c.get(path, params=params)
                status = r.status_code
            except httpx.HTTPError as exc:
                status = f"{type(exc).__name__}"
            out["lat"].append(time.perf_counter() - start)
            out["status"][status] = out["status"].get(status, 0) + 1
            if status == 429:
                await asyncio.sleep(float(r.headers.get("retry-after", "1")) * random.random())


def writer(url: str, docs: list[dict[str, Any]], batch: int, report: dict[str, Any]) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=600) as c:
        start = time.perf_counter()
        for i in range(0, len(docs), batch):
            r = c.post("/v1/docs", params={"mode": "add"}, json=docs[i:i + batch])
            report.setdefault("status", []).append(r.status_code)
        report["seconds"] = time.perf_counter() - start


def load(url: str, queries: list[str], pipeline: str | None, clients: int, seconds: float,
         new_docs: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    out: dict[str, Any] = {"lat": [], "status": {}}
    wrote: dict[str, Any] = {}
    w = threading.Thread(target=writer, args=(url, new_docs, batch, wrote)) if new_docs else None
    until = time.monotonic() + seconds

    async def main() -> None:
        await asyncio.gather(*(client(url, queries, pipeline, until, out) for _ in range(clients)))

    start = time.perf_counter()
    if w:
        w.start()
    asyncio.run(main())
    wall = time.perf_counter() - start
    if w:
        w.join()
    lat = np.array(out["lat"]) * 1000
    ok = out["status"].get(200, 0)
    return {"pipeline": pipeline or "bm25", "requests": len(lat), "ok": ok, "rps": ok / wall,
            "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
            "p99": float(np.percentile(lat, 99)), "status": out["status"], "writes": wrote}


def in_process(index: Path, queries: list[str], pipeline: str | None, seconds: float) -> float:
    """Single-query searches per second calling the library directly (one thread)."""
    idx = cascade.Index.open(index)
    node = (cascade.parse(pipeline, index=idx) % 10) if pipeline else cascade.BM25(idx)
    run = (lambda q: node.search(q)) if pipeline else (lambda q: node.search(q, k=10))
    run(queries[0])
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(queries[n % len(queries)])
        n += 1
    return n / (time.perf_counter() - start)


def in_engine(index: Path, queries: list[str], pipeline: str | None, seconds: float) -> float:
    """Searches per second through the server's Engine without HTTP (snippets included, one thread)."""
    from cascade.server.config import ServerConfig
    from cascade.server.engine import Engine, SearchRequest

    engine = Engine(ServerConfig(index))
    engine.search(SearchRequest([cascade.Query("0", queries[0])], pipeline=pipeline))
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        engine.search(SearchRequest([cascade.Query("0", queries[n % len(queries)])], pipeline=pipeline))
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--add", type=int, default=1000, help="documents the writer adds during the runs")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--neural", default=None, help='a neural pipeline, e.g. "bm25 %% 100 >> dense_rerank"')
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--queue", type=int, default=256)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--prepared", type=Path, default=None,
                    help="a directory keeping the base index (and its encodings with --neural) between runs: "
                         "built there on the first run, copied from there on later ones, so a rerun does not "
                         "encode the corpus again")
    ap.add_argument("--prepare-only", action="store_true", help="fill --prepared and stop (no load run)")
    args = ap.parse_args()
    if args.prepare_only and args.prepared is None:
        ap.error("--prepare-only needs --prepared DIR")

    ds = cascade.BeirDataset(args.dataset)
    corpus = list(ds.corpus())
    held = corpus[-args.add:] if args.add else []
    base = corpus[:len(corpus) - len(held)]
    queries = [q.text for q in ds.queries()]
    tmp = Path(tempfile.mkdtemp(prefix="server-load-"))
    index = tmp / "scifact.idx"
    prepare_index(base, index, args.neural is not None, args.prepared)
    if args.prepare_only:
        shutil.rmtree(tmp)
        return
    new_docs = [{"id": d.id, "title": d.title, "text": d.text} for d in held]
    rows = []
    proc, url = start(index, ["bm25"] + ([args.neural] if args.neural else []), args.concurrency, args.queue)
    try:
        httpx.get(url + "/v1/search", params={"q": "warm up"}, timeout=300)
        calibration = load(url, queries, HEALTH, args.clients, min(args.seconds, 10), [], args.batch)
        half = len(new_docs) // 2 if args.neural else len(new_docs)
        rows.append(load(url, queries, None, args.clients, args.seconds, new_docs[:half], args.batch))
        if args.neural:
            httpx.get(url + "/v1/search", params={"q": "warm up", "pipeline": args.neural}, timeout=600)
            rows.append(load(url, queries, args.neural, args.clients, args.seconds, new_docs[half:], args.batch))
        final = httpx.get(url + "/v1/info").json()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    local = {r["pipeline"]: in_process(index, queries, None if r["pipeline"] == "bm25" else r["pipeline"], 10)
             for r in rows}
    engine = {r["pipeline"]: in_engine(index, queries, None if r["pipeline"] == "bm25" else r["pipeline"], 10)
              for r in rows}
    local[HEALTH] = engine[HEALTH] = float("nan")
    report = render(args, [calibration] + rows, local, engine, final, len(base))
    print(report)
    if args.out:
        args.out.write_text(report)


def prepare_index(base: list[cascade.Doc], index: Path, neural: bool, prepared: Path | None) -> None:
    """The base index at ``index`` (encoded for ``neural``), copied from ``prepared`` when an
    earlier run left it there with the same documents."""
    kept = None if prepared is None else prepared / f"base-{len(base)}{'-minilm' if neural else ''}.idx"
    if kept is not None and kept.is_dir():
        shutil.copytree(kept, index)
        return
    cascade.Index.build(base, index)
    if neural:
        subprocess.run([sys.executable, "-m", "cascade.cli", "encode", str(index), "--model", "minilm"], check=True)
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(index, kept)


def rate(qps: float) -> str:
    return "–" if qps != qps else f"{qps:.0f}"  # NaN: not measured (the health row)


def render(args: argparse.Namespace, rows: list[dict[str, Any]], local: dict[str, float], engine: dict[str, float],
           final: dict[str, Any], n_base: int) -> str:
    cmd = "python bench/server_load.py " + shlex.join(sys.argv[1:])
    lines = [f"# Server load test, {date.today()}", "", f"Command: `{cmd}`", "",
             f"SciFact: {n_base:,} documents indexed, {args.add:,} added by one writer during the runs (split between "
             f"them when there are two; the writes column) "
             f"in batches of {args.batch} (final: {final['documents']:,} documents, generation "
             f"{final['generation']}); {args.clients} concurrent clients on loopback for {args.seconds:g} s "
             f"per pipeline; server: one uvicorn process, {args.concurrency} search threads, queue {args.queue}. "
             f"Machine: {os.cpu_count()} CPUs, shared.", "",
             "| pipeline | requests | ok | req/s | p50 ms | p95 ms | p99 ms | other statuses | writes | "
             "library q/s (1 thread) | engine q/s, no HTTP (1 thread) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        other = {k: v for k, v in r["status"].items() if k != 200} or "none"
        writes = r["writes"].get("status")
        wrote = f"{len(writes)} commits, all {set(writes)}, {r['writes']['seconds']:.1f} s" if writes else "–"
        lines.append(f"| {r['pipeline'] if r['pipeline'] == HEALTH else '`' + r['pipeline'] + '`'} | {r['requests']:,} | {r['ok']:,} | {r['rps']:.0f} | {r['p50']:.1f} | "
                     f"{r['p95']:.1f} | {r['p99']:.1f} | {other} | {wrote} | {rate(local[r['pipeline']])} | "
                     f"{rate(engine[r['pipeline']])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
