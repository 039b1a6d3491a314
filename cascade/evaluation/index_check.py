"""Refuse an index given for a dataset (``cascade eval DATASET --index IDX``) that cannot answer
it: built from another collection, or with other analysis settings than the ones asked for.

Without these checks an index of another corpus silently scores nDCG 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cascade.core.errors import BadIndexError
from cascade.core.types import Qrels
from cascade.data.beir import BeirDataset
from cascade.data.readers import hash_file
from cascade.index.index import Index
from cascade.text.analyzer import Analyzer

JUDGED_QUERIES = 20  # queries whose judged documents are looked up in the index


def check_index_fits(index: Index, dataset: BeirDataset, qrels: Qrels, analyzer: Analyzer | None) -> None:
    """BadIndexError (a CascadeError: one line in the CLI) when ``index`` was built with another
    analyzer than ``analyzer`` (None: no wish), from another corpus than the dataset's (by the
    manifest's recorded source), or holds none of the documents judged for the first queries of
    ``qrels``."""
    where = f"the index at {index.path}"
    if analyzer is not None and analyzer != index.analyzer:
        raise BadIndexError(f"{where} was built with analyzer {_describe(index.analyzer)}, not "
                           f"{_describe(analyzer)}; drop --stemmer/--stopwords (the index's analyzer is used) "
                           "or build an index with them")
    source = index.manifest.source
    if source and not _same_corpus(source, dataset):
        raise BadIndexError(f"{where} was built from {_source_name(source)}, not from {dataset.name}'s corpus "
                           f"({dataset.corpus_path}); drop --index to build one for {dataset.name}")
    judged = [doc for qid in list(qrels)[:JUDGED_QUERIES] for doc in qrels[qid]]
    probe = [f"{doc}#0" for doc in judged] if index.passages else judged  # a passage index: first passages
    if judged and not (index.doc_numbers(probe) >= 0).any():
        first = min(len(qrels), JUDGED_QUERIES)
        raise BadIndexError(f"none of the {len(judged)} documents judged for the first {first} queries of "
                            f"{dataset.name} is in {where}: it was built from another collection")


def _describe(analyzer: Analyzer) -> str:
    parts = [f"stopwords={analyzer.stopwords or 'none'}", f"stemmer={analyzer.stemmer or 'none'}",
             f"fold_accents={'yes' if analyzer.fold_accents else 'no'}"]
    if not analyzer.lowercase:
        parts.append("no lowercase")
    if analyzer.cjk:
        parts.append(f"cjk={analyzer.cjk}")
    if analyzer.symbol_suffixes:
        parts.append("symbol_suffixes")
    return "(" + ", ".join(parts) + ")"


def _same_corpus(source: dict[str, Any], dataset: BeirDataset) -> bool:
    """The recorded content hash when there is one; else the recorded path: the dataset itself,
    a directory or file of the same name, or a corpus with the same content."""
    if source.get("content_hash"):
        return source["content_hash"] == dataset.content_hash()
    if source.get("path"):
        path = Path(source["path"]).expanduser()
        if path.exists() and path.resolve() in (dataset.root.resolve(), dataset.corpus_path.resolve()):
            return True
        if _corpus_name(path) == dataset.name:
            return True
        corpus = path / "corpus.jsonl" if path.is_dir() else path
        return corpus.is_file() and hash_file(corpus).hexdigest() == dataset.content_hash()
    if source.get("name"):
        return source["name"] == dataset.name
    return True  # nothing recorded: the judged-documents check decides


def _corpus_name(path: Path) -> str:
    """The dataset name a recorded corpus path stands for (``x/scifact/corpus.jsonl`` -> scifact)."""
    if path.name == "corpus.jsonl":
        return path.resolve().parent.name if path.exists() else path.parent.name
    return path.stem if path.suffix == ".jsonl" else path.name


def _source_name(source: dict[str, Any]) -> str:
    if source.get("path"):
        return str(source["path"])
    return f"{source.get('name', 'another corpus')} (content {str(source.get('content_hash', '?'))[:12]})"
