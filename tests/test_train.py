"""cascade train: examples, dev split, negatives, teacher margins, and each trainer on a tiny
random model for a few steps (the loss falls, the model directory loads in its stage)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

import cascade
from cascade.core.errors import CascadeError
from cascade.train.examples import (
    Split,
    TrainingSet,
    balanced_sample,
    check_disjoint,
    mine_examples,
    read_training_set,
    split_dev,
    triplet_rows,
)
from cascade.train.run import RECORD, TrainConfig, read_record, target_dir
from cascade.train.teacher import teacher_margins

TOPICS = {
    "cats": "cats purr in the garden at night",
    "dogs": "dogs bark loudly in the garden",
    "fish": "fish swim in the water",
    "birds": "birds fly in the sky at day",
    "moon": "the moon in the night sky",
    "sun": "the sun in the day sky",
    "mice": "mice eat cheese at night",
    "cheese": "cats eat mice and fish",
}
QUERIES = {"q1": ("cats purr", "cats"), "q2": ("dogs bark", "dogs"), "q3": ("fish swim water", "fish"),
           "q4": ("birds fly", "birds"), "q5": ("moon night", "moon"), "q6": ("sun day", "sun"),
           "q7": ("mice eat cheese", "mice"), "q8": ("cats eat fish", "cheese")}


def write_training(root: Path, queries: dict[str, tuple[str, str]], dev: dict[str, tuple[str, str]] | None = None
                   ) -> Path:
    (root / "qrels").mkdir(parents=True)
    everything = {**queries, **(dev or {})}
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n"
                                                for q, (t, _) in everything.items()))
    for name, part in (("train", queries), ("dev", dev)):
        if part is not None:
            lines = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t1" for q, (_, d) in part.items())]
            (root / "qrels" / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def index(tmp_path: Path) -> cascade.Index:
    return cascade.Index.build([cascade.Doc(d, t) for d, t in TOPICS.items()], tmp_path / "idx")


@pytest.fixture
def training(tmp_path: Path) -> Path:
    return write_training(tmp_path / "train", QUERIES)


# -- examples ---------------------------------------------------------------------------------


def test_split_holds_out_a_seeded_dev_fraction_or_uses_dev_qrels(training: Path, tmp_path: Path) -> None:
    a, b = split_dev(training, dev_fraction=0.25, seed=3), split_dev(training, dev_fraction=0.25, seed=3)
    assert sorted(a.dev.queries) == sorted(b.dev.queries) and len(a.dev.queries) == 2
    assert not set(a.dev.queries) & set(a.train.queries)
    assert set(a.dev.queries) | set(a.train.queries) == set(QUERIES)
    others = [sorted(split_dev(training, dev_fraction=0.25, seed=s).dev.queries) for s in range(4, 8)]
    assert any(o != sorted(a.dev.queries) for o in others)  # the seed decides
    with_dev = write_training(tmp_path / "with-dev", dict(list(QUERIES.items())[:6]), dict(list(QUERIES.items())[6:]))
    split = split_dev(with_dev)
    assert sorted(split.dev.queries) == ["q7", "q8"] and split.dev_source == "qrels/dev.tsv"


def test_reading_a_folder_without_qrels_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "queries.jsonl").write_text('{"_id": "1", "text": "x"}\n')
    with pytest.raises(CascadeError, match="qrels/train.tsv is missing"):
        read_training_set(tmp_path)


def test_training_on_test_queries_is_refused() -> None:
    check_disjoint(["a", "b"], {"c": {"d": 1}})
    with pytest.raises(CascadeError, match="1 training queries are also test queries"):
        check_disjoint(["a", "c"], {"c": {"d": 1}})


def test_mined_negatives_never_include_a_relevant_document(index: cascade.Index, training: Path) -> None:
    data = read_training_set(training)
    examples = mine_examples(index, data, negatives=3, pipeline="bm25 % 8", seed=0)
    # "dogs bark" and "birds fly" match only their own document: no negative, so no example
    assert sorted(e.query_id for e in examples) == ["q1", "q3", "q5", "q6", "q7", "q8"]
    for e in examples:
        assert e.positive_id == QUERIES[e.query_id][1]
        assert e.positive_id not in e.negative_ids and len(set(e.negative_ids)) == len(e.negative_ids)
        assert e.positive == TOPICS[e.positive_id]
    assert examples == mine_examples(index, data, negatives=3, pipeline="bm25 % 8", seed=0)  # seeded


def test_balanced_sample_takes_one_per_band_in_rank_order() -> None:
    ranked = [f"d{i}" for i in range(12)]
    picked = balanced_sample(ranked, 3, random.Random(0))
    assert [int(p[1:]) // 4 for p in picked] == [0, 1, 2]
    assert balanced_sample(ranked[:2], 3, random.Random(0)) == ranked[:2]


def test_judged_documents_missing_from_the_index_give_a_clear_error(index: cascade.Index) -> None:
    data = TrainingSet({"q": "cats"}, {"q": {"nowhere": 1}}, "elsewhere")
    with pytest.raises(CascadeError, match="none of the judged documents of elsewhere is in the index"):
        mine_examples(index, data)


def test_teacher_margins_are_score_differences(index: cascade.Index, training: Path) -> None:
    examples = mine_examples(index, read_training_set(training), negatives=2, pipeline="bm25 % 8")
    margins = teacher_margins(index, examples, "bm25")
    run = cascade.parse("bm25", index=index)([cascade.Query("q1", "cats purr")]).to_run()["q1"]
    key = next(k for k in margins if k[0] == "q1")
    assert margins[key] == pytest.approx(run[key[1]] - run[key[2]])
    with pytest.raises(CascadeError, match="scored no"):
        teacher_margins(index, examples, "bm25 % 1")  # the top document only: no pair has both


def test_triplet_rows_have_one_column_per_negative(index: cascade.Index, training: Path) -> None:
    rows = triplet_rows(mine_examples(index, read_training_set(training), negatives=2, pipeline="bm25 % 8"))
    assert list(rows) == ["query", "positive", "negative_1", "negative_2"]


def test_config_and_target_are_checked_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(CascadeError, match="epochs must be at least 1"):
        TrainConfig(epochs=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CascadeError, match="is a file"):
        target_dir(tmp_path / "file")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("x")
    with pytest.raises(CascadeError, match="Cascade did not train into"):
        target_dir(tmp_path / "other")


# -- the trainers, on a tiny random model -------------------------------------------------------

TINY = dict(epochs=12, batch_size=4, learning_rate=3e-3, max_length=24, negatives=2, miner="bm25 % 8",
            dev_depth=8, warmup_ratio=0.0, log_every=4, seed=0, threads=1)


def falls(losses: list[tuple[int, float]]) -> bool:
    first = sum(v for _, v in losses[:2]) / 2
    last = sum(v for _, v in losses[-2:]) / 2
    return last < first


def check_result(result: object, out: Path, split: Split) -> dict:
    record = read_record(out)
    assert record is not None and (out / RECORD).is_file()
    assert record["train_query_ids"] == sorted(split.train.queries)
    assert not set(record["train_query_ids"]) & set(record["dev_query_ids"])
    assert len(record["dev"]) == TINY["epochs"] + 1  # before training, then each epoch
    assert falls([tuple(x) for x in record["losses"]]), record["losses"]
    return record


@pytest.mark.parametrize("kind", ["cross-encoder", "dense", "late-interaction"])
def test_a_tiny_model_trains_its_loss_falls_and_its_stage_loads_it(kind: str, index: cascade.Index, training: Path,
                                                                   tiny_bi_encoder: str, tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from cascade.train.cross_encoder import train_cross_encoder
    from cascade.train.dense import train_dense
    from cascade.train.late_interaction import train_late_interaction

    split = split_dev(training, dev_fraction=0.25, seed=0)
    out = tmp_path / kind
    config = TrainConfig(base=tiny_bi_encoder, **TINY)
    lines: list[str] = []
    if kind == "cross-encoder":
        result = train_cross_encoder(index, split, out, config, report=lines.append)
        stage = f"bm25 % 8 >> cross_encoder(model={out})"
    elif kind == "dense":
        result = train_dense(index, split, out, config, report=lines.append)
        stage = f"bm25 % 8 >> dense_rerank(model={out})"
    else:
        result = train_late_interaction(index, split, out, config, dim=16, report=lines.append)
        stage = f"bm25 % 8 >> maxsim(model={out})"
    record = check_result(result, out, split)
    assert record["kind"] == kind and result.steps > 0
    assert any(line.startswith("epoch 1 dev nDCG@10") for line in lines)
    ranked = cascade.parse(stage, index=index)([cascade.Query("q1", "cats purr")]).to_run()["q1"]
    assert set(ranked) <= set(TOPICS) and ranked
    if kind == "late-interaction":
        assert json.loads((out / "1_Dense" / "config.json").read_text())["out_features"] == 16


def test_training_is_reproducible_from_its_seed(index: cascade.Index, training: Path, tiny_bi_encoder: str,
                                                tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from cascade.train.dense import train_dense

    split = split_dev(training, dev_fraction=0.25, seed=0)
    config = TrainConfig(base=tiny_bi_encoder, **{**TINY, "epochs": 2})
    a = train_dense(index, split, tmp_path / "a", config)
    b = train_dense(index, split, tmp_path / "b", config)
    assert a.losses == b.losses and a.dev == b.dev


def test_the_dev_checks_best_epoch_is_kept_unless_told_last(index: cascade.Index, training: Path,
                                                           tiny_bi_encoder: str, tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from safetensors.numpy import load_file

    from cascade.train.dense import train_dense

    split = split_dev(training, dev_fraction=0.25, seed=0)
    runs = {keep: train_dense(index, split, tmp_path / keep, TrainConfig(base=tiny_bi_encoder, **TINY, keep=keep))
            for keep in ("best", "last")}
    best, last = runs["best"], runs["last"]
    assert best.dev == last.dev  # the same training, only the saved weights may differ
    trained = best.dev[1:]
    top = max(v for _, v in trained)
    assert best.kept_epoch == next(e for e, v in trained if v == top)  # the first epoch reaching the best
    assert last.kept_epoch == TINY["epochs"] and read_record(tmp_path / "best")["kept_epoch"] == best.kept_epoch
    weights = [load_file(str(tmp_path / keep / "model.safetensors")) for keep in ("best", "last")]
    same = all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert same == (best.kept_epoch == TINY["epochs"])
    with pytest.raises(CascadeError, match="keep must be one of"):
        TrainConfig(keep="first")


def test_distilling_a_teacher_trains_on_its_margins(index: cascade.Index, training: Path, tiny_bi_encoder: str,
                                                    tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from cascade.train.cross_encoder import train_cross_encoder

    split = split_dev(training, dev_fraction=0.25, seed=0)
    result = train_cross_encoder(index, split, tmp_path / "ce", TrainConfig(base=tiny_bi_encoder, **TINY),
                                 teacher="bm25")
    assert result.config["loss"] == "MarginMSELoss" and result.config["teacher"] == "bm25"
    assert falls(result.losses)


# -- the command line ---------------------------------------------------------------------------


def beir_dataset(root: Path, test: dict[str, tuple[str, str]]) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n"
                                               for d, t in TOPICS.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, (t, _) in test.items()))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                             "".join(f"{q}\t{d}\t1\n" for q, (_, d) in test.items()))
    return root


def test_cascade_train_writes_a_model_the_eval_command_uses(training: Path, tiny_bi_encoder: str,
                                                            tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from typer.testing import CliRunner

    from cascade.cli import app

    dataset = beir_dataset(tmp_path / "toy", {"t1": ("garden cats", "cats")})
    out = tmp_path / "ce"
    args = ["train", "cross-encoder", str(dataset), "--training", str(training), "--out", str(out), "--base",
            tiny_bi_encoder, "--epochs", "1", "--batch-size", "4", "--max-length", "24", "--negatives", "2",
            "--miner", "bm25 % 8", "--dev-fraction", "0.25", "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "dev nDCG@10" in result.output and f"cross_encoder(model={out})" in result.output
    assert read_record(out)["kind"] == "cross-encoder"
    again = CliRunner().invoke(app, args)  # an earlier training's directory is replaced
    assert again.exit_code == 0, again.output


def test_cascade_train_refuses_test_queries_in_one_line(training: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cascade.cli import app

    dataset = beir_dataset(tmp_path / "toy", {"q1": ("cats purr", "cats")})  # q1 is also a training query
    result = CliRunner().invoke(app, ["train", "dense", str(dataset), "--training", str(training),
                                      "--out", str(tmp_path / "m")])
    assert result.exit_code == 1
    assert "are also test queries of toy" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()
