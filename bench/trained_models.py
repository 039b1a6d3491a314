"""Models trained by ``cascade train`` against today's untrained pipelines, on held-out test queries.

    python bench/trained_models.py DATASET --training DIR [--model KIND=DIR ...] [--pipeline P ...]
        [--depth 100] [--limit-queries N] [--out FILE]

Each ``--model`` is a directory written by ``cascade train cross-encoder | late-interaction |
dense`` (its ``cascade-training.json`` records the command's settings, the training and dev
query ids, the wall time and the dev check per epoch). Before any evaluation the script asserts
that no training or dev query id is a test query of DATASET (held-out evaluation only).

Pipelines, through :func:`cascade.evaluation.experiment.run_experiment` (the path ``cascade
eval`` takes: the eval index cache, stored encodings, one executor so shared prefixes run once):
``bm25``, the untrained ``bm25 % DEPTH >> maxsim`` (MiniLM; the significance baseline), then per
model ``bm25 % DEPTH >> cross_encoder(model=DIR)`` / ``maxsim(model=DIR)`` / ``dense_rerank(model=DIR)``,
then any ``--pipeline``. Reported: nDCG@10, R@100, the paired t-test and randomisation test
against the baseline (Holm-corrected), ms per query of each stage, and nDCG@10 per
interpolation / extrapolation split of the test queries by similarity to the training queries
(``cascade eval --split-by-training``).

``--on dev`` evaluates the same pipelines on the models' dev queries instead (the queries each
model held out of training and checked per epoch; every model must hold out the same ones, and
none may be a training query of another). That is where a fusion's members or a depth are
chosen; the test queries then score the choice once.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

from cascade.data.beir import BeirDataset
from cascade.evaluation.experiment import EvalOptions, run_experiment
from cascade.evaluation.judge import write_qrels
from cascade.train.examples import check_disjoint, collection_index, judged_test_queries, read_training_set
from cascade.train.run import read_record

HERE = Path(__file__).resolve().parent
STAGES = {"cross-encoder": "cross_encoder", "late-interaction": "maxsim", "dense": "dense_rerank"}


def pipelines(models: list[tuple[str, Path]], depth: int, extra: list[str]) -> list[str]:
    out = ["bm25", f"bm25 % {depth} >> maxsim"]
    out += [f"bm25 % {depth} >> {STAGES[kind]}(model={path})" for kind, path in models]
    return out + extra


def parse_model(text: str) -> tuple[str, Path]:
    kind, _, path = text.partition("=")
    if kind not in STAGES or not path:
        raise SystemExit(f"--model {text!r}: expected KIND=DIR with KIND one of {', '.join(STAGES)}")
    return kind, Path(path)


def model_lines(models: list[tuple[str, Path]], test_ids: list[str]) -> list[str]:
    lines = ["| model | kind | base | training queries (dev) | examples | steps | train s | dev nDCG@10 by epoch |",
             "|---|---|---|---|---:|---:|---:|---|"]
    for kind, path in models:
        record = read_record(path)
        if record is None:
            raise SystemExit(f"{path} has no cascade-training.json: train it with `cascade train {kind}`")
        check_disjoint([*record["train_query_ids"], *record["dev_query_ids"]], test_ids)  # held out, asserted
        dev = ", ".join(f"{e}: {v:.4f}" for e, v in record["dev"])
        cfg = record["config"]
        lines.append(f"| `{path}` | {record['kind']} | {cfg['base']} | {len(record['train_query_ids'])} "
                     f"({len(record['dev_query_ids'])}) | {record['examples']} | {record['steps']} | "
                     f"{record['seconds']:.0f} | {dev} |")
        settings = ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "base")
        lines.append(f"| | settings: {settings} | | | | | | |")
    return lines


def shared_dev_ids(models: list[tuple[str, Path]]) -> list[str]:
    """The dev query ids every model held out, checked to be one set and never trained on."""
    records = [read_record(path) or {} for _, path in models]
    if not records:
        raise SystemExit("--on dev needs at least one --model (the dev queries are those the models held out)")
    dev = sorted(records[0].get("dev_query_ids", []))
    for (_, path), record in zip(models, records):
        if sorted(record.get("dev_query_ids", [])) != dev:
            raise SystemExit(f"{path} held out other dev queries than {models[0][1]}: no common dev split")
        check_disjoint(record.get("train_query_ids", []), dev, what="dev")
    return dev


def dev_dataset(dataset: Path, training: Path, dev_ids: list[str], folder: Path) -> Path:
    """A BEIR folder in ``folder``: the collection's corpus (linked) with the dev queries and judgments."""
    data = read_training_set(training).subset(dev_ids)
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").symlink_to((dataset / "corpus.jsonl").resolve())
    with open(folder / "queries.jsonl", "w") as out:
        for qid, text in data.queries.items():
            out.write(json.dumps({"_id": qid, "text": text}) + "\n")
    write_qrels(data.qrels, folder / "qrels" / "test.tsv")
    return folder


def result_lines(result: object) -> list[str]:
    lines = ["| pipeline | nDCG@10 | Δ vs baseline | R@100 | t-test p (Holm) | randomisation p (Holm) | "
             "nDCG@10 interpolation / extrapolation | ms/query by stage |", "|---|---:|---:|---:|---|---|---|---|"]
    base = next(p for p in result.pipelines if p.is_baseline)  # type: ignore[attr-defined]
    for p in result.pipelines:  # type: ignore[attr-defined]
        sig = p.significance.get("nDCG@10")
        tests = "baseline | – | " if p.is_baseline else "– | – | " if sig is None else \
            f"{sig.t_test:.3g} ({sig.t_test_holm:.3g}) | {sig.randomization:.3g} ({sig.randomization_holm:.3g}) | "
        splits = " / ".join(f"{p.splits.get(s, {}).get('nDCG@10', float('nan')):.4f}"
                            for s in ("interpolation", "extrapolation")) if p.splits else "–"
        stages = "; ".join(f"{s.stage.split('(')[0]} {s.latency.mean_ms:.1f}" for s in p.stages)
        delta = p.metrics["nDCG@10"] - base.metrics["nDCG@10"]
        lines.append(f"| `{p.label}` | {p.metrics['nDCG@10']:.4f} | {delta:+.4f} | {p.metrics['R@100']:.4f} | "
                     f"{tests}{splits} | {stages} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--training", type=Path, required=True, help="the training folder the models learned from")
    parser.add_argument("--model", action="append", default=[], type=parse_model, help="KIND=DIR (repeatable)")
    parser.add_argument("--pipeline", action="append", default=[], help="more pipelines (repeatable)")
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--permutations", type=int, default=10_000)
    parser.add_argument("--on", choices=("test", "dev"), default="test",
                        help="the dataset's test queries, or the dev queries the models held out (for choosing)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    today = datetime.date.today().isoformat()
    name = BeirDataset(args.dataset).name
    out = args.out or HERE / "results" / f"trained-{name}{'-dev' if args.on == 'dev' else ''}-{today}.md"
    test_ids = judged_test_queries(args.dataset)
    models = model_lines(args.model, test_ids)
    start = time.perf_counter()
    index = collection_index(args.dataset)
    with tempfile.TemporaryDirectory(prefix="cascade-dev-") as scratch:
        evaluated = args.dataset
        held_out = "Training and dev query ids of every model checked disjoint from the test queries (asserted)."
        opts = EvalOptions(metrics="nDCG@10,R@100", baseline=1, permutations=args.permutations,
                           split_by_training=args.training)
        if args.on == "dev":
            dev_ids = shared_dev_ids(args.model)
            evaluated = dev_dataset(args.dataset, args.training, dev_ids, Path(scratch) / name)
            held_out += f" Evaluated on the {len(dev_ids)} dev queries every model held out of training (checked)."
            opts = EvalOptions(metrics="nDCG@10,R@100", baseline=1, permutations=args.permutations)
        result = run_experiment(evaluated, pipelines(args.model, args.depth, args.pipeline), index_dir=index.path,
                                opts=opts)
    lines = [f"# Trained models on {name} {args.on} ({result.queries} queries), {today}", "",
             f"Command: `python bench/trained_models.py {shlex.join(sys.argv[1:] if argv is None else argv)}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared), Python "
             f"{platform.python_version()}. Evaluation {time.perf_counter() - start:.0f} s (stage outputs may come "
             "from the stage cache of an earlier run; ms/query are those of the run that computed them).", "",
             held_out, "", *models, "", *result_lines(result), ""]
    if args.on == "test":
        lines += [f"Interpolation / extrapolation: test queries at or above the median TF-IDF similarity to the "
                  f"training queries of `{args.training}` ({result.split}).", ""]
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
