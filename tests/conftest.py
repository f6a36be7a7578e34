"""Session-wide fixtures: a private Redis-compatible store this test session starts itself (never one it did
not start, unless PLACEGATE_TEST_REDIS_URL names one explicitly), and per-test clients on a flushed database.

``PLACEGATE_TEST_STORE=cluster`` (``make test-cluster``) runs the whole suite on a local Redis Cluster of three
primaries and three replicas (gateway/localcluster.py) instead of one server: ``redis_url`` is then a
``redis+cluster://`` URL and ``redis`` a cluster client. Tests that need THE one server (killing it, reading its
AOF, supervising it) carry ``single_node`` and skip there, each with its reason.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import pytest
from redis import Redis as SyncRedis
from redis import RedisCluster as SyncCluster
from redis.asyncio import Redis
from redis.cluster import ClusterNode as SyncNode

from gateway.embedded import EmbeddedServer
from gateway.localcluster import LocalCluster
from gateway.privacy import auditfields
from gateway.privacy.audit import set_trail_secret
from gateway.redisio import MultiHostUrl, connect_redis

# A misfit audit value is a programming error in the tests (production drops it and says so in the entry).
auditfields.STRICT = True

ON_CLUSTER = os.environ.get("PLACEGATE_TEST_STORE", "single") == "cluster"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "single_node(reason): needs one server of its own; skipped on a cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not ON_CLUSTER:
        return
    for item in items:
        marker = item.get_closest_marker("single_node")
        if marker is not None:
            reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "needs one server")
            item.add_marker(pytest.mark.skip(reason=f"single-node only: {reason}"))


def sync_client(url: str) -> SyncRedis:
    """A blocking client of the test store (a cluster client for a ``redis+cluster://`` URL)."""
    if url.startswith("redis+cluster://"):
        hosts = MultiHostUrl.parse(url).hosts
        return cast(SyncRedis, SyncCluster(startup_nodes=[SyncNode(host, port) for host, port in hosts]))
    return SyncRedis.from_url(url)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of the test store: a private server on a unix socket in a temp dir with persistence off, or (on
    ``PLACEGATE_TEST_STORE=cluster``) a private 3-primary, 3-replica cluster on free ports of 127.0.0.1."""
    explicit = os.environ.get("PLACEGATE_TEST_REDIS_URL")
    if explicit:
        yield explicit
        return
    with tempfile.TemporaryDirectory(prefix="placegate-test-redis-") as tmp:
        if ON_CLUSTER:
            cluster = LocalCluster(Path(tmp)).start()
            try:
                yield cluster.url
            finally:
                cluster.stop()
            return
        # Dies with this session even when it is killed (a hung run ended with SIGKILL left servers behind).
        server = EmbeddedServer(Path(tmp), persistent=False, die_with_parent=True)
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture(scope="session")
def aof_cluster() -> Iterator[LocalCluster]:
    """A private 3-primary, 3-replica cluster with AOF on (RDB uncompressed, so a byte search of its files sees every
    stored value), in both suites: the session's test cluster runs without persistence. Started once, on first use."""
    with tempfile.TemporaryDirectory(prefix="pg-aofcl-") as tmp:
        cluster = LocalCluster(Path(tmp), extra_args=("--appendonly", "yes", "--rdbcompression", "no",
                                                      "--enable-debug-command", "yes")).start()  # fmt: skip
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = connect_redis(redis_url)
    await client.flushdb()  # on a cluster: every primary (redis-py sends FLUSHDB to all of them)
    set_trail_secret(bytes(range(32)))  # tests that build an app switch to its secret at create_app
    try:
        yield client
    finally:
        await client.aclose()
