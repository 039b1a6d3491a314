"""Encoding speed: ONNX Runtime int8 MiniLM (``minilm-onnx``) vs sentence-transformers MiniLM (``minilm``).

    python bench/onnx_encoder.py ../shared/datasets/scifact [--docs 500] [--repeat 3] [--tokens] [--profile]

Encodes the first ``--docs`` documents of the corpus (title + " " + text) with both encoders in
one process, alternating, ``--repeat`` times; reports the median docs/s of each, and the cosine
between the two encoders' dense vectors (the int8 graph is an approximation of the float model).
The load average before and after is recorded: other processes share the machine.

``--profile`` adds where each encoder spends its time, by operator (ONNX Runtime's profiler for
the int8 graph, torch.profiler for sentence-transformers), over one encoding of the same texts:
the share of the weight products (int8 in the graph, float32 ``aten::addmm``/``aten::mm`` in
torch) bounds what integer arithmetic can gain (Amdahl).

Writes bench/results/onnx-encoder-<date>.md with the command line and machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cascade.models.encoders import Encoder
from cascade.models.onnx_encoder import OnnxEncoder, cpu_session

RESULTS = Path(__file__).resolve().parent / "results"


def load_texts(dataset: Path, n: int) -> list[str]:
    texts = []
    with open(dataset / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            texts.append(f"{doc.get('title', '')} {doc.get('text', '')}".strip())
            if len(texts) == n:
                break
    return texts


def timed(encoder: Any, texts: list[str], tokens: bool) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    dense = encoder.encode(texts, tokens=tokens).dense
    return time.perf_counter() - start, dense


def run(texts: list[str], repeat: int, tokens: bool) -> dict[str, Any]:
    encoders = {"minilm (sentence-transformers, torch fp32)": Encoder("minilm"),
                "minilm-onnx (onnxruntime int8)": OnnxEncoder("minilm-onnx")}
    for enc in encoders.values():
        enc.encode(texts[:16], tokens=tokens)  # load and warm up
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    dense: dict[str, np.ndarray] = {}
    for _ in range(repeat):
        for name, enc in encoders.items():
            s, dense[name] = timed(enc, texts, tokens)
            seconds[name].append(s)
    a, b = dense.values()
    return {"seconds": seconds, "cosine": (a * b).sum(axis=1)}


INT8_PRODUCTS = {"DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger", "DynamicQuantizeLinear"}
TORCH_PRODUCTS = {"aten::addmm", "aten::mm"}


def onnx_profile(texts: list[str]) -> dict[str, float]:
    """Share of kernel time per operator type of the int8 graph, over one encoding of ``texts``."""
    encoder = OnnxEncoder("minilm-onnx")
    session = cpu_session(encoder.graph, profile_prefix=str(RESULTS / ".ort-profile"))
    encoder.__dict__["session"] = session  # the encoder's own graph, batching and pooling; a profiling session
    encoder.encode(texts, tokens=True)
    trace = Path(session.end_profiling())
    times: dict[str, float] = {}
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            times[op] = times.get(op, 0.0) + event["dur"]
    trace.unlink()
    total = sum(times.values())
    return {op: t / total for op, t in sorted(times.items(), key=lambda x: -x[1])}


def torch_profile(texts: list[str]) -> dict[str, float]:
    """Share of self CPU time per aten operator of sentence-transformers MiniLM, one encoding of ``texts``."""
    import torch

    encoder = Encoder("minilm")
    encoder.encode(texts[:16])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        encoder.encode(texts, tokens=True)
    times = {e.key: e.self_cpu_time_total for e in prof.key_averages() if e.key.startswith("aten::")}
    total = sum(times.values())
    return {op: t / total for op, t in sorted(times.items(), key=lambda x: -x[1])}


def profile_lines(name: str, shares: dict[str, float], products: set[str]) -> list[str]:
    top = ", ".join(f"{op} {100 * share:.1f}%" for op, share in list(shares.items())[:8])
    product = sum(share for op, share in shares.items() if op in products)
    fused = (" QAttention, the fused attention, holds the query/key/value product (int8) and the attention"
             " itself (float32)." if "QAttention" in shares else "")
    return [f"- {name}: weight products ({', '.join(sorted(products))}) {100 * product:.1f}% of operator time; "
            f"top operators: {top}.{fused}"]


def report(args: argparse.Namespace, texts: list[str], out: dict[str, Any], load: tuple[Any, Any]) -> str:
    cos = out["cosine"]
    lines = [f"# ONNX int8 MiniLM vs sentence-transformers MiniLM: encoding speed ({len(texts)} {args.dataset.name} docs)",
             "", f"Command: `python {' '.join(sys.argv)}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
             f"load average (1, 5, 15 min) before {load[0]}, after {load[1]} (other benchmarks were running).",
             f"Batch size 32, max length 256, texts sorted by length within batches; token vectors "
             f"{'kept' if args.tokens else 'not kept'}; median of {args.repeat} alternating runs.", "",
             "| encoder | median s | docs/s | runs (s) |", "|---|---|---|---|"]
    for name, secs in out["seconds"].items():
        med = statistics.median(secs)
        lines.append(f"| {name} | {med:.2f} | {len(texts) / med:,.0f} | {', '.join(f'{s:.2f}' for s in secs)} |")
    speedup = statistics.median(out["seconds"][next(iter(out["seconds"]))]) / statistics.median(
        list(out["seconds"].values())[1])
    lines += ["", f"Speed-up of ONNX over torch: {speedup:.2f}x.", "",
              f"Cosine between the two encoders' dense vectors: mean {cos.mean():.4f}, min {cos.min():.4f}.", ""]
    if "profile" in out:
        lines += ["## Where the time goes (one encoding, by operator)", ""]
        lines += profile_lines("onnxruntime int8", out["profile"]["onnx"], INT8_PRODUCTS)
        lines += profile_lines("torch fp32", out["profile"]["torch"], TORCH_PRODUCTS)
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tokens", action="store_true", help="also produce token vectors (as MaxSim indexing does)")
    parser.add_argument("--profile", action="store_true", help="add each encoder's time by operator")
    args = parser.parse_args()
    texts = load_texts(args.dataset, args.docs)
    before = tuple(round(x, 2) for x in os.getloadavg())
    out = run(texts, args.repeat, args.tokens)
    if args.profile:
        out["profile"] = {"onnx": onnx_profile(texts), "torch": torch_profile(texts)}
    after = tuple(round(x, 2) for x in os.getloadavg())
    text = report(args, texts, out, (before, after))
    RESULTS.mkdir(exist_ok=True)
    suffix = "-tokens" if args.tokens else ""
    path = RESULTS / f"onnx-encoder-{datetime.date.today().isoformat()}{suffix}.md"
    path.write_text(text)
    print(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
