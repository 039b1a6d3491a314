"""The HTTP server, run for real (uvicorn on 127.0.0.1, a free port): every endpoint, auth,
limits, the bounded queue, concurrent searches during writes, and a kill -9 during writes."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
from server_util import KEY, Server, build_index, start_server

import cascade


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("server")
    srv = start_server(build_index(root / "i.idx"), root / "log", limits={"max_k": 50, "max_batch": 5,
                                                                         "max_body_bytes": 20_000,
                                                                         "max_pipeline_nodes": 6})
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log.read_text()


def test_search_get_and_post_give_hits_with_snippets_timings_and_generation(server: Server) -> None:
    with server.client() as c:
        got = c.get("/v1/search", params={"q": "solar wind", "k": 3}).json()
        assert got["generation"] >= 1 and got["version"].startswith("g") and got["stages"][0]["ms"] >= 0
        hits = got["results"][0]["hits"]
        assert [h["rank"] for h in hits] == [1, 2, 3] and all(h["title"] for h in hits)
        snip, marks = hits[0]["snippet"], hits[0]["highlights"]
        assert {snip[a:b].lower() for a, b in marks} <= {"solar", "wind"} and marks
        posted = c.post("/v1/search", json={"q": "solar wind", "k": 3}).json()
        assert [h["id"] for h in posted["results"][0]["hits"]] == [h["id"] for h in hits]
        page2 = c.get("/v1/search", params={"q": "solar wind", "k": 2, "offset": 1}).json()["results"][0]["hits"]
        assert [h["id"] for h in page2] == [h["id"] for h in hits[1:3]] and page2[0]["rank"] == 2
        plain = c.get("/v1/search", params={"q": "solar", "highlight": "false"}).json()["results"][0]["hits"][0]
        assert "snippet" not in plain


def test_batch_filter_pipeline_and_wire_format(server: Server) -> None:
    with server.client() as c:
        batch = c.post("/v1/search", json={"queries": [{"id": "a", "text": "cats"}, {"id": "b", "text": "moon"}],
                                           "k": 2}).json()
        assert [r["qid"] for r in batch["results"]] == ["a", "b"]
        filtered = c.get("/v1/search", params={"q": "solar", "k": 50, "where": 'lang = "en" AND year >= 2010'}).json()
        assert all(h["meta"]["lang"] == "en" and h["meta"]["year"] >= 2010 for h in filtered["results"][0]["hits"])
        piped = c.get("/v1/search", params={"q": "solar", "pipeline": "rrf(bm25, bm25_rm3) % 5"}).json()
        assert piped["pipeline"] == "rrf(bm25, bm25_rm3) % 5" and len(piped["stages"]) > 2
        wire = c.get("/v1/search", params={"q": "solar", "k": 2, "format": "wire"}).json()["requests"][0]
        assert wire["query"] == {"qid": "0", "text": "solar"}
        cand = wire["candidates"][0]
        assert set(cand) == {"docid", "score", "doc"} and cand["doc"]["segment"] == cand["doc"]["text"]
        from cascade.data.wire import wire_to_hits

        query, hits = wire_to_hits(wire)
        assert hits[0].id == cand["docid"] and query.text == "solar"


def test_docs_info_health_metrics_page_and_schema(server: Server) -> None:
    with server.client() as c:
        doc = c.get("/v1/docs/d3").json()
        assert doc["id"] == "d3" and doc["meta"]["year"] == 2003
        missing = c.get("/v1/docs/nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        info = c.get("/v1/info").json()
        assert info["documents"] >= 61 and info["filter_fields"] == {"year": "int", "lang": "keyword"}
        assert "bm25" in info["stages"] and info["writes"] is True
        assert c.get("/v1/health").json()["status"] == "ok"
        metrics = c.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        for name in ("cascade_http_requests_total", "cascade_http_request_seconds_bucket", "cascade_index_generation",
                     "cascade_http_errors_total"):
            assert name in metrics.text
        page = c.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert c.get("/static/app.js").status_code == 200 and c.get("/static/x.py").status_code == 404
        paths = c.get("/openapi.json").json()["paths"]
        assert {"/v1/search", "/v1/docs", "/v1/docs/{doc_id}", "/v1/docs/delete", "/v1/info", "/v1/health",
                "/metrics", "/v1/optimize"} <= set(paths)


def test_pipeline_needing_an_encoding_the_index_lacks_is_refused_not_encoded(server: Server) -> None:
    """A request never starts a corpus encoding (minutes of CPU on a request thread): 400 with
    how to store it, and the index gains no representation."""
    with server.client() as c:
        for pipeline in ("bm25 % 10 >> dense_rerank", "dense % 10"):
            got = c.get("/v1/search", params={"q": "solar", "pipeline": pipeline})
            assert got.status_code == 400, got.text
            assert "cascade encode" in got.json()["error"]["message"]
        assert not c.get("/v1/info").json()["representations"]


def test_writes_add_update_delete_each_one_commit(server: Server) -> None:
    with server.client() as c:
        gen = c.get("/v1/health").json()["generation"]
        added = c.post("/v1/docs", params={"mode": "add"}, json=[{"id": "w1", "text": "zebra stripes", "year": 2099}])
        assert added.status_code == 200 and added.json()["added"] == 1 and added.json()["generation"] > gen
        assert c.get("/v1/search", params={"q": "zebra"}).json()["results"][0]["hits"][0]["id"] == "w1"
        jsonl = '{"id": "w2", "text": "zebra herd"}\n{"id": "w1", "text": "zebra crossing", "year": 2099}\n'
        up = c.post("/v1/docs", content=jsonl, headers={"content-type": "application/x-ndjson"}).json()
        assert up["added"] == 1 and up["replaced"] == 1
        assert c.get("/v1/docs/w1").json()["text"] == "zebra crossing"
        dup = c.post("/v1/docs", params={"mode": "add"}, json=[{"id": "w2", "text": "again"}])
        assert dup.status_code == 400 and "w2" in dup.json()["error"]["message"]
        assert c.delete("/v1/docs/w2").json()["deleted"] == 1
        assert c.delete("/v1/docs/w2").status_code == 404
        assert c.post("/v1/docs/delete", json={"where": "year = 2099"}).json()["deleted"] == 1
        assert c.get("/v1/search", params={"q": "zebra"}).json()["results"][0]["hits"] == []
        assert c.post("/v1/optimize").status_code == 200


def test_auth_failures(server: Server, tmp_path: Path) -> None:
    with server.client(key=None) as c:
        r = c.post("/v1/docs", json=[{"id": "x", "text": "y"}])
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    with server.client(key="wrong-key-0123456789") as c:
        assert c.post("/v1/docs/delete", json={"ids": ["d1"]}).status_code == 401
        assert c.post("/v1/optimize").status_code == 401
        assert c.get("/v1/search", params={"q": "solar"}).status_code == 200  # reads are open here
    with server.client(key=None) as c:
        assert c.post("/v1/docs", headers={"X-API-Key": KEY}, json=[{"id": "x1", "text": "y"}]).status_code == 200
    closed = start_server(build_index(tmp_path / "j.idx", 5), tmp_path / "log", api_key=None)
    guarded = start_server(tmp_path / "j.idx", tmp_path / "log2", protect_reads=True)
    try:
        with closed.client() as c:
            r = c.post("/v1/docs", json=[{"id": "x", "text": "y"}])
            assert r.status_code == 403 and "api-key-file" in r.json()["error"]["message"]
        with guarded.client(key=None) as c:
            assert c.get("/v1/search", params={"q": "solar"}).status_code == 401
            assert c.get("/v1/health").status_code == 200
        with guarded.client() as c:
            assert c.get("/v1/search", params={"q": "solar"}).status_code == 200
    finally:
        closed.stop()
        guarded.stop()


@pytest.mark.parametrize("call, status, code", [
    (("GET", "/v1/search", {"params": {"q": "solar", "k": 51}}), 422, "invalid"),
    (("GET", "/v1/search", {"params": {"q": "x" * 1001}}), 422, "invalid"),
    (("GET", "/v1/search", {"params": {"q": ""}}), 422, "invalid"),
    (("POST", "/v1/search", {"json": {"queries": [{"id": str(i), "text": "a"} for i in range(6)]}}), 422, "invalid"),
    (("POST", "/v1/search", {"json": {"q": "a", "queries": [{"id": "1", "text": "a"}]}}), 400, "bad_request"),
    (("GET", "/v1/search", {"params": {"q": "a", "pipeline": "rrf(bm25, bm25_rm3, bm25 % 5 >> rm3)"}}), 400, "limit"),
    (("GET", "/v1/search", {"params": {"q": "a", "pipeline": "bm25 >> "}}), 400, "bad_request"),
    (("GET", "/v1/search", {"params": {"q": "a", "pipeline": "run(/etc/passwd)"}}), 400, "limit"),
    (("GET", "/v1/search", {"params": {"q": "a", "pipeline": "bm25 % 5 >> cross_encoder(model=/etc)"}}), 400, "limit"),
    (("GET", "/v1/search", {"params": {"q": "a", "pipeline": "dense(model=/root/.cache)"}}), 400, "limit"),
    (("GET", "/v1/search", {"params": {"q": "a", "pipeline": "bm25 % 5 >> llm_pointwise(model='openai:http://10.0.0.1/v1#m')"}}),
     400, "limit"),
    (("GET", "/v1/search", {"params": {"q": "a", "pipeline": "bm25 % 5 >> llm_listwise(prompt=/etc/passwd)"}}),
     400, "limit"),
    (("GET", "/v1/search", {"params": {"q": "a", "where": "year >>> 3"}}), 400, "bad_request"),
    (("GET", "/v1/search", {"params": {"q": "a", "where": "nosuch = 1"}}), 400, "bad_request"),
    (("POST", "/v1/docs", {"json": [{"id": "big", "text": "x" * 30_000}]}), 413, "body_too_large"),
    (("POST", "/v1/docs", {"content": b"{not json", "headers": {"content-type": "application/json"}}), 400, "bad_request"),
    (("POST", "/v1/docs", {"json": [{"id": "", "text": "x"}]}), 400, "bad_request"),
    (("POST", "/v1/docs", {"json": [{"text": "no id"}]}), 400, "bad_request"),
    (("POST", "/v1/docs/delete", {"json": {}}), 400, "bad_request"),
    (("GET", "/v1/nothing", {}), 404, "not_found"),
    (("PUT", "/v1/search", {}), 405, "method_not_allowed"),
])
def test_limits_and_bad_input_get_clear_4xx_json(server: Server, call: tuple[str, str, dict[str, Any]],
                                                 status: int, code: str) -> None:
    method, path, kwargs = call
    with server.client() as c:
        r = c.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code and body["error"]["status"] == status and body["error"]["message"]
    assert "Traceback" not in r.text and 'File "' not in r.text


def test_streamed_body_over_the_limit_is_413(server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'[{"id": "s", "text": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}]'

    with server.client() as c:
        r = c.post("/v1/docs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_full_queue_answers_429_with_retry_after(tmp_path: Path) -> None:
    srv = start_server(build_index(tmp_path / "q.idx", 3000), tmp_path / "log",
                       limits={"concurrency": 1, "queue": 1})
    try:
        with srv.client() as c:
            c.get("/v1/search", params={"q": "solar", "pipeline": "bm25_rm3"})  # warm: built once

            def one(i: int) -> Any:
                return c.get("/v1/search", params={"q": f"solar wind {WORDS_Q[i % 4]}", "pipeline": "bm25_rm3",
                                                   "k": 1000})

            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(one, range(48)))
        codes = {r.status_code for r in answers}
        assert codes <= {200, 429} and 429 in codes and 200 in codes
        refused = next(r for r in answers if r.status_code == 429)
        assert refused.headers["retry-after"] == "1" and refused.json()["error"]["code"] == "busy"
    finally:
        srv.stop()


WORDS_Q = ["cats", "moon", "fish", "alpha"]


def test_concurrent_searches_during_add_delete_merge_never_see_half_a_commit(server: Server) -> None:
    """Each write adds or deletes a whole batch of 7 documents sharing a marker word: a search
    for the marker must find 0 or 7, never a part; and no request fails."""
    stop = threading.Event()
    seen: list[int] = []
    errors: list[str] = []

    def reader() -> None:
        with server.client() as c:
            while not stop.is_set():
                b = random.randrange(6)
                r = c.get("/v1/search", params={"q": f"marker{b}", "k": 50, "highlight": "false"})
                if r.status_code != 200:
                    errors.append(r.text)
                    continue
                seen.append(len(r.json()["results"][0]["hits"]))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        with server.client() as c:
            for b in range(6):
                docs = [{"id": f"m{b}-{i}", "text": f"marker{b} filler {i}"} for i in range(7)]
                assert c.post("/v1/docs", params={"mode": "add"}, json=docs).status_code == 200
                if b % 2:
                    assert c.post("/v1/docs/delete", json={"ids": [f"m{b - 1}-{i}" for i in range(7)]}).status_code == 200
                if b == 3:
                    assert c.post("/v1/optimize").status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors and seen and set(seen) <= {0, 7}


def test_python_client_has_the_local_index_methods(server: Server) -> None:
    with cascade.Client(server.url, api_key=KEY) as client:
        assert client.add([cascade.Doc("c1", "quokka smiles", title="Quokka")]) == 1
        hits = client.search("quokka", k=3)
        assert hits[0].id == "c1" and hits[0].title == "Quokka" and client.generation is not None
        assert client.update([cascade.Doc("c1", "quokka grins")]) == 1
        assert client.get("c1").text == "quokka grins"
        assert client.search_batch(["quokka", "moon"], k=2)["0"][0].id == "c1"
        assert client.search_wire("quokka", k=1)["candidates"][0]["docid"] == "c1"
        assert client.delete(ids=["c1"]) == 1
        with pytest.raises(cascade.CascadeError, match="404"):
            client.get("c1")
    with cascade.Client(server.url) as anonymous, pytest.raises(cascade.CascadeError, match="401"):
        anonymous.add([cascade.Doc("c2", "x")])


def _acked_writes(url: str, log: list[str], stop: threading.Event) -> None:
    import httpx

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as c:
        i = 0
        while not stop.is_set():
            docs = [{"id": f"k{i}-{j}", "text": f"killtest batch{i} word{j}"} for j in range(20)]
            try:
                r = c.post("/v1/docs", params={"mode": "add"}, json=docs)
            except httpx.HTTPError:
                return  # the server died mid-request: this write was not acknowledged
            if r.status_code == 200:
                log.extend(d["id"] for d in docs)
            i += 1


@pytest.mark.parametrize("kills", [2])
def test_kill_9_during_writes_loses_no_acknowledged_write(tmp_path: Path, kills: int) -> None:
    index = build_index(tmp_path / "k.idx", 20)
    acked: list[str] = []
    for round_ in range(kills):
        srv = start_server(index, tmp_path / f"log{round_}")
        stop = threading.Event()
        writer = threading.Thread(target=_acked_writes, args=(srv.url, acked, stop))
        writer.start()
        time.sleep(1.0 + random.random())
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        stop.set()
        writer.join(30)
    check = subprocess.run([sys.executable, "-m", "cascade.cli", "check", str(index)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert acked, "no write was acknowledged before the kills"
    srv = start_server(index, tmp_path / "log-after")
    try:
        with srv.client() as c:
            for i in range(0, len(acked), 97):
                assert c.get(f"/v1/docs/{acked[i]}").status_code == 200, acked[i]
        reopened = cascade.Index.open(index)
        assert all(n is not None for n in reopened.docs_by_id(acked))
    finally:
        srv.stop()


def test_import_cascade_and_the_client_load_no_server_framework() -> None:
    code = ("import sys, cascade; cascade.Client; import cascade.server.engine; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'uvicorn', 'starlette', 'httpx'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_admission_refuses_beyond_the_queue_and_times_out() -> None:
    import asyncio

    from cascade.server.admission import Admission, Busy, TimedOut

    async def scenario() -> tuple[list[Any], Any]:
        gate = threading.Event()
        adm = Admission("searches", workers=1, queue=1, timeout_s=0.5)
        first = asyncio.ensure_future(adm.run(lambda: gate.wait(5)))
        second = asyncio.ensure_future(adm.run(lambda: 2))
        await asyncio.sleep(0.05)
        try:
            await adm.run(lambda: 3)
            third: Any = "ran"
        except Busy as exc:
            third = exc
        results = await asyncio.gather(first, second, return_exceptions=True)
        gate.set()
        adm.close()
        return results, third

    results, third = asyncio.run(scenario())
    assert isinstance(third, Busy) and third.retry_after == 1
    assert all(isinstance(r, TimedOut) for r in results)


def test_metrics_text_is_prometheus_format() -> None:
    from cascade.server.metrics import Metrics

    m = Metrics()
    m.observe("GET", '/v1/"x"', 200, 0.003)
    m.observe("GET", '/v1/"x"', 503, 20.0)
    m.gauges["cascade_index_generation"] = ("The commit.", lambda: 7)
    text = m.render()
    assert 'cascade_http_requests_total{method="GET",route="/v1/\\"x\\"",status="200"} 1' in text
    assert 'le="0.005"} 1' in text and 'le="+Inf"} 2' in text
    assert 'cascade_http_errors_total{route="/v1/\\"x\\"",kind="server"} 1' in text
    assert "cascade_index_generation 7" in text and text.endswith("\n")


def test_allow_model_lets_a_listed_model_through_and_nothing_else(tmp_path: Path) -> None:
    from cascade.core.errors import NotOffered
    from cascade.server.config import ServerConfig
    from cascade.server.engine import Engine

    config = ServerConfig(build_index(tmp_path / "i.idx"), models=("/srv/models/my-encoder",))
    engine = Engine(config)
    engine._check_arguments("dense", {"model": "/srv/models/my-encoder"})
    engine._check_arguments("llm_pointwise", {"model": "llama-cpp:qwen", "k": 5})
    with pytest.raises(NotOffered, match="--allow-model"):
        engine._check_arguments("dense", {"model": "/srv/models/other"})
