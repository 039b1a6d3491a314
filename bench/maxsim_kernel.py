"""MaxSim's exact scoring without torch against the torch path it replaced, side by side in one run.

    python bench/maxsim_kernel.py [--queries 50] [--candidates 100] [--rounds 3]

Random unit-length float16 token rows shaped like MiniLM's on SciFact (100-256 tokens of 384
dims per candidate, 15 query tokens) are scored by :func:`cascade.rerank.maxsim.exact_scores`
(numba widening of the float16 rows, numpy products: what every MaxSim stage runs) and by the
torch path Cascade used before (rows widened by torch, products by torch, the same shape
buckets), both with one BLAS thread as the stage runs them. Reported: milliseconds per query
(the median of the rounds), the ratio, and the largest score difference. Writes
``bench/results/maxsim-kernel-<date>.md``. Needs torch for the comparison row.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from cascade.rerank.maxsim import QUERY_BUCKET, TOKEN_BUCKET, _bucket, exact_scores, one_blas_thread

RESULTS = Path(__file__).resolve().parent / "results"


def torch_scores(q: np.ndarray, documents: list[np.ndarray]) -> np.ndarray:
    """The torch path MaxSim used until this bench was written (rows widened and multiplied by torch)."""
    import torch

    m = len(q)
    qp = torch.zeros((_bucket(m, QUERY_BUCKET), q.shape[1]), dtype=torch.float32)
    qp[:m] = torch.from_numpy(q)
    buffers: dict[int, torch.Tensor] = {}
    out = []
    torch.set_num_threads(1)
    for tokens in documents:
        t = len(tokens)
        rows = _bucket(t, TOKEN_BUCKET)
        x = buffers.get(rows)
        if x is None:
            x = buffers[rows] = torch.empty((rows, q.shape[1]), dtype=torch.float32)
        x[:t] = torch.from_numpy(tokens)
        x[t:] = x[0]
        out.append((qp @ x.T)[:m].amax(dim=1).sum().item())
    return np.array(out, dtype=np.float32)


def unit(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    x = rng.standard_normal(shape)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    queries = [unit(rng, (15, 384)).astype(np.float32) for _ in range(args.queries)]
    docs = [[unit(rng, (int(rng.integers(100, 257)), 384)).astype(np.float16) for _ in range(args.candidates)]
            for _ in range(args.queries)]
    runs: dict[str, list[float]] = {"cascade (numba + numpy)": [], "torch": []}
    scores: dict[str, list[np.ndarray]] = {}
    load = os.getloadavg()[0]
    with one_blas_thread():
        for name, fn in (("cascade (numba + numpy)", exact_scores), ("torch", torch_scores)):
            fn(queries[0], docs[0])  # compile / warm up
        for _ in range(args.rounds):
            for name, fn in (("cascade (numba + numpy)", exact_scores), ("torch", torch_scores)):
                start = time.perf_counter()
                scores[name] = [fn(q, d) for q, d in zip(queries, docs)]
                runs[name].append((time.perf_counter() - start) / args.queries * 1000)
    ours, peer = (statistics.median(runs[k]) for k in runs)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(*scores.values()))
    lines = ["# MaxSim exact scoring: numba + numpy against torch", "",
             f"Command: `python bench/maxsim_kernel.py --queries {args.queries} --candidates {args.candidates} "
             f"--rounds {args.rounds}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average {load:.2f} before the run; "
             "one BLAS thread. Random unit float16 rows, 100-256 tokens x 384 per candidate, 15 query tokens.", "",
             "| path | ms per query (median) | rounds |", "|---|--:|---|"]
    lines += [f"| {k} | {statistics.median(v):.1f} | {', '.join(f'{x:.1f}' for x in v)} |" for k, v in runs.items()]
    lines += ["", f"torch time / cascade time: {peer / ours:.2f}x; largest score difference {diff:.2e}."]
    report = "\n".join(lines) + "\n"
    print(report)
    out = RESULTS / f"maxsim-kernel-{datetime.date.today().isoformat()}.md"
    out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
