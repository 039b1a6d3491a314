"""Reading corpora, queries, qrels and runs: BEIR, JSONL, TSV, TREC and plain folders."""

from cascade.core.types import Doc, Qrels, Query, ReadReport, Run
from cascade.data.beir import BeirDataset
from cascade.data.corpus import corpus_fingerprint, count_lines, open_corpus
from cascade.data.folder import folder_files, read_folder
from cascade.data.readers import (
    hash_file,
    read_jsonl_docs,
    read_jsonl_queries,
    read_qrels,
    read_tsv_docs,
)
from cascade.data.trec import read_trec_run, read_trec_topics, write_trec_run

__all__ = [
    "BeirDataset",
    "Doc",
    "Qrels",
    "Query",
    "ReadReport",
    "Run",
    "corpus_fingerprint",
    "count_lines",
    "folder_files",
    "hash_file",
    "open_corpus",
    "read_folder",
    "read_jsonl_docs",
    "read_jsonl_queries",
    "read_qrels",
    "read_trec_run",
    "read_trec_topics",
    "read_tsv_docs",
    "write_trec_run",
]
