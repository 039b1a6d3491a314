"""What a server is started with: the index, keys, limits and the pipelines it offers."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cascade.core.errors import CascadeError


@dataclass(frozen=True)
class Limits:
    """Every limit a request is checked against (a request over one gets a 4xx JSON error)."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_query_chars: int = 1_000
    max_k: int = 1_000
    max_offset: int = 10_000
    max_batch: int = 100
    max_pipeline_chars: int = 500
    max_pipeline_nodes: int = 12  # stages and operators of a parsed pipeline
    max_filter_chars: int = 2_000
    max_docs_per_write: int = 10_000
    max_ids_per_delete: int = 10_000
    concurrency: int = 4  # searches running at once (threads)
    queue: int = 64  # searches waiting beyond that: the next one gets 429
    write_queue: int = 16  # writes waiting for the one writer: the next one gets 429
    timeout_s: float = 30.0  # a request waiting or running longer gets 503


@dataclass
class ServerConfig:
    """``api_key``: needed for writes (no key: writes are refused); ``protect_reads``: reads
    need it too. ``pipelines``: the presets the page offers (any pipeline string is accepted)."""

    index: Path
    api_key: str | None = None
    protect_reads: bool = False
    limits: Limits = field(default_factory=Limits)
    cors_origins: tuple[str, ...] = ()
    pipelines: tuple[str, ...] = ("bm25", "bm25_rm3", "rrf(bm25, bm25_rm3)")
    refresh_interval_s: float = 0.5  # how often a reader looks for commits made by other processes
    models: tuple[str, ...] = ()  # what model= may name over HTTP beyond the built-in aliases (--allow-model)

    def to_env(self) -> str:
        """JSON for ``CASCADE_SERVER_CONFIG`` (how ``--workers N`` passes the config on)."""
        import json

        data: dict[str, Any] = asdict(self)
        data["index"] = str(self.index)
        return json.dumps(data)

    @classmethod
    def from_env(cls) -> "ServerConfig":
        import json

        raw = os.environ.get("CASCADE_SERVER_CONFIG")
        if not raw:
            raise CascadeError("CASCADE_SERVER_CONFIG is not set (start the server with `cascade serve`)")
        data = json.loads(raw)
        data["index"] = Path(data["index"])
        data["limits"] = Limits(**data["limits"])
        data["cors_origins"] = tuple(data["cors_origins"])
        data["pipelines"] = tuple(data["pipelines"])
        data["models"] = tuple(data.get("models", ()))
        return cls(**data)


def read_api_key(path: str | os.PathLike[str]) -> str:
    """The key in ``path`` (first line, stripped); refuses an empty or short key."""
    try:
        key = Path(path).read_text(encoding="utf-8").strip().splitlines()[0].strip()
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise CascadeError(f"{path}: cannot read an API key ({exc or 'empty file'})") from None
    if len(key) < 16:
        raise CascadeError(f"{path}: the API key must be at least 16 characters")
    return key
