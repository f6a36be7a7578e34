"""Session-wide fixtures: a private Redis-compatible server this test session starts itself (never one it did
not start, unless PLACEGATE_TEST_REDIS_URL names one explicitly), and per-test clients on a flushed database."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.embedded import EmbeddedServer
from gateway.privacy import auditfields
from gateway.privacy.audit import set_trail_secret
from gateway.redisio import connect_redis

# A misfit audit value is a programming error in the tests (production drops it and says so in the entry).
auditfields.STRICT = True


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of the test server: a private one on a unix socket in a temp dir, with persistence off."""
    explicit = os.environ.get("PLACEGATE_TEST_REDIS_URL")
    if explicit:
        yield explicit
        return
    with tempfile.TemporaryDirectory(prefix="placegate-test-redis-") as tmp:
        # Dies with this session even when it is killed (a hung run ended with SIGKILL left servers behind).
        server = EmbeddedServer(Path(tmp), persistent=False, die_with_parent=True)
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = connect_redis(redis_url)
    await client.flushdb()
    set_trail_secret(bytes(range(32)))  # tests that build an app switch to its secret at create_app
    try:
        yield client
    finally:
        await client.aclose()
