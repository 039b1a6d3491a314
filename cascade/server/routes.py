"""The HTTP routes under /v1, the page at / and /metrics (no ``from __future__ import annotations``:
FastAPI reads the parameter annotations, which refer to this server's limits, at run time)."""

import json
from importlib import resources
from typing import Annotated, Any, Dict, Literal, Optional, Union

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import TypeAdapter, ValidationError

from cascade.core.errors import CascadeError
from cascade.core.types import Doc, doc_from_mapping
from cascade.core.types import Query as CQuery
from cascade.server.auth import check_key
from cascade.server.config import Limits, ServerConfig
from cascade.server.engine import Engine, LimitError, SearchRequest, WriteResult
from cascade.server.schemas import (
    DeleteBody,
    DocIn,
    DocOut,
    ErrorBody,
    Health,
    Info,
    SearchResponse,
    WriteOut,
    search_body,
)

STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
ERRORS: Dict[Union[int, str], Dict[str, Any]] = {s: {"model": ErrorBody, "description": d} for s, d in (
    (400, "bad request or over a limit"), (401, "no or wrong API key"), (413, "body too large"),
    (422, "invalid parameters"), (429, "queue full (Retry-After)"), (503, "timeout, writer busy"))}
WRITE_ERRORS = {**ERRORS, 403: {"model": ErrorBody, "description": "writes disabled (no key configured)"}}
DOCS_ADAPTER = TypeAdapter(list[DocIn])


def _engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def _json(content: Any) -> Response:
    return Response(json.dumps(content, ensure_ascii=False, default=str), media_type="application/json")


def check_read(request: Request, config: ServerConfig) -> None:
    if config.protect_reads:
        check_key(config.api_key, request.headers, write=False)


async def run_search(request: Request, req: SearchRequest) -> Response:
    engine = _engine(request)
    return _json(await request.app.state.searches.run(lambda: engine.search(req)))


def _write_out(result: WriteResult) -> Response:
    return _json({"generation": result.generation, "added": result.added, "replaced": result.replaced,
                  "deleted": result.deleted})


def parse_docs(raw: bytes, content_type: str, limits: Limits) -> list[Doc]:
    """Documents from a JSON array (or one object) or JSONL; a bad record is a CascadeError
    naming its position."""
    try:
        text = raw.decode("utf-8")
        if "ndjson" in content_type or "jsonl" in content_type:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
            records = data if isinstance(data, list) else [data]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CascadeError(f"body is not JSON or JSONL ({exc})") from None
    if len(records) > limits.max_docs_per_write:
        raise LimitError(f"{len(records):,} documents in one write (limit {limits.max_docs_per_write:,})")
    if not records:
        raise CascadeError("no documents in the body")
    try:
        DOCS_ADAPTER.validate_python(records)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CascadeError(f"documents[{'.'.join(map(str, first['loc']))}]: {first['msg']}") from None
    docs = [doc_from_mapping(r, i) for i, r in enumerate(records)]
    if len({d.id for d in docs}) != len(docs):
        raise CascadeError("the same id twice in one write")
    return docs


def install_routes(app: FastAPI, config: ServerConfig) -> None:
    """Every route, with this server's limits in their parameters (and so in the schema)."""
    _search_routes(app, config)
    _doc_routes(app, config)
    _admin_routes(app, config)
    _page_routes(app)


def _search_routes(app: FastAPI, config: ServerConfig) -> None:
    limits = config.limits
    Body = search_body(limits)

    @app.get("/v1/search", response_model=SearchResponse, responses=ERRORS, tags=["search"])
    async def search_get(
        request: Request,
        q: Annotated[str, Query(min_length=1, max_length=limits.max_query_chars, description="query text")],
        k: Annotated[int, Query(ge=1, le=limits.max_k)] = 10,
        offset: Annotated[int, Query(ge=0, le=limits.max_offset)] = 0,
        pipeline: Annotated[Optional[str], Query(min_length=1, max_length=limits.max_pipeline_chars,
                                                 description="e.g. bm25 % 100 >> maxsim")] = None,
        where: Annotated[Optional[str], Query(min_length=1, max_length=limits.max_filter_chars,
                                              description='e.g. year >= 2020 AND lang = "en"')] = None,
        highlight: bool = True,
        format: Literal["cascade", "wire"] = "cascade",
    ) -> Response:
        """Search with BM25 or any pipeline; hits with highlighted snippets and per-stage timings."""
        check_read(request, config)
        req = SearchRequest([CQuery("0", q)], k, offset, pipeline, where, highlight, format)
        return await run_search(request, req)

    @app.post("/v1/search", response_model=SearchResponse, responses=ERRORS, tags=["search"])
    async def search_post(request: Request, body: Body) -> Response:  # type: ignore[valid-type]
        """The same as GET, from a JSON body; ``queries`` searches a batch in one call."""
        check_read(request, config)
        b: Any = body
        if (b.q is None) == (b.queries is None):
            raise CascadeError("give exactly one of 'q' (one query) and 'queries' (a batch)")
        queries = [CQuery("0", b.q)] if b.q is not None else [CQuery(x.id, x.text) for x in b.queries]
        if any(len(x.text) > limits.max_query_chars for x in queries):
            raise LimitError(f"a query over {limits.max_query_chars:,} characters")
        if len({x.id for x in queries}) != len(queries):
            raise CascadeError("query ids must be distinct")
        return await run_search(request, SearchRequest(queries, b.k, b.offset, b.pipeline, b.where,
                                                       b.highlight, b.format))


def _doc_routes(app: FastAPI, config: ServerConfig) -> None:
    limits = config.limits
    doc_id_param = Annotated[str, Path(min_length=1, max_length=1000)]

    @app.get("/v1/docs/{doc_id:path}", response_model=DocOut, responses={**ERRORS, 404: {"model": ErrorBody}},
             tags=["documents"])
    async def get_doc(request: Request, doc_id: doc_id_param) -> Response:
        """One stored document."""
        check_read(request, config)
        snap, doc = await request.app.state.searches.run(lambda: _engine(request).get(doc_id))
        if doc is None:
            return JSONResponse({"error": {"status": 404, "code": "not_found",
                                           "message": f"no document with id {doc_id!r}"}}, 404)
        return _json({"id": doc.id, "title": doc.title, "text": doc.text, "meta": doc.meta,
                      "generation": snap.generation})

    @app.post("/v1/docs", response_model=WriteOut, responses=WRITE_ERRORS, tags=["documents"],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"type": "array", "items": DocIn.model_json_schema(),
                                                  "maxItems": limits.max_docs_per_write}}}}})
    async def add_docs(request: Request, mode: Literal["add", "upsert"] = "upsert") -> Response:
        """Add documents (``mode=add``: new ids only) or add-or-replace them (``upsert``), as one
        commit. Body: a JSON array of ``{"id", "text", "title"?, ...}`` or JSONL
        (``Content-Type: application/x-ndjson``). Needs the API key."""
        check_key(config.api_key, request.headers, write=True)
        docs = parse_docs(await request.body(), request.headers.get("content-type", ""), limits)
        engine = _engine(request)
        result = await request.app.state.writes.run(lambda: engine.write(docs, update=mode == "upsert"))
        return _write_out(result)

    @app.delete("/v1/docs/{doc_id:path}", response_model=WriteOut, responses={**WRITE_ERRORS, 404: {"model": ErrorBody}},
                tags=["documents"])
    async def delete_doc(request: Request, doc_id: doc_id_param) -> Response:
        """Delete one document (one commit). Needs the API key."""
        check_key(config.api_key, request.headers, write=True)
        engine = _engine(request)
        result = await request.app.state.writes.run(lambda: engine.delete([doc_id], None))
        if result.deleted == 0:
            return JSONResponse({"error": {"status": 404, "code": "not_found",
                                           "message": f"no document with id {doc_id!r}"}}, 404)
        return _write_out(result)

    @app.post("/v1/docs/delete", response_model=WriteOut, responses=WRITE_ERRORS, tags=["documents"])
    async def delete_docs(request: Request, body: DeleteBody) -> Response:
        """Delete by ids and/or a filter (``where``), as one commit. Needs the API key."""
        check_key(config.api_key, request.headers, write=True)
        if not body.ids and body.where is None:
            raise CascadeError("give 'ids' and/or 'where'")
        if len(body.ids) > limits.max_ids_per_delete:
            raise LimitError(f"{len(body.ids):,} ids in one delete (limit {limits.max_ids_per_delete:,})")
        engine = _engine(request)
        return _write_out(await request.app.state.writes.run(lambda: engine.delete(body.ids, body.where)))

    @app.post("/v1/optimize", response_model=WriteOut, responses=WRITE_ERRORS, tags=["documents"])
    async def optimize(request: Request) -> Response:
        """Merge every segment and drop deleted documents (one commit). Needs the API key."""
        check_key(config.api_key, request.headers, write=True)
        engine = _engine(request)
        return _write_out(await request.app.state.writes.run(engine.optimize))


def _admin_routes(app: FastAPI, config: ServerConfig) -> None:
    @app.get("/v1/info", response_model=Info, responses=ERRORS, tags=["service"])
    async def info(request: Request) -> Response:
        """Counts, fields, representations, stages, the pipelines the page offers."""
        check_read(request, config)
        return _json(await request.app.state.searches.run(_engine(request).info))

    @app.get("/v1/health", response_model=Health, tags=["service"])
    async def health(request: Request) -> Response:
        """Liveness: the server answers and reads a snapshot."""
        snap = _engine(request).snapshot()
        return _json({"status": "ok", "generation": snap.generation, "documents": snap.n_docs})

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"])
    async def metrics(request: Request) -> PlainTextResponse:
        """Prometheus text: requests, latency histogram, errors, index generation."""
        return PlainTextResponse(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")


def _page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return _static("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC:
            return JSONResponse({"error": {"status": 404, "code": "not_found", "message": "no such file"}}, 404)
        return _static(name)


def _static(name: str) -> Response:
    body = resources.files("cascade.server").joinpath("static", name).read_bytes()
    return Response(body, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})



