"""Files for an experiment: the Markdown report (rendered by :mod:`cascade.evaluation.render`)
and an effectiveness-vs-latency plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from cascade.core.errors import CascadeError, MissingDependency
from cascade.evaluation import render
from cascade.evaluation.results import ExperimentResult


def _typed(result: ExperimentResult | dict[str, Any]) -> ExperimentResult:
    return result if isinstance(result, ExperimentResult) else ExperimentResult.from_dict(result)


def markdown(result: ExperimentResult | dict[str, Any], command: str | None = None) -> str:
    """The experiment as Markdown (a result, or its ``to_dict()``)."""
    return render.markdown(_typed(result), command=command)


def check_output_file(option: str, path: Path | None) -> None:
    """CascadeError unless ``path`` can be created: its directory exists and it is not a
    directory itself (checked before a long evaluation, not after it)."""
    if path is None:
        return
    if not path.parent.is_dir():
        raise CascadeError(f"{option} {path}: no such directory {path.parent}")
    if path.is_dir():
        raise CascadeError(f"{option} {path}: is a directory")


def write_files(result: ExperimentResult, report_file: Path | None, plot_file: Path | None, *,
                command: str | None = None, say: Callable[[str], None] = lambda line: None) -> None:
    """Write the Markdown report and the plot where asked, telling ``say`` each file written; a
    file that cannot be written is a CascadeError naming it."""
    try:
        if report_file is not None:
            report_file.write_text(markdown(result, command=command), encoding="utf-8")
            say(f"wrote {report_file}")
        if plot_file is not None:
            plot_tradeoff(result, plot_file)
            say(f"wrote {plot_file}")
    except OSError as exc:
        raise CascadeError(f"could not write {exc.filename or 'a file'}: {exc.strerror or exc}") from None


def check_plotting() -> None:
    """MissingDependency unless matplotlib can be imported (checked before a long evaluation)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise MissingDependency("matplotlib", extra="plot", purpose="--plot")


def plot_tradeoff(result: ExperimentResult | dict[str, Any], path: Path, metric: str | None = None) -> None:
    """Effectiveness (first metric) against mean latency per query, one point per pipeline."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency("matplotlib", extra="plot", purpose="--plot") from None
    result = _typed(result)
    metric = metric or result.metric_names[0]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, p in enumerate(result.pipelines):
        x, y = p.mean_latency_ms, p.metrics[metric]
        ax.scatter([x], [y], s=40, label=f"{i}: {p.label[:60]}")
        ax.annotate(str(i), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=9)
    ax.set_xlabel("mean latency per query (ms)")
    ax.set_ylabel(metric)
    ax.set_title(f"{result.dataset}: {metric} vs latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
