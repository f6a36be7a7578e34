"""What operators see: one JSON access-log line per answer with a request id, per-route latency, the dispatch
backlog and trust-list ages as gauges, /metrics behind a token or loopback only, and readiness covering every
trust list the configuration requires. All through a real aiohttp server on the suite's real store."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import socket
import sys
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from gateway import keyspace
from gateway.app import create_app
from gateway.appstate import ACCESS_LOG, CLOCK, METRICS
from gateway.dispatch.gauges import sample_backlog
from gateway.logjson import FLUSH_AFTER_S, FLUSH_LINES, AccessLog, JsonFormatter
from gateway.settings import Secret, Settings, SettingsError
from gateway.trust.dsc import DscRegistry
from gateway.trust.refresh import refresh_dsc
from tests.crypto.conftest import make_dsc
from tests.gateway.conftest import World, WorldFactory

_ACCESS_KEYS = {"ts", "level", "logger", "request_id", "method", "route", "status", "duration_ms", "principal"}


def _capture(world: World) -> io.BytesIO:
    """Point the app's access log at a buffer (the served process writes it to stderr)."""
    sink = io.BytesIO()
    world.client.app[ACCESS_LOG].stream = sink
    return sink


def _lines(sink: io.BytesIO) -> list[dict[str, object]]:
    world_lines = sink.getvalue().splitlines()
    return [orjson.loads(line) for line in world_lines]


async def test_every_answer_gets_one_access_log_line_with_its_request_id_and_no_personal_data(world: World) -> None:
    sink = _capture(world)
    await world.set_status("holder-obs-1")
    code = world.code("holder-obs-1")
    first = await world.client.post("/v1/scan", json={"code": code}, headers=world.auth("dev-a"))
    mine = await world.client.post(
        "/v1/scan", json={"code": code}, headers={**world.auth("dev-a"), "X-Request-Id": "turnstile-7.42"}
    )
    # A code string pasted where an id belongs is not kept: it would reach the log otherwise.
    pasted = await world.client.get("/healthz", headers={"X-Request-Id": code})
    refused = await world.client.get("/v1/cases", headers={"Authorization": "Bearer nope"})
    missing = await world.client.get("/no/such/path")
    world.client.app[ACCESS_LOG].flush()
    lines = _lines(sink)
    assert [(x["route"], x["status"]) for x in lines] == [
        ("/v1/scan", 200),
        ("/v1/scan", 200),
        ("/healthz", 200),
        ("/v1/cases", 401),
        ("unmatched", 404),
    ]
    assert all(set(x) == _ACCESS_KEYS for x in lines)
    ids = [r.headers["X-Request-Id"] for r in (first, mine, pasted, refused, missing)]
    assert [x["request_id"] for x in lines] == ids
    assert ids[1] == "turnstile-7.42" and ids[2] != code and len(ids[2]) == 16
    assert len(set(ids)) == 5
    assert [x["principal"] for x in lines] == ["dev-a", "dev-a", None, None, None]
    assert all(isinstance(x["duration_ms"], float) and x["duration_ms"] >= 0 for x in lines)
    text = sink.getvalue()
    assert b"holder-obs-1" not in text and code.encode()[:40] not in text
    assert world.tokens["dev-a"].encode() not in text


async def test_the_access_log_can_be_turned_off(make_world: WorldFactory) -> None:
    world = await make_world(access_log=False)
    assert ACCESS_LOG not in world.client.app
    assert (await world.client.get("/healthz")).headers["X-Request-Id"]  # the id is answered all the same


def test_application_records_are_json_lines_naming_an_exception_by_class_only() -> None:
    try:
        raise ValueError("holder-secret-ref")
    except ValueError:
        record = logging.LogRecord("placegate.x", logging.ERROR, __file__, 1, "failed %s", ("step",), sys.exc_info())
    line = orjson.loads(JsonFormatter().format(record))
    assert {k: line[k] for k in ("level", "logger", "msg", "exc")} == {
        "level": "error",
        "logger": "placegate.x",
        "msg": "failed step",
        "exc": "ValueError",
    }
    assert "holder-secret-ref" not in JsonFormatter().format(record)


async def test_access_lines_are_written_together_within_the_flush_interval() -> None:
    sink = io.BytesIO()
    log = AccessLog(sink, clock=lambda: 1_700_000_000.5)
    for i in range(3):
        log.record(request_id=f"r{i}", method="GET", route="/healthz", status=200, duration_s=0.001, principal=None)
    await asyncio.sleep(0)
    assert sink.getvalue() == b""  # not one write per loop turn: the buffer waits up to FLUSH_AFTER_S
    # The flush timer was set before this sleep's, with an earlier deadline, so it has fired when the sleep ends.
    await asyncio.sleep(FLUSH_AFTER_S * 2)
    assert [x["request_id"] for x in _lines(sink)] == ["r0", "r1", "r2"]
    assert _lines(sink)[0]["ts"] == "2023-11-14T22:13:20.500Z"
    log.record(request_id="r3", method="GET", route="/healthz", status=200, duration_s=0.001, principal=None)
    await asyncio.sleep(FLUSH_AFTER_S * 2)  # a new buffer gets a new timer
    assert [x["request_id"] for x in _lines(sink)] == ["r0", "r1", "r2", "r3"]


async def test_a_full_access_log_buffer_is_written_at_once() -> None:
    sink = io.BytesIO()
    log = AccessLog(sink)
    for i in range(FLUSH_LINES - 1):
        log.record(request_id=f"r{i}", method="GET", route="/healthz", status=200, duration_s=0.001, principal=None)
    assert sink.getvalue() == b""
    log.record(request_id="last", method="GET", route="/healthz", status=200, duration_s=0.001, principal=None)
    lines = _lines(sink)
    assert len(lines) == FLUSH_LINES and lines[-1]["request_id"] == "last"


async def test_lines_still_buffered_are_written_when_the_app_stops(make_world: WorldFactory) -> None:
    world = await make_world()
    sink = _capture(world)
    world.client.app[ACCESS_LOG].flush_after_s = 3600.0  # no timer writes the line first, however slow the machine
    answer = await world.client.get("/healthz")
    assert sink.getvalue() == b""
    await world.client.close()  # runs the app's cleanup, as a stopping process does
    assert [x["request_id"] for x in _lines(sink)] == [answer.headers["X-Request-Id"]]


async def test_latency_is_a_histogram_per_route_template(world: World) -> None:
    await world.client.get("/healthz")
    await world.client.get("/v1/cases/case_does_not_exist", headers=world.auth("dispatcher"))
    text = await (await world.client.get("/metrics")).text()
    assert 'placegate_http_request_seconds_count{route="/healthz"}' in text
    assert 'placegate_http_request_seconds_count{route="/v1/cases/{case_id}"}' in text
    assert "case_does_not_exist" not in text


async def test_the_dispatch_backlog_and_trust_list_ages_are_gauges(world: World) -> None:
    redis = world.redis
    await redis.sadd(keyspace.DISPATCH_OPEN, "case_gauge_1", "case_gauge_2")
    await redis.expire(keyspace.DISPATCH_OPEN, 3600)
    await redis.xadd(keyspace.DISPATCH_DEADLETTER, {"reason": "test"})
    await redis.expire(keyspace.DISPATCH_DEADLETTER, 3600)
    try:
        await sample_backlog(redis, world.client.app[METRICS])
        text = await (await world.client.get("/metrics")).text()
    finally:
        await redis.srem(keyspace.DISPATCH_OPEN, "case_gauge_1", "case_gauge_2")
        await redis.delete(keyspace.DISPATCH_DEADLETTER)
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("placegate_") and " " in line
    }
    assert values["placegate_dispatch_open_cases"] >= 2
    assert values["placegate_dispatch_dead_letters"] >= 1
    assert "placegate_dispatch_intake_events" in values and "placegate_dispatch_intake_pending" in values
    assert 0 <= values['placegate_trust_list_age_seconds{list="native"}'] < 60


async def test_metrics_need_the_token_when_one_is_set(make_world: WorldFactory) -> None:
    token = Secret(bytes(range(32)))
    world = await make_world(metrics_token=token)
    assert (await world.client.get("/metrics")).status == 401
    wrong = await world.client.get("/metrics", headers={"Authorization": "Bearer " + "ab" * 32})
    assert (wrong.status, (await wrong.json())["error"]) == (401, "invalid_token")
    good = await world.client.get("/metrics", headers={"Authorization": "Bearer " + token.reveal().hex()})
    assert good.status == 200 and "placegate_scans_total" in await good.text()


def _non_loopback_address() -> str | None:
    """An address of this host that is not loopback (a UDP connect only picks a route; nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


async def test_without_a_token_metrics_answer_loopback_peers_only(world: World, redis: Redis) -> None:
    assert (await world.client.get("/metrics")).status == 200  # the test client is 127.0.0.1
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this host has no non-loopback address to connect from")
    client = TestClient(TestServer(create_app(world.settings, redis=redis), host=address))
    await client.start_server()
    try:
        resp = await client.get("/metrics")
        assert (resp.status, (await resp.json())["error"]) == (403, "forbidden")
        assert (await client.get("/healthz")).status == 200
    finally:
        await client.close()


def test_a_short_metrics_token_or_an_unknown_trust_list_is_refused() -> None:
    with pytest.raises(SettingsError, match="PLACEGATE_METRICS_TOKEN"):
        Settings(metrics_token=Secret(b"x" * 8)).validate()
    with pytest.raises(SettingsError, match="PLACEGATE_READY_TRUST_LISTS"):
        Settings(ready_trust_lists="native,eu").validate()
    with pytest.raises(SettingsError, match="PLACEGATE_LOG_FORMAT"):
        Settings(log_format="xml").validate()


async def test_readiness_needs_the_dsc_list_when_the_configuration_requires_it(make_world: WorldFactory) -> None:
    world = await make_world(ready_trust_lists="native,dsc")
    app = world.client.app
    await world.redis.delete(keyspace.DSC_TRUST, keyspace.DSC_TRUST_VERSION, keyspace.DSC_TRUST_IMPORTED_AT)
    await refresh_dsc(app, force=True)
    resp = await world.client.get("/readyz")
    body = await resp.json()
    assert (resp.status, body["reasons"], body["dsc_list"]) == (503, ["dsc_list_not_imported"], "not_imported")

    now = datetime.now(UTC)
    try:
        await DscRegistry(world.redis).import_certificates([make_dsc().der], now=now)
        assert await refresh_dsc(app)
        resp = await world.client.get("/readyz")
        assert (resp.status, (await resp.json())["dsc_list"]) == (200, "fresh")
        app[CLOCK].now = lambda: now + timedelta(seconds=world.settings.dsc_trust_fail_after_s + 1)
        resp = await world.client.get("/readyz")
        body = await resp.json()
        assert (resp.status, body["reasons"], body["dsc_list"]) == (503, ["dsc_list_stale"], "stale")
    finally:
        await world.redis.delete(keyspace.DSC_TRUST, keyspace.DSC_TRUST_VERSION, keyspace.DSC_TRUST_IMPORTED_AT)
