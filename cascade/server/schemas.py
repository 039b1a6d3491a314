"""Request and response bodies (pydantic): what the OpenAPI schema documents and validates.

Limits that depend on the server's configuration (k, query length, batch size) are checked by
the routes and also written into the schema by :func:`search_body` so generated clients and
Schemathesis see them.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model

from cascade.server.config import Limits

Format = Literal["cascade", "wire"]


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: one object, never a stack trace."""

    error: ErrorDetail


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200)
    text: str


class StageTime(BaseModel):
    stage: str
    ms: float


class HitOut(BaseModel):
    rank: int
    id: str
    score: float
    title: str
    meta: dict[str, Any]
    snippet: Optional[str] = None
    highlights: Optional[list[list[int]]] = Field(None, description="[start, end) character offsets of query "
                                                                     "terms in the snippet")


class QueryResult(BaseModel):
    qid: str
    query: str
    hits: list[HitOut]


class WireQuery(BaseModel):
    qid: str
    text: str


class WireCandidate(BaseModel):
    docid: str
    score: float
    doc: dict[str, Any]


class WireRequest(BaseModel):
    """Pyserini REST / rank_llm / UMBRELA: one query and its candidates."""

    query: WireQuery
    candidates: list[WireCandidate]


class SearchResponse(BaseModel):
    generation: int = Field(description="the commit (snapshot) that answered")
    version: str
    pipeline: str
    ms: float
    stages: list[StageTime]
    results: Optional[list[QueryResult]] = None
    requests: Optional[list[WireRequest]] = Field(None, description="with format=wire")


class DocOut(BaseModel):
    id: str
    title: str
    text: str
    meta: dict[str, Any]
    generation: int


class DocIn(BaseModel):
    """A document to add; other keys go to ``meta`` (as the JSONL reader does)."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)
    text: str
    title: str = ""


class DeleteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] = Field(default_factory=list)
    where: Optional[str] = None


class WriteOut(BaseModel):
    generation: int
    added: int = 0
    replaced: int = 0
    deleted: int = 0


class Health(BaseModel):
    status: str
    generation: int
    documents: int


class Info(BaseModel):
    path: str
    generation: int
    version: str
    documents: int
    segments: int
    fields: list[str]
    filter_fields: dict[str, str]
    representations: dict[str, Any]
    stages: list[str]
    pipelines: list[str]
    analyzer: dict[str, Any]
    writes: bool


def search_body(limits: Limits) -> type[BaseModel]:
    """The POST /v1/search body with this server's limits in its schema."""
    text = Field(None, min_length=1, max_length=limits.max_query_chars)
    return create_model(
        "SearchBody",
        __config__=ConfigDict(extra="forbid"),
        q=(Optional[str], text),
        queries=(Optional[list[QueryIn]], Field(None, min_length=1, max_length=limits.max_batch,
                                                description="a batch: many queries, one call")),
        k=(int, Field(10, ge=1, le=limits.max_k)),
        offset=(int, Field(0, ge=0, le=limits.max_offset)),
        pipeline=(Optional[str], Field(None, min_length=1, max_length=limits.max_pipeline_chars)),
        where=(Optional[str], Field(None, min_length=1, max_length=limits.max_filter_chars)),
        highlight=(bool, True),
        format=(Format, "cascade"),
    )
