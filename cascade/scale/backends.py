"""Calling every shard: in this process one after another (:class:`LocalBackend`), or on Ray
actors, one per shard, in parallel (:class:`RayBackend`). Both take the same calls and give
the same answers; Ray only parallelises.

Ray faults: each actor is created with ``max_restarts``; a call whose actor died (killed, its
node lost) is sent again, and a restarted actor reopens its shard, so a batch is answered once
and whole. A shard whose actor stays dead after ``retries`` resends, or does not answer within
``timeout`` seconds, is a :class:`CascadeError` naming it; no call waits without a limit.
Actors ask for no CPU (``num_cpus=0``): shard actors that held every CPU would starve the tasks
and Ray Data pools a job also runs.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Sequence

from cascade.core.errors import CascadeError
from cascade.scale.worker import ShardWorker

Calls = Sequence[tuple[Any, ...]]
START_TIMEOUT = 120.0  # seconds an actor may take to start and open its shard (a cold, busy node)


class LocalBackend:
    """The shards' workers in this process, called one after another."""

    def __init__(self, paths: Sequence[str], names: Sequence[str]) -> None:
        self.names = list(names)
        self.workers = [ShardWorker(p, n) for p, n in zip(paths, names)]

    def scatter(self, method: str, calls: Calls) -> list[Any]:
        """``method(*calls[i])`` on shard i, for every shard; answers in shard order."""
        return [getattr(w, method)(*args) for w, args in zip(self.workers, calls)]

    def one(self, shard: int, method: str, *args: Any) -> Any:
        return getattr(self.workers[shard], method)(*args)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CascadeError("Ray is not installed: pip install 'cascade-ir[ray]'") from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Ray, initialised: the cluster at ``address`` ("auto" = the one `ray start` runs here), or
    a private local one (loopback only, no dashboard) when ``address`` is None."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                     _node_ip_address="127.0.0.1", logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = address or "a local Ray"
        raise CascadeError(f"cannot connect to Ray at {where}: {str(err).splitlines()[0]}") from None
    return ray


class RayBackend:
    """One Ray actor per shard (each holds its shard's snapshot)."""

    def __init__(self, paths: Sequence[str], names: Sequence[str], *, address: str | None = None,
                 num_cpus: int | None = None, timeout: float = 60.0, retries: int = 3, max_restarts: int = 3,
                 delay: float = 0.0, before_gather: Callable[["RayBackend"], None] | None = None) -> None:
        self.ray = connect(address, num_cpus)
        self.names, self.paths = list(names), list(paths)
        self.timeout, self.retries = timeout, retries
        self.before_gather = before_gather  # a test hook: runs while a scatter's calls are in flight
        self.resent = 0  # calls sent again after their actor died
        remote = self.ray.remote(ShardWorker).options(num_cpus=0, max_restarts=max_restarts, max_task_retries=0,
                                                      scheduling_strategy="SPREAD")
        self.actors = [remote.remote(p, n, delay) for p, n in zip(paths, names)]
        refs = [actor.info.remote() for actor in self.actors]  # every shard opened, or one clear error now
        for s, ref in enumerate(refs):
            self._get(s, ref, "info", (), max(timeout, START_TIMEOUT))

    def scatter(self, method: str, calls: Calls) -> list[Any]:
        refs = [getattr(actor, method).remote(*args) for actor, args in zip(self.actors, calls)]
        if self.before_gather is not None:
            self.before_gather(self)
        return [self._get(s, ref, method, args) for s, (ref, args) in enumerate(zip(refs, calls))]

    def one(self, shard: int, method: str, *args: Any) -> Any:
        return self._get(shard, getattr(self.actors[shard], method).remote(*args), method, args)

    def _get(self, shard: int, ref: Any, method: str, args: tuple[Any, ...], timeout: float | None = None) -> Any:
        """The answer of ``ref``, resending the call while the actor restarts."""
        ray = self.ray
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        for attempt in range(self.retries + 1):
            try:
                return ray.get(ref, timeout=max(0.1, deadline - time.monotonic()))
            except ray.exceptions.RayTaskError as err:  # the method raised: the same error, here
                cause = getattr(err, "cause", None)
                raise (cause if isinstance(cause, Exception) else CascadeError(str(err).splitlines()[0])) from None
            except ray.exceptions.GetTimeoutError:
                try:
                    ray.cancel(ref)  # actor tasks: a request; the answer, if it comes, is dropped
                except Exception:  # noqa: BLE001 - best effort, the error below is what matters
                    pass
                raise CascadeError(f"shard {self.names[shard]} ({self.paths[shard]}) did not answer {method} "
                                   f"within {timeout:g} s") from None
            except ray.exceptions.RayActorError as err:
                if attempt == self.retries or time.monotonic() >= deadline:
                    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                    raise CascadeError(f"shard {self.names[shard]} ({self.paths[shard]}) is down after "
                                       f"{attempt + 1} tries: {reason}") from None
                self.resent += 1
                time.sleep(min(0.2 * 2 ** attempt, 2.0))
                ref = getattr(self.actors[shard], method).remote(*args)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
        self.actors = []
