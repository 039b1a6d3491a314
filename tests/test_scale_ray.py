"""Sharded indexes on Ray actors (a private loopback Ray: 2 CPUs, no dashboard): the same results
as one index, routed writes through the actors, and faults: a shard actor killed mid-batch is
restarted and the batch answered once and whole; a shard that stays dead, or does not answer
in time, is one CascadeError naming it. Slow (Ray takes 10-20 s to start on a loaded 2-core
machine): run with -m slow."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

import cascade
from cascade.core.errors import CascadeError
from cascade.scale import ShardedBM25, ShardedIndex

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_scale import assert_same, synthetic  # noqa: E402

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def built(cluster, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("ray-shards")
    docs, queries = synthetic(3000)
    one = cascade.Index.build(docs, root / "one.idx")
    ShardedIndex.build(docs, root / "s.sidx", shards=4, ray=True).close()  # built in Ray tasks
    return one, root / "s.sidx", queries


def test_ray_shards_answer_as_one_index_and_route_writes(built) -> None:  # type: ignore[no-untyped-def]
    one, path, queries = built
    with ShardedIndex.open(path, ray=True, timeout=60) as sharded:
        assert_same(cascade.BM25(one).search_batch(queries, k=30), ShardedBM25(sharded, k=30).search_batch(queries))
        more, _ = synthetic(3300)
        for target in (one, sharded):
            target.add(more[3000:], merge=False)
            target.delete([d.id for d in more[:300:5]])
        one = one.refresh()
        assert_same(cascade.BM25(one).search_batch(queries, k=30), ShardedBM25(sharded, k=30).search_batch(queries))


def test_a_shard_killed_mid_batch_restarts_and_the_batch_is_answered_once(built) -> None:  # type: ignore[no-untyped-def]
    _, path, queries = built
    local = ShardedIndex.open(path)
    ref = ShardedBM25(local, k=25).search_batch(queries)

    def kill_shard_one(backend) -> None:  # type: ignore[no-untyped-def]
        backend.before_gather = None
        ray.kill(backend.actors[1], no_restart=False)

    with ShardedIndex.open(path, ray=True, timeout=60, delay=1.0) as sharded:
        pid = sharded.backend.one(1, "info")["pid"]
        sharded.backend.before_gather = kill_shard_one
        got = ShardedBM25(sharded, k=25).search_batch(queries)
        assert sharded.backend.resent >= 1
        assert sharded.backend.one(1, "info")["pid"] != pid  # a new process holds shard 1
        assert_same(ref, got)  # nothing lost, nothing twice


def test_a_dead_shard_fails_fast_with_its_name(built) -> None:  # type: ignore[no-untyped-def]
    _, path, queries = built
    with ShardedIndex.open(path, ray=True, timeout=60) as sharded:
        ray.kill(sharded.backend.actors[2], no_restart=True)
        start = time.monotonic()
        with pytest.raises(CascadeError, match="shard shard-002 .* is down"):
            ShardedBM25(sharded, k=10).search_batch(queries)
        assert time.monotonic() - start < 10


def test_a_shard_that_does_not_answer_in_time_is_an_error(built) -> None:  # type: ignore[no-untyped-def]
    _, path, queries = built
    with ShardedIndex.open(path, ray=True, timeout=1.5, delay=5.0) as sharded:
        start = time.monotonic()
        with pytest.raises(CascadeError, match="did not answer bm25 within 1.5 s"):
            ShardedBM25(sharded, k=10).search_batch(queries)
        assert time.monotonic() - start < 6


def test_cli_builds_shards_on_ray_and_searches_them(tmp_path: Path) -> None:
    import json
    import os
    import subprocess

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": f"cats and dogs {i}" if i % 4 else "mice"}) + "\n"
                              for i in range(40)))
    cli = [sys.executable, "-m", "cascade.cli"]
    env = {**os.environ, "COLUMNS": "100"}
    done = subprocess.run([*cli, "index", str(corpus), "-o", str(tmp_path / "s.sidx"), "--shards", "2", "--ray", "local"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    found = subprocess.run([*cli, "search", str(tmp_path / "s.sidx"), "mice", "-k", "2", "--json", "--ray", "local"],
                           capture_output=True, text=True, timeout=300, env=env)
    assert found.returncode == 0, found.stderr[-2000:]
    assert [h["id"] for h in json.loads(found.stdout)["hits"]] == ["d0", "d4"]
