"""The OpenAI-compatible HTTP backend against a real server on 127.0.0.1 (a FastAPI stand-in
speaking /v1/chat/completions with logprobs): answers, label log-probabilities, retries on 429
and 500, a timeout, a server without logprobs, the concurrency limit, the API key."""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cascade.core.errors import CascadeError
from cascade.llm import open_backend

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("httpx")


class State:
    def __init__(self) -> None:
        self.fail: list[int] = []  # status codes to answer before succeeding
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()


def make_app(state: State) -> Any:
    app = fastapi.FastAPI()

    @app.post("/v1/chat/completions")
    def chat(body: dict[str, Any], request: fastapi.Request) -> Any:  # sync: runs in a thread pool
        with state.lock:
            state.requests.append(body)
            state.headers.append(dict(request.headers))
            busy = body["model"] == "busy"
            state.active += busy
            state.peak = max(state.peak, state.active)
            code = state.fail.pop(0) if state.fail else 200
        try:
            if body["model"] == "slow":
                time.sleep(2.0)
            if body["model"] == "busy":
                time.sleep(0.2)
            if code != 200:
                return fastapi.responses.JSONResponse({"error": "try later"}, status_code=code,
                                                      headers={"Retry-After": "0"})
            prompt = body["messages"][0]["content"]
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": prompt[::-1]},
                                      "finish_reason": "stop"}
            if body.get("logprobs") and body["model"] != "nologprobs":
                yes = 0.8 if "cat" in prompt else 0.1
                top = [{"token": "yes", "logprob": math.log(yes)}, {"token": " no", "logprob": math.log(1 - yes)}]
                choice["logprobs"] = {"content": [{"token": "yes", "logprob": math.log(yes), "top_logprobs": top}]}
            return {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice],
                    "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 3, "total_tokens": 0}}
        finally:
            with state.lock:
                state.active -= busy

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, State]]:
    state = State()
    port = free_port()
    config = uvicorn.Config(make_app(state), host="127.0.0.1", port=port, log_level="error")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        if time.time() > deadline:
            pytest.fail("the stand-in server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1", state
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def state(server: tuple[str, State]) -> State:
    st = server[1]
    st.fail.clear()
    st.requests.clear()
    st.headers.clear()
    st.peak = 0
    return st


def backend(url: str, model: str = "m", **options: Any) -> Any:
    return open_backend(f"openai:{url}#{model}", cache=False, **options)


def test_generate_and_usage(server: tuple[str, State], state: State) -> None:
    b = backend(server[0])
    gens = b.generate(["hello world", "abc"], max_tokens=5, temperature=0.0, seed=3)
    assert [g.text for g in gens] == ["dlrow olleh", "cba"]
    assert b.usage.calls == 2 and b.usage.prompt_tokens == 3 and b.usage.completion_tokens == 6
    assert {r["max_tokens"] for r in state.requests} == {5} and state.requests[0]["seed"] == 3


def test_label_logprobs_from_top_logprobs(server: tuple[str, State], state: State) -> None:
    b = backend(server[0])
    cat, dog = b.label_logprobs(["a cat?", "a dog?"], ["yes", "no", "maybe"])
    assert cat["yes"] == pytest.approx(math.log(0.8)) and cat["no"] == pytest.approx(math.log(0.2))
    assert dog["yes"] < dog["no"]
    assert cat["maybe"] < min(cat["yes"], cat["no"])  # not among the top: below every listed token
    assert state.requests[0]["logprobs"] is True and state.requests[0]["max_tokens"] == 1


def test_retries_on_429_and_500(server: tuple[str, State], state: State) -> None:
    state.fail[:] = [429, 500, 503]
    b = backend(server[0], backoff=0.01)
    assert b.generate(["abc"], max_tokens=2)[0].text == "cba"
    assert len(state.requests) == 4


def test_gives_up_after_the_retries_with_one_line(server: tuple[str, State], state: State) -> None:
    state.fail[:] = [500] * 10
    b = backend(server[0], backoff=0.01, retries=2)
    with pytest.raises(CascadeError, match="HTTP 500"):
        b.generate(["abc"], max_tokens=2)
    assert len(state.requests) == 3


def test_a_client_error_is_not_retried(server: tuple[str, State], state: State) -> None:
    state.fail[:] = [400]
    with pytest.raises(CascadeError, match="HTTP 400"):
        backend(server[0], backoff=0.01).generate(["abc"], max_tokens=2)
    assert len(state.requests) == 1


def test_timeout_is_retried_then_reported(server: tuple[str, State], state: State) -> None:
    b = backend(server[0], model="slow", timeout=0.3, retries=1, backoff=0.01)
    start = time.perf_counter()
    with pytest.raises(CascadeError, match="Timeout"):
        b.generate(["abc"], max_tokens=2)
    assert time.perf_counter() - start < 5 and len(state.requests) == 2


def test_a_server_without_logprobs_is_a_clear_error(server: tuple[str, State], state: State) -> None:
    with pytest.raises(CascadeError, match="no token log-probabilities"):
        backend(server[0], model="nologprobs").label_logprobs(["x"], ["yes", "no"])


def test_concurrency_is_limited(server: tuple[str, State], state: State) -> None:
    b = backend(server[0], model="busy", concurrency=2)
    b.generate([f"p{i}" for i in range(6)], max_tokens=2)
    assert state.peak == 2


def test_the_key_comes_from_the_environment(server: tuple[str, State], state: State,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("CASCADE_LLM_API_KEY", "sekrit")
    backend(server[0]).generate(["a"], max_tokens=1)
    assert state.headers[-1]["authorization"] == "Bearer sekrit"


def test_connection_refused_is_one_line() -> None:
    b = backend(f"http://127.0.0.1:{free_port()}/v1", retries=1, backoff=0.01)
    with pytest.raises(CascadeError, match="after 2 attempts"):
        b.generate(["a"], max_tokens=1)


def test_pointwise_stage_over_http(server: tuple[str, State], state: State, tmp_path: Any) -> None:
    import cascade
    from cascade.llm.pointwise import LLMPointwise

    index = cascade.Index.build([cascade.Doc("a", "a dog"), cascade.Doc("b", "a cat")], tmp_path / "i")
    stage = LLMPointwise(index, backend=open_backend(f"openai:{server[0]}#m", cache=False))
    scores = stage.rank("pets", ["a dog", "a cat"])
    assert scores[1] > scores[0]
