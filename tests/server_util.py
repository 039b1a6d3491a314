"""Starting a real server for tests: uvicorn in a subprocess on 127.0.0.1 and a free port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

KEY = "test-key-0123456789abcdef"
WORDS = "alpha beta gamma delta solar wind water cats dogs fish birds moon".split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def small_corpus(n: int = 60) -> list[dict[str, Any]]:
    """Documents with a year and a lang, and one holding markup that must stay text."""
    docs = [{"id": f"d{i}", "title": f"Doc {i}", "text": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(8)),
             "year": 2000 + i % 25, "lang": "en" if i % 2 else "de"} for i in range(n)]
    docs.append({"id": "evil", "title": "<script>window.pwned=1</script>",
                 "text": 'solar <img src=x onerror="window.pwned=2"> <b>bold</b> solar'})
    return docs


def build_index(path: Path, n: int = 60) -> Path:
    import cascade

    cascade.Index.build(small_corpus(n), path, overwrite=True, filter_fields={"year": "int", "lang": "keyword"})
    return path


@dataclass
class Server:
    url: str
    proc: subprocess.Popen  # type: ignore[type-arg]
    log: Path

    def client(self, key: str | None = KEY) -> "httpx.Client":
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_server(index: Path, log: Path, *, api_key: str | None = KEY, limits: dict[str, Any] | None = None,
                 **options: Any) -> Server:
    """uvicorn running ``create_app`` for ``index`` (config passed through the environment)."""
    from cascade.server.config import Limits, ServerConfig

    config = ServerConfig(index, api_key=api_key, limits=Limits(**(limits or {})), **options)
    port = free_port()
    env = {**os.environ, "CASCADE_SERVER_CONFIG": config.to_env()}
    cmd = [sys.executable, "-m", "uvicorn", "cascade.server.app:app_from_env", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(server.url + "/v1/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError("server did not start in 60 s")


def config_json(config: Any) -> str:
    return json.dumps(asdict(config), default=str)
