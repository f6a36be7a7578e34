"""``redis_errors``, the one translator at the store boundary, on real failures: a server killed under a client
that was connected to it, a socket nobody listens on, and a server that refuses a write. Every public store method
raises ``StoreUnavailableError`` then, never a redis exception (issue 12, point 4)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from crypto.keys import Alg, SigningKey
from crypto.native import Colour
from crypto.sealing import Sealer
from crypto.trust import TrustedKey, Usage
from gateway import keyspace
from gateway.app import create_app
from gateway.batcher import CommandBatcher
from gateway.dispatch.feature import load_tables
from gateway.dispatch.store import CaseStore, case_id_for_event
from gateway.dispatch.worker import IntakeWorker, sweep_open_cases, trim_to_retention
from gateway.embedded import EmbeddedServer
from gateway.errors import NotDurableError, StoreUnavailableError
from gateway.principals import Principal, Role
from gateway.privacy.audit import query_audit, record_privileged, trim_before, verify_chain
from gateway.privacy.retention import retention_report
from gateway.privacy.subjects import subject_access
from gateway.privacy.tracing import (
    active_principal,
    case_in_trace_scope,
    consume_approval,
    grant_approval,
    load_approval,
    place_filter,
    trace_holder,
)
from gateway.redisio import connect_redis, redis_errors
from gateway.settings import DispatchSettings, Secret, Settings
from gateway.status.cache import StatusRecord
from gateway.status.writer import StatusWriter
from gateway.trust.dsc import DscRegistry
from gateway.trust.registry import Place, Registry
from policy.casework import Actor, Case, new_case
from policy.casework import Role as CaseRole
from policy.deadlines import load_default_deadline_table
from policy.routing import EventClass
from policy.status import HolderStatus, TestResult
from tests.gateway.conftest import PrivateServerFactory

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def server(make_private_server: PrivateServerFactory) -> EmbeddedServer:
    """A private server this test may kill (never the session's)."""
    return make_private_server()


@pytest.fixture
async def connected(server: EmbeddedServer) -> AsyncIterator[Redis]:
    client = connect_redis(server.url)
    try:
        assert await client.ping()
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def nobody_listens(tmp_path: Path) -> AsyncIterator[Redis]:
    client = connect_redis(f"unix://{tmp_path}/no-such.sock")
    try:
        yield client
    finally:
        await client.aclose()


# --- the translator itself ------------------------------------------------------------------------------------
async def test_a_killed_server_under_a_connected_client_is_store_unavailable(
    server: EmbeddedServer, connected: Redis
) -> None:
    server.stop(kill=True)
    with pytest.raises(StoreUnavailableError) as caught, redis_errors("cases"):
        await connected.get("k")
    assert caught.value.code == "store_unavailable"
    assert isinstance(caught.value.__cause__, RedisError | OSError)


async def test_a_socket_nobody_listens_on_is_store_unavailable(nobody_listens: Redis) -> None:
    with pytest.raises(StoreUnavailableError) as caught, redis_errors("cases"):
        await nobody_listens.ping()
    assert isinstance(caught.value.__cause__, RedisError)


async def test_an_os_error_and_a_timeout_are_store_unavailable() -> None:
    for error in (ConnectionRefusedError(111, "refused"), TimeoutError()):
        with pytest.raises(StoreUnavailableError) as caught, redis_errors("cases"):
            raise error
        assert caught.value.__cause__ is error


@pytest.mark.parametrize("error", [ValueError("bad"), NotDurableError("late"), KeyError("k")])
async def test_errors_that_are_not_the_stores_pass_unchanged(error: Exception) -> None:
    with pytest.raises(type(error)) as caught, redis_errors("cases"):
        raise error
    assert caught.value is error


async def test_an_error_reply_a_site_handles_itself_is_caught_inside_the_translator(redis: Redis) -> None:
    await redis.set("k", "not a hash")
    with redis_errors("cases"):
        try:
            await redis.hgetall("k")
            handled = False
        except ResponseError:  # WRONGTYPE: a site may treat a reply error its own way
            handled = True
    assert handled
    with pytest.raises(StoreUnavailableError), redis_errors("cases"):
        await redis.hgetall("k")  # the same reply, not handled: translated


# --- every public store method, on a server killed after it answered -------------------------------------------
def _case() -> Case:
    return new_case(case_id=case_id_for_event("ev-1"), event_class=EventClass.STATUS_RED, place_id="place-a",
                    jurisdiction=("city", "d1"), department="health", actor=Actor("site", CaseRole.SOURCE), now=NOW,
                    deadlines=load_default_deadline_table())


def _key() -> TrustedKey:
    public = SigningKey.generate(Alg.ES256).public_key()
    return TrustedKey.create(public, usage=Usage.HEALTH, not_before=NOW, not_after=NOW + timedelta(days=1))


Call = Callable[[Redis], Awaitable[object]]


def _worker(redis: Redis) -> IntakeWorker:
    routing, deadlines = load_tables(DispatchSettings())
    return IntakeWorker(redis, CaseStore(redis), routing=routing, deadlines=deadlines, sealer=Sealer(bytes(32)),
                        consumer="c1")


async def _upsert(redis: Redis) -> object:
    writer = StatusWriter.standalone(redis, secret=bytes(32), status_buckets=1024, status_ttl_s=300)
    status = HolderStatus(Colour.GREEN, NOW, NOW, TestResult.NEGATIVE, False)
    try:
        return await writer.upsert_statuses([StatusRecord("holder-1", status)])
    finally:
        await writer.aclose()


async def _batcher_run(redis: Redis) -> object:
    batcher = CommandBatcher(redis)
    try:
        return await batcher.run((("PING",),))
    finally:
        await batcher.aclose()


STORE_CALLS: dict[str, Call] = {
    "case.aof_enabled": lambda r: CaseStore(r).aof_enabled(),
    "case.write": lambda r: CaseStore(r).write(None, _case()),
    "case.ensure_durable": lambda r: CaseStore(r).ensure_durable(_case()),
    "case.update": lambda r: CaseStore(r).update(_case().case_id, lambda c: c),
    "case.get": lambda r: CaseStore(r).get(_case().case_id),
    "case.get_many": lambda r: CaseStore(r).get_many([_case().case_id]),
    "case.holder": lambda r: CaseStore(r).holder(_case().case_id),
    "case.scan_open": lambda r: CaseStore(r).scan_open(0, 10),
    "case.drop_open": lambda r: CaseStore(r).drop_open(_case().case_id),
    "case.created_between": lambda r: CaseStore(r).created_between(NOW - timedelta(days=1), NOW, limit=10),
    "case.append_intake": lambda r: CaseStore(r).append_intake({"event_id": "ev-1"}),
    "case.request_extension": lambda r: CaseStore(r).request_extension(_case().case_id, {"requested_at": "1"}),
    "case.extension_request": lambda r: CaseStore(r).extension_request(_case().case_id),
    "worker.ensure_group": lambda r: _worker(r).ensure_group(),
    "worker.run_once": lambda r: _worker(r).run_once(),
    "worker.trim_to_retention": lambda r: trim_to_retention(CaseStore(r), now=NOW),
    "worker.sweep_open_cases": lambda r: sweep_open_cases(CaseStore(r), now=NOW),
    "audit.record_privileged": lambda r: record_privileged(r, actor="cli:t", action="place_add", obj="place:a"),
    "audit.query_audit": lambda r: query_audit(r, since=NOW - timedelta(days=1), until=NOW, limit=10),
    "audit.verify_chain": lambda r: verify_chain(r),
    "audit.trim_before": lambda r: trim_before(r, cutoff=NOW - timedelta(days=4 * 366), now=NOW, actor="cli:t"),
    "tracing.trace_holder": lambda r: trace_holder(r, "holder-1", since=NOW - timedelta(days=1), until=NOW),
    "tracing.grant_approval": lambda r: grant_approval(r, approver_id="po", approver_role="privacy_officer",
                                                       requester_id="hd", case_ref="c1", purpose="contact_tracing",
                                                       expires_at=NOW + timedelta(days=1), subject="sh_x",
                                                       since=NOW - timedelta(days=1), until=NOW),
    "tracing.load_approval": lambda r: load_approval(r, "apv_" + "0" * 32),
    "tracing.consume_approval": lambda r: consume_approval(r, "apv_" + "0" * 32),
    "tracing.active_principal": lambda r: active_principal(r, "disp-1", NOW),
    "tracing.case_in_trace_scope": lambda r: case_in_trace_scope(
        r, Principal("disp-1", Role.DISPATCHER, jurisdiction="city"), "c" + "0" * 20),
    "tracing.place_filter": lambda r: place_filter(r, Principal("disp-1", Role.DISPATCHER, jurisdiction="c"))("a"),
    "subjects.subject_access": lambda r: subject_access(r, "sh_" + "0" * 32),
    "retention.retention_report": lambda r: retention_report(r, now=NOW, retention_days=21, status_ttl_s=300),
    "dsc.import_certificates": lambda r: DscRegistry(r).import_certificates([], now=NOW),
    "dsc.version": lambda r: DscRegistry(r).version(),
    "dsc.load": lambda r: DscRegistry(r).load(),
    "registry.load_trust": lambda r: Registry(r).load_trust(),
    "registry.trust_version": lambda r: Registry(r).trust_version(),
    "registry.put_trusted_key": lambda r: Registry(r, actor="cli:t").put_trusted_key(_key()),
    "registry.import_trusted_key": lambda r: Registry(r, actor="cli:t").import_trusted_key(_key()),
    "registry.add_place": lambda r: Registry(r, actor="cli:t").add_place(Place("place-a", "A", "A", "city/d1")),
    "registry.get_place": lambda r: Registry(r).get_place("place-a"),
    "registry.list_places": lambda r: Registry(r).list_places(),
    "registry.add_principal": lambda r: Registry(r, actor="cli:t").add_principal(
        Principal("dev-x", Role.DEVICE, frozenset({"place-a"})), "ab" * 32),
    "registry.get_principal": lambda r: Registry(r).get_principal("ab" * 32),
    "registry.principal_exists": lambda r: Registry(r).principal_exists("dev-x"),
    "registry.principal_by_id": lambda r: Registry(r).principal_by_id("dev-x"),
    "registry.revoke_principal": lambda r: Registry(r, actor="cli:t").revoke_principal("dev-x"),
    "registry.list_principals": lambda r: Registry(r).list_principals(),
    "status.upsert_statuses": _upsert,
    "batcher.run": _batcher_run,
}


@pytest.mark.parametrize("call", list(STORE_CALLS.values()), ids=list(STORE_CALLS))
async def test_every_store_method_is_store_unavailable_when_the_server_was_killed(
    call: Call, server: EmbeddedServer, connected: Redis
) -> None:
    server.stop(kill=True)
    with pytest.raises(StoreUnavailableError):
        await call(connected)


@pytest.mark.parametrize("call", list(STORE_CALLS.values()), ids=list(STORE_CALLS))
async def test_every_store_method_is_store_unavailable_when_nobody_listens(call: Call, nobody_listens: Redis) -> None:
    with pytest.raises(StoreUnavailableError):
        await call(nobody_listens)


async def test_a_case_write_after_a_working_start_is_store_unavailable(
    server: EmbeddedServer, connected: Redis
) -> None:
    store = CaseStore(connected)
    await store.aof_enabled()  # answered once, then remembered: the write itself meets the dead server
    server.stop(kill=True)
    with pytest.raises(StoreUnavailableError):
        await store.write(None, _case())


async def test_readiness_says_redis_is_down_when_the_server_was_killed(
    tmp_path: Path, server: EmbeddedServer, connected: Redis
) -> None:
    app = create_app(Settings(data_dir=tmp_path, secret=Secret(bytes(32))), redis=connected)
    async with TestClient(TestServer(app)) as client:
        assert (await (await client.get("/readyz")).json())["redis"] is True
        server.stop(kill=True)
        resp = await client.get("/readyz")
        assert (resp.status, (await resp.json())["redis"]) == (503, False)


async def test_a_gateway_starting_against_an_unreachable_server_fails_with_store_unavailable(
    tmp_path: Path, nobody_listens: Redis
) -> None:
    server = TestServer(create_app(Settings(data_dir=tmp_path, secret=Secret(bytes(32))), redis=nobody_listens))
    try:
        with pytest.raises(StoreUnavailableError):
            await server.start_server()
    finally:
        await server.close()


# --- registry writes that pass their audit and then fail --------------------------------------------------------
@pytest.fixture
async def audit_only(server: EmbeddedServer, connected: Redis) -> AsyncIterator[Redis]:
    """A client that may write the audit trail and read the principal ids, nothing else: every registry write
    passes its audit entry and then meets a refusal (NOPERM) from the server."""
    await connected.execute_command("ACL", "SETUSER", "auditonly", "on", ">pw", "~pg:{audit}:*",
                                    "~" + keyspace.AUDIT_HWM,
                                    "%R~" + keyspace.PRINCIPAL_IDS, "+@all")
    await connected.hset(keyspace.PRINCIPAL_IDS, "dev-x", "ab" * 32)
    client = connect_redis(f"unix://auditonly:pw@{server.socket_path}")
    try:
        yield client
    finally:
        await client.aclose()


REGISTRY_WRITES = ["registry.put_trusted_key", "registry.add_place", "registry.add_principal",
                   "registry.revoke_principal"]


@pytest.mark.parametrize("name", REGISTRY_WRITES)
async def test_a_registry_write_refused_after_its_audit_is_store_unavailable(
    name: str, audit_only: Redis, connected: Redis
) -> None:
    with pytest.raises(StoreUnavailableError) as caught:
        await STORE_CALLS[name](audit_only)
    assert isinstance(caught.value.__cause__, RedisError)
    assert await connected.xlen(keyspace.AUDIT_STREAM) == 1  # the audit passed: the write itself was refused
