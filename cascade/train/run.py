"""What every trainer shares: its settings, reproducibility (seed, pinned torch threads), the
dev check before training and after each epoch, progress in a terminal and in logs, and a
model directory published whole (written beside the target, then renamed) with a record of
how it was made (``cascade-training.json``)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from cascade.core.errors import CascadeError
from cascade.index.fsutil import atomic_write_bytes, fsync_tree
from cascade.index.index import Index
from cascade.models.resolve import default_device, require
from cascade.train.dev import DEV_METRIC, DevSet, Scorer, dev_set
from cascade.train.examples import (
    DEFAULT_MINER,
    DEFAULT_NEGATIVES,
    Example,
    Margins,
    Split,
    cap,
    mine_examples,
    sample_queries,
)
from cascade.train.teacher import teacher_margins

log = logging.getLogger("cascade.train")
RECORD = "cascade-training.json"
ReportFn = Callable[[str], None]  # one line of progress: "step 40/290 loss 0.41", "epoch 1 dev nDCG@10 0.61"


KEEP = ("best", "last")


@dataclass(frozen=True)
class TrainConfig:
    """Settings shared by the trainers (each documents its own default ``base``)."""

    base: str = "minilm"
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 2e-5
    max_length: int = 256
    negatives: int = DEFAULT_NEGATIVES
    random_negatives: int = 0  # of the negatives, how many are random documents (easy) instead of mined
    miner: str = DEFAULT_MINER
    dev_depth: int = 30
    dev_fraction: float = 0.1
    dev_queries: int | None = 100  # the dev check's queries: a seeded sample of at most this many
    max_examples: int | None = None
    warmup_ratio: float = 0.1
    log_every: int = 10  # steps between loss reports
    seed: int = 0
    threads: int | None = None
    keep: str = "best"  # which epoch's weights are saved: the dev check's best, or the last

    def __post_init__(self) -> None:
        if self.keep not in KEEP:
            raise CascadeError(f"keep must be one of {', '.join(KEEP)} (got {self.keep!r})")
        for name in ("epochs", "batch_size", "max_length", "negatives", "dev_depth", "log_every"):
            if getattr(self, name) < 1:
                raise CascadeError(f"{name} must be at least 1 (got {getattr(self, name)})")
        if self.learning_rate <= 0:
            raise CascadeError(f"learning_rate must be positive (got {self.learning_rate})")
        if self.dev_queries is not None and self.dev_queries < 1:
            raise CascadeError(f"dev_queries must be at least 1 (got {self.dev_queries})")
        if self.max_examples is not None and self.max_examples < 1:
            raise CascadeError(f"max_examples must be at least 1 (got {self.max_examples})")
        if self.threads is not None and self.threads < 1:
            raise CascadeError(f"threads must be at least 1 (got {self.threads})")


@dataclass
class TrainResult:
    """How a training run went; written to the model directory as ``cascade-training.json``."""

    kind: str
    model_dir: str
    config: dict[str, Any]
    data: str
    train_query_ids: list[str]
    dev_query_ids: list[str]
    examples: int
    dev_checked: int = 0  # dev queries the dev check used (a sample of the dev split)
    steps: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss)
    dev: list[tuple[int, float]] = field(default_factory=list)  # (epoch, dev nDCG@10); epoch 0 = before
    kept_epoch: int = 0  # the epoch whose weights were saved

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def read_record(model_dir: str | Path) -> dict[str, Any] | None:
    """The ``cascade-training.json`` of a model Cascade trained, or None."""
    path = Path(model_dir) / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def prepare_torch(config: TrainConfig) -> Any:
    """torch with its threads pinned and every generator seeded (transformers.set_seed)."""
    import torch
    import transformers

    torch.set_num_threads(config.threads or max(1, os.cpu_count() or 1))
    transformers.set_seed(config.seed)
    return torch


def training_arguments(cls: Any, config: TrainConfig, work: Path, **extra: Any) -> Any:
    """``cls`` (SentenceTransformerTrainingArguments or CrossEncoderTrainingArguments) with the
    shared settings: no checkpoints or reports of its own, seeded data order, logs every few steps."""
    return cls(output_dir=str(work), num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
               learning_rate=config.learning_rate, warmup_steps=config.warmup_ratio, seed=config.seed,
               data_seed=config.seed, save_strategy="no", report_to=[], logging_steps=config.log_every,
               disable_tqdm=not _interactive(), dataloader_num_workers=0,
               dataloader_pin_memory=default_device() != "cpu", **extra)


def _interactive() -> bool:
    return sys.stderr.isatty()


class BestEpoch:
    """The weights of the epoch with the best dev check so far (a copy in memory, on the CPU)."""

    def __init__(self) -> None:
        self.epoch, self.value, self.state = 0, float("-inf"), None

    def offer(self, epoch: int, value: float, model: Any) -> None:
        if value > self.value:
            self.epoch, self.value = epoch, value
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def restore(self, model: Any) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


def progress_callback(result: TrainResult, dev: DevSet, scorer_of: Callable[[Any], Scorer],
                      report: ReportFn | None, best: BestEpoch | None = None) -> Any:
    """A transformers ``TrainerCallback`` recording the loss, running the dev check after each
    epoch, and reporting both (to ``report`` and the ``cascade.train`` log); ``best`` keeps the
    weights of the best epoch."""
    from transformers import TrainerCallback

    say = _sayer(report)

    class Progress(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                   **kwargs: Any) -> None:
            if logs and "loss" in logs:
                result.losses.append((int(state.global_step), float(logs["loss"])))
                say(f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f}")

        def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            epoch = round(state.epoch or 0)
            was_training = model.training
            model.eval()
            value = dev.score(scorer_of(model))
            model.train(was_training)
            result.dev.append((epoch, value))
            if best is not None:
                best.offer(epoch, value, model)
            say(f"epoch {epoch} dev {DEV_METRIC} {value:.4f} ({len(dev.queries)} dev queries)")

    return Progress()


def _sayer(report: ReportFn | None) -> ReportFn:
    def say(line: str) -> None:
        log.info(line)
        if report is not None:
            report(line)

    return say


def check_before(dev: DevSet, scorer: Scorer, result: TrainResult, report: ReportFn | None) -> None:
    """The dev check of the untrained model (epoch 0), the figure each epoch is compared with."""
    value = dev.score(scorer)
    result.dev.append((0, value))
    _sayer(report)(f"before training: dev {DEV_METRIC} {value:.4f} ({len(dev.queries)} dev queries)")


def target_dir(out: str | Path) -> Path:
    """``out``, checked: absent, empty, or a model directory an earlier training wrote (replaced)."""
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise CascadeError(f"--out {path} is a file; name a directory for the trained model")
    if path.is_dir() and any(path.iterdir()) and not (path / RECORD).is_file():
        raise CascadeError(f"--out {path} is a non-empty directory Cascade did not train into; "
                           "name a new directory")
    return path


def publish(save: Callable[[Path], None], out: Path, result: TrainResult) -> Path:
    """Write the model with ``save`` into a sibling temp dir, add the record, then rename it over
    ``out`` (a crash leaves the previous model, or nothing, never half a model)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        save(tmp)
        result.model_dir = str(out)
        atomic_write_bytes(tmp / RECORD, result.to_json().encode())
        fsync_tree(tmp)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


@dataclass(frozen=True)
class Recipe:
    """What one kind of model does differently; :func:`fit` does the rest.

    ``build(config, examples)`` gives the model to train; ``data(model, examples, margins)``
    its training columns and loss; ``scorer(model)`` the dev check's scorer; ``cross_encoder``
    picks sentence-transformers' CrossEncoderTrainer over SentenceTransformerTrainer."""

    kind: str
    build: Callable[[TrainConfig, list[Example]], Any]
    data: Callable[[Any, list[Example], Margins | None], tuple[dict[str, list[Any]], Any]]
    scorer: Callable[[Any], Scorer]
    cross_encoder: bool = False
    settings: dict[str, Any] = field(default_factory=dict)  # recorded beside the config (e.g. dim)


def fit(recipe: Recipe, index: Index, split: Split, out: str | Path, config: TrainConfig, *,
        teacher: str | None = None, report: ReportFn | None = None) -> TrainResult:
    """Mine examples for ``split.train`` from ``index``, train ``recipe``'s model on them (on the
    margins of the ``teacher`` pipeline when one is given) with the dev check before and after
    each epoch, and publish it at ``out``."""
    target = target_dir(out)
    start = time.perf_counter()
    prepare_torch(config)
    require("datasets", "cascade train", extra="train")
    from datasets import Dataset

    examples = cap(mine_examples(index, split.train, negatives=config.negatives, pipeline=config.miner,
                                 random_negatives=config.random_negatives, seed=config.seed),
                   config.max_examples, config.seed)
    margins = None if teacher is None else teacher_margins(index, examples, teacher)
    dev = dev_set(index, sample_queries(split.dev, config.dev_queries, config.seed), pipeline=config.miner,
                  depth=config.dev_depth)
    model = recipe.build(config, examples)
    columns, loss = recipe.data(model, examples, margins)
    result = TrainResult(recipe.kind, str(target), {**config.__dict__, **recipe.settings,
                                                    "loss": type(loss).__name__, "teacher": teacher},
                         split.train.source,
                         sorted(split.train.queries), sorted(split.dev.queries), len(examples),
                         dev_checked=len(dev.queries),
                         device=str(model.device))
    check_before(dev, recipe.scorer(model), result, report)
    best = BestEpoch() if config.keep == "best" else None
    trainer_cls, args_cls = _trainer_classes(recipe.cross_encoder)
    with tempfile.TemporaryDirectory(prefix="cascade-train-") as work:
        trainer = trainer_cls(model=model, args=training_arguments(args_cls, config, Path(work)),
                              train_dataset=Dataset.from_dict(columns), loss=loss,
                              callbacks=[progress_callback(result, dev, recipe.scorer, report, best)])
        trainer.train()
        result.steps = int(trainer.state.global_step)
    result.kept_epoch = result.dev[-1][0]
    if best is not None and best.epoch and best.epoch != result.kept_epoch:
        best.restore(model)
        result.kept_epoch = best.epoch
        _sayer(report)(f"kept epoch {best.epoch} (dev {DEV_METRIC} {best.value:.4f}), the dev check's best")
    result.seconds = time.perf_counter() - start
    publish(lambda tmp: model.save_pretrained(str(tmp)), target, result)
    return result


def _trainer_classes(cross_encoder: bool) -> tuple[Any, Any]:
    if cross_encoder:
        from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

        return CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    return SentenceTransformerTrainer, SentenceTransformerTrainingArguments
