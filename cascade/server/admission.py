"""The bounded work queue: a fixed pool of threads runs the work; at most ``queue`` requests
wait for it; the next one is refused at once (429 with Retry-After) instead of piling up.
A request that waits or runs longer than the timeout is answered 503; its thread finishes in
the background and keeps its place in the count until then, so the pool is never oversubscribed."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")


class Busy(Exception):
    """The queue is full: answered 429 with ``Retry-After``."""

    def __init__(self, what: str, retry_after: int = 1) -> None:
        super().__init__(f"server busy: too many {what} waiting; retry after {retry_after} s")
        self.retry_after = retry_after


class TimedOut(Exception):
    """The work took longer than the request timeout: answered 503."""


class Admission:
    """``workers`` threads, ``queue`` waiting places, ``timeout_s`` per request."""

    def __init__(self, name: str, workers: int, queue: int, timeout_s: float) -> None:
        self.name = name
        self.capacity = workers + queue
        self.timeout_s = timeout_s
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"cascade-{name}")
        self._lock = threading.Lock()
        self.pending = 0  # admitted and not finished (running or waiting)
        self.refused = 0

    def _enter(self) -> None:
        with self._lock:
            if self.pending >= self.capacity:
                self.refused += 1
                raise Busy(self.name)
            self.pending += 1

    def _leave(self, _future: object = None) -> None:
        with self._lock:
            self.pending -= 1

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the pool, or :class:`Busy` / :class:`TimedOut`."""
        self._enter()
        try:
            future = self.pool.submit(fn)
        except RuntimeError:  # the pool is shutting down
            self._leave()
            raise Busy(self.name) from None
        future.add_done_callback(self._leave)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except asyncio.TimeoutError:
            future.cancel()  # still queued: never runs; running: finishes in the background
            raise TimedOut(f"request timed out after {self.timeout_s:g} s") from None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
