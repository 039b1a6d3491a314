"""What checking checksums on first use costs on a 1 GB index.

`Index.open(verify=None)` re-hashes every file of an index up to 64 MiB when it opens; a bigger
index is checked file by file on first use (the first search reading postings, the first hit
read from the docstore, the first neural stage loading a representation), once per file while
it is unchanged: a digest found is remembered on disk under the cache root, so only the first
process pays. This script builds a synthetic index of about 1 GB (Zipfian text from bench/synthetic.py,
plus random dense and token vectors stored as a bi-encoder representation), then measures, each
in a fresh process (so nothing is remembered between runs), with the page cache warm (the files
were just read) and cold (dropped first, when this process may: root on Linux):

- open time;
- first-query time of each kind: BM25 top 10 with stored texts, exact dense top 10 over the
  stored vectors, MaxSim of BM25's top 100 over the stored token vectors;
- steady-state query time of each kind (median of 30 more queries);

for four settings: ``verify=False`` (no checks at all), ``None`` (the default: checked on first
use) with an empty cache directory (the first process after a write), the same with the digests
an earlier process remembered, and ``True`` (every file re-hashed at open).

    python bench/verify_cost.py --work /tmp/verify-bench     # writes bench/results/verify-cost-<date>.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

DIM = 384
REP = "rand"
# label -> (verify, whether an earlier process already checked the files with the same cache directory)
SETTINGS = {"no checks (verify=False)": (False, False),
            "checked on first use (verify=None, default), first process": (None, False),
            "checked on first use, digests remembered by an earlier process": (None, True),
            "all hashed at open (verify=True)": (True, False)}
STEADY = 30


def build(path: Path, n_docs: int, tokens_per_doc: int, seed: int) -> None:
    """The synthetic index with a random bi-encoder representation (dense + token vectors)."""
    import numpy as np
    import synthetic

    from cascade.core.types import Doc
    from cascade.index import representations as reps
    from cascade.index.index import Index

    docs, _ = synthetic.generate(n_docs, n_queries=0, seed=seed)
    idx = Index.build((Doc(doc_id, text) for doc_id, text in docs), path, overwrite=True)
    rng = np.random.default_rng(seed)

    def vectors(seg: Any) -> dict[str, Any]:
        dense = rng.standard_normal((seg.n_docs, DIM), dtype=np.float32)
        dense /= np.linalg.norm(dense, axis=1, keepdims=True)
        lengths = rng.integers(1, 2 * tokens_per_doc, size=seg.n_docs)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        tokens = rng.standard_normal((int(offsets[-1]), DIM), dtype=np.float32)
        tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
        return {"dense": dense, "tok_offsets": offsets, "tok_vectors": tokens.astype(np.float16)}

    reps.add_representation(idx, REP, {"kind": "biencoder", "model": "random", "tokens": True}, vectors)


def measure(path: Path, verify: bool | None, seed: int) -> dict[str, Any]:
    """One fresh process's figures (called in a child: see main)."""
    import numpy as np
    import synthetic

    from cascade.index import representations as reps
    from cascade.index.index import Index
    from cascade.rerank.maxsim import exact_scores
    from cascade.retrieve import impact_search
    from cascade.retrieve.bm25 import BM25
    from cascade.retrieve.dense_exact import exact_search

    _, queries = synthetic.generate(0, n_queries=STEADY + 1, seed=seed + 1)
    texts = [text for _, text in queries]
    rng = np.random.default_rng(seed)
    qvecs = rng.standard_normal((STEADY + 1, DIM), dtype=np.float32)
    qvecs /= np.linalg.norm(qvecs, axis=1, keepdims=True)
    qtoks = rng.standard_normal((STEADY + 1, 8, DIM), dtype=np.float32)
    qtoks /= np.linalg.norm(qtoks, axis=2, keepdims=True)
    # what is not measured: loading the search kernels and torch (MaxSim's products), before the clock
    impact_search.warm_up()
    exact_scores(qtoks[0], [qtoks[0]])

    start = time.perf_counter()
    idx = Index.open(path, verify=verify)
    out: dict[str, Any] = {"open": time.perf_counter() - start}
    bm25 = BM25(idx)
    seg = idx.segments[0]

    def bm25_query(i: int) -> Any:
        return [(h.id, h.text) for h in bm25.search(texts[i], k=10)]

    def dense_query(i: int) -> Any:
        return exact_search(reps.load(seg, REP, "dense"), qvecs[i:i + 1], 10)

    def maxsim_query(i: int) -> Any:
        nums = bm25.search_batch([texts[i]], k=100).doc
        offsets, tokens = reps.load(seg, REP, "tok_offsets"), reps.load(seg, REP, "tok_vectors")
        docs = [np.asarray(tokens[offsets[n]:offsets[n + 1]], dtype=np.float32) for n in nums.tolist()]
        return exact_scores(qtoks[i], docs)

    for kind, query in (("bm25", bm25_query), ("dense", dense_query), ("maxsim", maxsim_query)):
        start = time.perf_counter()
        query(0)
        out[f"first {kind}"] = time.perf_counter() - start
        times = []
        for i in range(1, STEADY + 1):
            start = time.perf_counter()
            query(i)
            times.append(time.perf_counter() - start)
        out[f"steady {kind}"] = statistics.median(times)
    return out


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def index_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "measure":
        verify = json.loads(sys.argv[3])
        print(json.dumps(measure(Path(sys.argv[2]), verify, int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/verify-bench"))
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--tokens-per-doc", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per setting and cache state")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    path = args.work / "verify.idx"
    if not (path / "MANIFEST.json").exists():
        start = time.perf_counter()
        build(path, args.docs, args.tokens_per_doc, args.seed)
        print(f"built {path} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    size = index_size(path)
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    cold_possible = drop_page_cache()
    states = ["warm", "cold"] if cold_possible else ["warm"]
    for _ in range(args.rounds):
        for state in states:
            for label, (verify, remembered) in SETTINGS.items():
                cache = Path(tempfile.mkdtemp(prefix="verify-cost-cache-"))
                env = {**os.environ, "CASCADE_CACHE_DIR": str(cache)}
                if remembered:  # an earlier process checks the files and remembers their digests
                    subprocess.run([sys.executable, __file__, "measure", str(path), json.dumps(verify),
                                    str(args.seed)], capture_output=True, text=True, check=True, env=env)
                if state == "cold":
                    drop_page_cache()
                else:  # read every file once, so it is in the page cache
                    for p in path.rglob("*"):
                        if p.is_file():
                            p.read_bytes()
                got = subprocess.run([sys.executable, __file__, "measure", str(path), json.dumps(verify),
                                      str(args.seed)], capture_output=True, text=True, check=True, env=env)
                shutil.rmtree(cache, ignore_errors=True)
                rows.setdefault((state, label), []).append(json.loads(got.stdout.strip().splitlines()[-1]))
    keys = ["open", "first bm25", "steady bm25", "first dense", "steady dense", "first maxsim", "steady maxsim"]
    lines = [f"# Checksums on first use: what they cost on a {size / 1e9:.2f} GB index, {dt.date.today()}", "",
             f"`python {' '.join(sys.argv)}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
             f"{platform.python_version()}. Index: {args.docs:,} synthetic documents (bench/synthetic.py) with a "
             f"random bi-encoder representation ({DIM}-d float32 dense vectors, float16 token vectors), "
             f"{size / 1e6:,.0f} MB in all. Each row: the median of {args.rounds} fresh processes; times in ms. "
             "Page cache warm: every file read just before; cold: dropped just before (root only).", "",
             "| page cache | setting | " + " | ".join(keys) + " |", "|---|---|" + "---:|" * len(keys)]
    for (state, label), runs in rows.items():
        cells = [f"{statistics.median(r[k] for r in runs) * 1000:,.1f}" for k in keys]
        lines.append(f"| {state} | {label} | " + " | ".join(cells) + " |")
    files = {p.name: p.stat().st_size for p in path.rglob("*") if p.is_file() and p.stat().st_size > 20e6}
    lines += ["", "Files above 20 MB: " + ", ".join(f"{n} {s / 1e6:,.0f} MB" for n, s in sorted(files.items())), ""]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"verify-cost-{dt.date.today()}.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
