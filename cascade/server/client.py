"""``cascade.Client``: a remote index with the methods of a local one.

    client = cascade.Client("http://127.0.0.1:8080", api_key="...")
    hits = client.search("what causes diabetes", k=5)      # list[Hit], as BM25(index).search
    client.add([cascade.Doc("d9", "new text")])               # as Index.add: how many were added
    client.delete(ids=["d9"])                                 # as Index.delete: how many were deleted

Needs only httpx (the ``server`` extra); errors from the server are :class:`ServerError` with
its status and message.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from cascade.core.errors import CascadeError
from cascade.core.types import Doc, Hit, Query


class ServerError(CascadeError):
    """An error answer: ``status`` (HTTP) and ``code`` as the server sent them."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


def _doc_json(doc: Doc | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(doc, Doc):
        return {**doc.meta, "id": doc.id, "text": doc.text, "title": doc.title}
    return dict(doc)


class Client:
    """A Cascade server at ``url``; ``api_key`` for writes (and reads, if the server asks)."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 60.0,
                 pipeline: str | None = None) -> None:
        try:
            import httpx
        except ImportError:
            raise CascadeError("httpx is needed for cascade.Client: pip install 'cascade-ir[server]'") from None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.pipeline = pipeline
        self.generation: int | None = None  # the commit of the last answer

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            err = body.get("error", {}) if isinstance(body, dict) else {}
            raise ServerError(response.status_code, err.get("code", "error"), err.get("message", response.text[:200]))
        if isinstance(body, dict) and "generation" in body:
            self.generation = body["generation"]
        return body

    # -- reading ----------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, where: str | None = None, *, pipeline: str | None = None,
               offset: int = 0) -> list[Hit]:
        """Hits for one query (BM25, or ``pipeline``); each hit's ``text`` is its snippet."""
        body = self._search({"q": query}, k, where, pipeline, offset)
        return _hits(body["results"][0])

    def search_batch(self, queries: Sequence[Query | str], k: int = 10, where: str | None = None, *,
                     pipeline: str | None = None) -> dict[str, list[Hit]]:
        """{query id: hits} for a batch in one call (strings are numbered "0", "1", ...)."""
        items = [q if isinstance(q, Query) else Query(str(i), q) for i, q in enumerate(queries)]
        body = self._search({"queries": [{"id": q.id, "text": q.text} for q in items]}, k, where, pipeline, 0)
        return {r["qid"]: _hits(r) for r in body["results"]}

    def search_wire(self, query: str, k: int = 10, *, pipeline: str | None = None, qid: str = "0") -> dict[str, Any]:
        """One request in the Pyserini / rank_llm / UMBRELA candidate format."""
        body = self._search({"queries": [{"id": qid, "text": query}], "format": "wire"}, k, None, pipeline, 0)
        return body["requests"][0]  # type: ignore[no-any-return]

    def _search(self, what: dict[str, Any], k: int, where: str | None, pipeline: str | None,
                offset: int) -> dict[str, Any]:
        payload = {**what, "k": k, "offset": offset}
        if where is not None:
            payload["where"] = where
        if (pipeline or self.pipeline) is not None:
            payload["pipeline"] = pipeline or self.pipeline
        return self._call("POST", "/v1/search", json=payload)  # type: ignore[no-any-return]

    def get(self, doc_id: str) -> Doc:
        """The stored document (ServerError 404 when there is none)."""
        from urllib.parse import quote

        d = self._call("GET", "/v1/docs/" + quote(doc_id, safe=""))
        return Doc(d["id"], d["text"], d["title"], d["meta"])

    def info(self) -> dict[str, Any]:
        return self._call("GET", "/v1/info")  # type: ignore[no-any-return]

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/v1/health")  # type: ignore[no-any-return]

    def refresh(self) -> "Client":
        """The server always answers from its newest snapshot: nothing to do (as ``Index.refresh``)."""
        return self

    # -- writing ----------------------------------------------------------------------------

    def add(self, docs: Iterable[Doc | Mapping[str, Any]]) -> int:
        """Add new documents in one commit; how many were added."""
        return int(self._call("POST", "/v1/docs", params={"mode": "add"}, json=[_doc_json(d) for d in docs])["added"])

    def update(self, docs: Iterable[Doc | Mapping[str, Any]]) -> int:
        """Add or replace documents in one commit; how many replaced an old one."""
        body = self._call("POST", "/v1/docs", params={"mode": "upsert"}, json=[_doc_json(d) for d in docs])
        return int(body["replaced"])

    def delete(self, ids: Iterable[str] = (), *, where: str | None = None) -> int:
        """Delete by ids and/or filter in one commit; how many were deleted."""
        body = self._call("POST", "/v1/docs/delete", json={"ids": list(ids), "where": where})
        return int(body["deleted"])

    def optimize(self) -> int:
        """Merge segments; the new generation."""
        return int(self._call("POST", "/v1/optimize")["generation"])

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hits(result: Mapping[str, Any]) -> list[Hit]:
    return [Hit(h["id"], h["score"], h["rank"], h["title"], h.get("snippet") or "", h["meta"]) for h in result["hits"]]
