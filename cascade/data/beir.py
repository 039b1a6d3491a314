"""A BEIR-format dataset directory: corpus.jsonl, queries.jsonl and qrels/<split>.tsv."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from cascade.core.errors import DataError
from cascade.core.types import Doc, Qrels, Query, ReadReport
from cascade.data.readers import StrPath, hash_file, read_jsonl_docs, read_jsonl_queries, read_qrels


class BeirDataset:
    """A BEIR dataset directory; checks on creation that it has ``corpus.jsonl``.

    >>> ds = BeirDataset("datasets/scifact")  # doctest: +SKIP
    >>> ds.name, len(ds.queries()), ds.splits()  # doctest: +SKIP
    ('scifact', 300, ['test'])
    """

    def __init__(self, path: StrPath) -> None:
        self.root = Path(path)
        if not self.root.exists():
            raise DataError(path, "no such dataset directory")
        if not self.root.is_dir():
            raise DataError(path, "not a directory (expected a BEIR dataset directory)")
        self.corpus_path = self.root / "corpus.jsonl"
        if not self.corpus_path.is_file():
            raise DataError(path, "not a BEIR dataset: corpus.jsonl is missing")
        self.name = self.root.resolve().name
        self._hash: str | None = None

    def __repr__(self) -> str:
        return f"BeirDataset({str(self.root)!r})"

    @property
    def queries_path(self) -> Path:
        return self.root / "queries.jsonl"

    def corpus(self, *, skip_bad: bool = False, report: ReadReport | None = None) -> Iterator[Doc]:
        """Stream the documents of ``corpus.jsonl``."""
        return read_jsonl_docs(self.corpus_path, skip_bad=skip_bad, report=report)

    def queries(self, *, skip_bad: bool = False, report: ReadReport | None = None) -> list[Query]:
        """All queries from ``queries.jsonl``."""
        if not self.queries_path.is_file():
            raise DataError(self.queries_path, f"dataset {self.name} has no queries.jsonl")
        return read_jsonl_queries(self.queries_path, skip_bad=skip_bad, report=report)

    def splits(self) -> list[str]:
        """Names of the qrels splits present, e.g. ``['dev', 'test']``."""
        qrels_dir = self.root / "qrels"
        return sorted(p.stem for p in qrels_dir.glob("*.tsv") if p.is_file())

    def qrels(self, split: str = "test", *, skip_bad: bool = False, report: ReadReport | None = None) -> Qrels:
        """Judgments from ``qrels/<split>.tsv``; a missing split names the available ones."""
        path = self.root / "qrels" / f"{split}.tsv"
        if not path.is_file():
            available = ", ".join(self.splits()) or "none"
            raise DataError(path, f"no qrels for split {split!r} (available splits: {available})")
        return read_qrels(path, skip_bad=skip_bad, report=report)

    def count_docs(self) -> int:
        """Lines of ``corpus.jsonl`` (its documents, for progress totals), counted without parsing."""
        with open(self.corpus_path, "rb") as f:
            return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))

    def content_hash(self) -> str:
        """blake2b hex digest (16 bytes) of ``corpus.jsonl``, computed once per instance."""
        if self._hash is None:
            self._hash = hash_file(self.corpus_path).hexdigest()
        return self._hash
