"""Render an experiment: a Markdown report and an effectiveness-vs-latency plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cascade.core.errors import MissingDependency

SIGNIFICANT = "†"  # both tests significant after Holm correction


def significant(result: dict[str, Any], metric: str) -> bool:
    sig = result.get("significance")
    if not isinstance(sig, dict) or metric not in sig:
        return False
    return bool(sig[metric].get("t_test_significant") and sig[metric].get("randomization_significant"))


def markdown(report: dict[str, Any], command: str | None = None) -> str:
    """The experiment as Markdown: a results table, then one stage table per pipeline."""
    results = report["results"]
    metrics = list(results[0]["metrics"]) if results else []
    lines = [f"# {report['dataset']}: {report['queries']} queries", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += ["| # | pipeline | " + " | ".join(metrics) + " | mean ms/query |",
              "|---|---|" + "---|" * len(metrics) + "---|"]
    for i, r in enumerate(results):
        cells = [f"{r['metrics'][m]:.4f}{SIGNIFICANT if significant(r, m) else ''}" for m in metrics]
        lines.append(f"| {i} | `{r['pipeline']}` | " + " | ".join(cells) + f" | {mean_latency_ms(r):.2f} |")
    if any(isinstance(r.get("significance"), dict) for r in results):
        lines += ["", f"{SIGNIFICANT}: paired t-test and randomisation test both p < 0.05 against the baseline "
                      "after Holm-Bonferroni correction across pipelines."]
        lines += ["", "| pipeline | metric | t-test p (Holm) | randomisation p (Holm) |", "|---|---|---|---|"]
        for r in results:
            if isinstance(r.get("significance"), dict):
                for m, s in r["significance"].items():
                    lines.append(f"| `{r['pipeline']}` | {m} | {s['t_test']:.4g} ({s['t_test_holm']:.4g}) | "
                                 f"{s['randomization']:.4g} ({s['randomization_holm']:.4g}) |")
    for r in results:
        lines += ["", f"## `{r['pipeline']}`", "",
                  "| stage | candidates/query | recall at cutoff | oracle | ms/query mean | p50 | p95 | cached |",
                  "|---|---|---|---|---|---|---|---|"]
        for s in r["stages"]:
            recall = ", ".join(f"{k} {v:.4f}" for k, v in s.get("recall", {}).items())
            oracle = ", ".join(f"{k} {v:.4f}" for k, v in s.get("oracle", {}).items())
            lat = s["latency_ms"]
            lines.append(f"| `{s['stage']}` | {s['candidates']:.1f} | {recall} | {oracle} | {lat['mean']:.3f} | "
                         f"{lat['p50']:.3f} | {lat['p95']:.3f} | {'yes' if s['cached'] else ''} |")
    return "\n".join(lines) + "\n"


def mean_latency_ms(result: dict[str, Any]) -> float:
    return float(sum(s["latency_ms"]["mean"] for s in result["stages"]))


def plot_tradeoff(report: dict[str, Any], path: Path, metric: str | None = None) -> None:
    """Effectiveness (first metric) against mean latency per query, one point per pipeline."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency("matplotlib", extra="plot", purpose="--plot") from None
    results = report["results"]
    metric = metric or next(iter(results[0]["metrics"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, r in enumerate(results):
        x, y = mean_latency_ms(r), r["metrics"][metric]
        ax.scatter([x], [y], s=40, label=f"{i}: {r['pipeline'][:60]}")
        ax.annotate(str(i), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=9)
    ax.set_xlabel("mean latency per query (ms)")
    ax.set_ylabel(metric)
    ax.set_title(f"{report['dataset']}: {metric} vs latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
