"""BM25 vs BM25+RM3 (Anserini's RM3: fb_docs=10, fb_terms=10, orig_weight=0.5) with significance.

    python bench/rm3.py ../shared/datasets/scifact ../shared/datasets/vaswani

Writes bench/results/rm3-<date>.md: per dataset, the experiment report (metrics, paired
t-test and randomisation test with Holm correction, per-stage latency and attribution).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from cascade.evaluation.experiment import EvalOptions, run_experiment, strip_per_query
from cascade.evaluation.report import markdown

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--metrics", default="nDCG@10,AP,R@1000")
    args = parser.parse_args()
    command = "python bench/rm3.py " + " ".join(str(d) for d in args.datasets)
    parts = [f"# BM25 vs BM25+RM3\n\nCommand: `{command}`\n"]
    for dataset in args.datasets:
        opts = EvalOptions(metrics=args.metrics, baseline=0, skip_bad=True, use_cache=False)
        report = strip_per_query(run_experiment(dataset, ["bm25", "bm25_rm3"], opts=opts))
        text = markdown(report).replace("# ", "## ", 1)
        print(text)
        parts.append(text)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"rm3-{datetime.date.today()}.md"
    out.write_text("\n".join(parts))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
