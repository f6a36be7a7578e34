"""The hash-chained audit trail on the real Redis: concurrent writers, tamper detection, bounded queries, trim."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from redis.asyncio import Redis

from gateway import keyspace
from gateway.principals import Principal, Role
from gateway.privacy.audit import (
    AUDIT_RETENTION,
    query_audit,
    record_access,
    record_privileged,
    trim_before,
    verify_chain,
)
from gateway.redisio import connect_redis
from tests.gateway.conftest import WorldFactory

NOW = datetime(2024, 3, 15, 10, 0, tzinfo=UTC)
OFFICER = Principal("po-1", Role.PRIVACY_OFFICER)
DISPATCHER = Principal("disp-1", Role.DISPATCHER, jurisdiction="city/d1")

Rows = list[tuple[bytes, dict[bytes, bytes]]]
CLI_ENV = {"PLACEGATE_SECRET": bytes(range(32)).hex()}  # the conftest's trail key, so the CLI checks its MACs


def case_id(i: int) -> str:
    return f"c{i:020x}"


async def _xr(redis: Redis) -> Rows:
    return cast(Rows, await redis.xrange(keyspace.AUDIT_STREAM))


async def _last(redis: Redis) -> tuple[bytes, dict[bytes, bytes]]:
    return cast(Rows, await redis.xrevrange(keyspace.AUDIT_STREAM, count=1))[0]


async def _fill(redis: Redis, n: int, *, start: datetime = NOW) -> None:
    for i in range(n):
        who = OFFICER if i % 2 == 0 else DISPATCHER
        await record_access(redis, principal=who, action="trace" if i % 3 == 0 else "case_read",
                            obj=f"case:{case_id(i)}", purpose="epidemic_prevention", now=start + timedelta(minutes=i),
                            case_ref=case_id(i), result_count=i)


async def _rewrite(redis: Redis, mutate: Callable[[Rows], Rows]) -> None:
    """Tamper as someone with write access to Redis would: rewrite the stream with the same ids."""
    rows = await _xr(redis)
    changed = mutate(rows)
    await redis.delete(keyspace.AUDIT_STREAM)
    for eid, fields in changed:
        await redis.xadd(keyspace.AUDIT_STREAM, fields, id=eid)  # type: ignore[arg-type]


async def test_an_untouched_chain_verifies(redis: Redis) -> None:
    await _fill(redis, 25)
    report = await verify_chain(redis, batch=7)
    assert report.ok and report.count == 25 and report.head_seq == 25 and report.problems == []


async def test_an_empty_trail_verifies(redis: Redis) -> None:
    assert (await verify_chain(redis)).ok


async def test_concurrent_writers_on_separate_connections_form_one_chain(redis: Redis, redis_url: str) -> None:
    # 90 optimistic transactions open up to 90 connections at once: on a loaded machine (CI shares it) the default
    # 1 s connect bound was seen to expire; this test is about the chain, not about connect latency.
    clients = [connect_redis(redis_url, connect_timeout_s=30, socket_timeout_s=30) for _ in range(6)]
    try:
        await asyncio.gather(*(
            record_access(c, principal=OFFICER, action="trace", obj=f"case:{case_id(i * 100 + j)}",
                          purpose="epidemic_prevention",
                          now=NOW, case_ref=case_id(1))
            for i, c in enumerate(clients) for j in range(15)
        ))
    finally:
        for c in clients:
            await c.aclose()
    report = await verify_chain(redis)
    assert report.ok and report.count == 90
    seqs = [int(f[b"seq"]) for _, f in await _xr(redis)]
    assert seqs == list(range(1, 91))


async def test_an_edited_entry_is_detected(redis: Redis) -> None:
    await _fill(redis, 10)

    def edit(rows: Rows) -> Rows:
        rows[4][1][b"result_count"] = b"0"
        return rows

    await _rewrite(redis, edit)
    fifth = (await _xr(redis))[4][0].decode()
    report = await verify_chain(redis)
    assert not report.ok and report.problems == [f"{fifth}: edited"]


async def test_a_removed_entry_is_detected(redis: Redis) -> None:
    await _fill(redis, 10)
    eid = (await _xr(redis))[5][0]
    await redis.xdel(keyspace.AUDIT_STREAM, eid)
    kinds = {p.split(": ")[1] for p in (await verify_chain(redis)).problems}
    assert kinds == {"sequence_gap", "broken_link"}


async def test_a_removed_last_entry_is_detected_by_the_head(redis: Redis) -> None:
    await _fill(redis, 10)
    eid = (await _last(redis))[0]
    await redis.xdel(keyspace.AUDIT_STREAM, eid)
    report = await verify_chain(redis)
    assert [p.split(": ")[1] for p in report.problems] == ["head_mismatch", "truncated"]


async def test_reordered_entries_are_detected(redis: Redis) -> None:
    await _fill(redis, 10)

    def swap(rows: Rows) -> Rows:
        (a_id, a), (b_id, b) = rows[3], rows[4]
        rows[3], rows[4] = (a_id, b), (b_id, a)
        return rows

    await _rewrite(redis, swap)
    kinds = {p.split(": ")[1] for p in (await verify_chain(redis)).problems}
    assert {"sequence_gap", "broken_link"} <= kinds


async def test_a_rollback_to_an_older_copy_is_caught_by_an_anchor_kept_outside_redis(redis: Redis) -> None:
    await _fill(redis, 10)
    keys = (keyspace.AUDIT_STREAM, keyspace.AUDIT_HEAD, keyspace.AUDIT_HWM)
    older = {k: await redis.dump(k) for k in keys}
    await _fill(redis, 5, start=NOW + timedelta(days=1))
    anchor = await verify_chain(redis)
    # Someone with write access puts back an older copy of every audit key (signed values, replayed whole).
    for k, v in older.items():
        await redis.restore(k, 0, v, replace=True)
    assert (await verify_chain(redis)).ok  # self-consistent...
    report = await verify_chain(redis, anchor=(anchor.head_seq, anchor.head_hash))
    assert not report.ok and any("anchor_mismatch" in p for p in report.problems)  # ...but not the one we had


async def test_the_trail_never_expires_and_holds_no_health_fields(redis: Redis) -> None:
    await _fill(redis, 3)
    assert await redis.ttl(keyspace.AUDIT_STREAM) == -1 and await redis.ttl(keyspace.AUDIT_HEAD) == -1
    for name in ("colour", "holder_ref", "pseudonym", "test_result", "seq", "hash"):
        with pytest.raises(ValueError):
            await record_access(redis, principal=OFFICER, action="trace", obj="x", purpose="epidemic_prevention",
                                now=NOW, extra={name: "green"})
    with pytest.raises(ValueError):
        await record_access(redis, principal=OFFICER, action="trace", obj="x", purpose="epidemic_prevention",
                            now=NOW, extra={"who": "someone-else"})
    assert (await verify_chain(redis)).count == 3


async def test_entries_carry_who_role_when_action_object_purpose_case_and_count(redis: Redis) -> None:
    await record_access(redis, principal=DISPATCHER, action="case_holder_read", obj=f"case:{case_id(1)}",
                        purpose="epidemic_prevention", now=NOW, case_ref=case_id(1), result_count=1)
    ((eid, f),) = await _xr(redis)
    assert eid == f"{int(NOW.timestamp() * 1000)}-0".encode()
    assert {k: f[k.encode()].decode() for k in ("who", "role", "action", "object", "purpose", "case_ref",
                                                 "result_count")} == {
        "who": "disp-1", "role": "dispatcher", "action": "case_holder_read", "object": f"case:{case_id(1)}",
        "purpose": "epidemic_prevention", "case_ref": case_id(1), "result_count": "1"}
    assert datetime.fromisoformat(f[b"when"].decode()) == NOW


async def test_a_clock_going_backwards_still_appends_in_order(redis: Redis) -> None:
    await record_privileged(redis, actor="cli:ops", action="token_issue", obj="principal:a", now=NOW)
    await record_privileged(redis, actor="cli:ops", action="token_revoke", obj="principal:a",
                            now=NOW - timedelta(hours=1))
    (a, _), (b, _) = await _xr(redis)
    assert tuple(map(int, a.split(b"-"))) < tuple(map(int, b.split(b"-")))
    assert (await verify_chain(redis)).ok


async def test_query_filters_by_principal_action_and_time_and_pages_with_a_cursor(redis: Redis) -> None:
    await _fill(redis, 30)
    page = await query_audit(redis, since=NOW, until=NOW + timedelta(minutes=29), limit=4, principal="po-1")
    assert [e.fields["who"] for e in page.entries] == ["po-1"] * 4 and page.next_cursor is not None
    rest = await query_audit(redis, since=NOW, until=NOW + timedelta(minutes=29), limit=100, principal="po-1",
                             cursor=page.next_cursor)
    assert len(page.entries) + len(rest.entries) == 15 and rest.next_cursor is None
    traces = await query_audit(redis, since=NOW, until=NOW + timedelta(minutes=29), limit=100, action="trace")
    assert len(traces.entries) == 10
    window = await query_audit(redis, since=NOW + timedelta(minutes=10), until=NOW + timedelta(minutes=12),
                               limit=100)
    assert [e.seq for e in window.entries] == [11, 12, 13]
    capped = await query_audit(redis, since=NOW, until=NOW + timedelta(minutes=29), limit=100, action="none",
                               scan_max=8)
    assert capped.entries == [] and capped.scanned == 8 and capped.next_cursor is not None


async def test_trim_refuses_anything_younger_than_three_years(redis: Redis) -> None:
    await _fill(redis, 3)
    with pytest.raises(ValueError):
        await trim_before(redis, cutoff=NOW - timedelta(days=365), now=NOW, actor="cli:ops")


async def test_trim_of_entries_past_three_years_keeps_the_chain_verifiable(redis: Redis) -> None:
    old = NOW - AUDIT_RETENTION - timedelta(days=10)
    await _fill(redis, 6, start=old)
    await _fill(redis, 4, start=NOW)
    dropped = await trim_before(redis, cutoff=NOW - AUDIT_RETENTION, now=NOW, actor="cli:ops")
    assert dropped == 6
    report = await verify_chain(redis)
    assert report.ok and report.count == 5 and report.head_seq == 11  # 4 kept + the trim's own entry
    last = (await _last(redis))[1]
    assert last[b"action"] == b"audit_trim" and last[b"dropped"] == b"6"


async def test_placegate_audit_verify_exits_nonzero_on_a_tampered_trail(redis: Redis, redis_url: str) -> None:
    await _fill(redis, 5)

    def cli() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", "--redis-url", redis_url],
                              capture_output=True, text=True, timeout=60, env={**os.environ, **CLI_ENV})

    ok = await asyncio.to_thread(cli)
    assert ok.returncode == 0 and '"ok": true' in ok.stdout and "anchor: 5:" in ok.stderr
    await redis.xdel(keyspace.AUDIT_STREAM, (await _xr(redis))[2][0])
    broken = await asyncio.to_thread(cli)
    assert broken.returncode == 1 and "sequence_gap" in broken.stdout


# --- every value by its kind; refusals, trust imports and CLI officers audited (issue 14) --------------------
HOLDER = "holder-7"  # a raw holder reference of the native code (tests/gateway/conftest.py scans it)


def test_a_value_that_fits_no_kind_is_a_programming_error_in_tests_and_dropped_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.privacy import auditfields

    core = {"who": "po-1", "action": "trace", "object": f"trace:{case_id(1)}", "case_ref": case_id(1)}
    for bad in ({"case_ref": HOLDER}, {"object": f"trace:{HOLDER}"}, {"subject": HOLDER}, {"free_form": "x"},
                {"result_count": "many"}, {"window": "yesterday"}):
        with pytest.raises(auditfields.AuditFieldError):
            auditfields.clean_fields({**core, **bad})
    monkeypatch.setattr(auditfields, "STRICT", False)
    kept = auditfields.clean_fields({**core, "case_ref": HOLDER, "subject": HOLDER, "free_form": HOLDER})
    assert kept["case_ref"] == "" and "subject" not in kept and "free_form" not in kept
    assert kept["dropped_fields"] == "case_ref,free_form,subject" and HOLDER not in str(kept)
    assert auditfields.mask_text("called 13812345678 re holder-7, see a@b.cn") == "called *** re ***, see ***"


def test_case_ids_in_audit_fields_have_the_case_stores_shape() -> None:
    from gateway.dispatch.store import valid_case_id
    from gateway.privacy.auditfields import FIELD_KINDS, clean_fields

    assert FIELD_KINDS["case_ref"] == "case" and valid_case_id(case_id(7))
    assert clean_fields({"case_ref": case_id(7)}) == {"case_ref": case_id(7)}


async def test_a_refusal_from_a_request_drops_what_does_not_fit_even_in_tests(redis: Redis) -> None:
    from gateway.privacy.audit import record_refusal

    assert await record_refusal(redis, principal=DISPATCHER, action="contact_trace_refused", obj=f"trace:{HOLDER}",
                                purpose="epidemic_prevention", code="approval_invalid", now=NOW, case_ref=HOLDER)
    ((_, f),) = await _xr(redis)
    assert f[b"outcome"] == b"approval_invalid" and f[b"dropped_fields"] == b"case_ref,object"
    assert HOLDER.encode() not in b"".join(k + v for k, v in f.items())


def test_the_refusal_limiter_bounds_entries_per_principal_and_counts_the_rest() -> None:
    from gateway.privacy.refusals import RefusalLimiter

    t = [0.0]
    limiter = RefusalLimiter(3, 60.0, clock=lambda: t[0])
    assert [limiter.admit("a") for _ in range(5)] == [0, 0, 0, None, None]
    assert limiter.admit("b") == 0  # per principal
    t[0] = 61.0
    assert limiter.admit("a") == 2  # the next window's first entry carries what was suppressed


async def test_a_role_refusal_on_a_privacy_route_leaves_an_entry_and_cannot_flood(make_world: WorldFactory) -> None:
    world = await make_world(principal_cache_s=0)
    headers = {"Authorization": "Bearer " + world.tokens["dispatcher"]}
    before = await world.redis.xlen(keyspace.AUDIT_STREAM)
    for _ in range(25):
        resp = await world.client.get("/v1/privacy/audit/verify", headers=headers)
        assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
    refused = [f for _, f in (await _xr(world.redis))[before:]]
    assert len(refused) == 10  # PER_PRINCIPAL in one window: 25 requests, 10 entries
    assert {(f[b"who"], f[b"action"], f[b"route"], f[b"outcome"]) for f in refused} == {
        (b"disp-1", b"role_refused", b"/v1/privacy/audit/verify", b"forbidden")}
    scan = await world.client.post("/v1/scan", headers=headers, json={"code": "x"})
    assert scan.status == 403 and await world.redis.xlen(keyspace.AUDIT_STREAM) == before + 10  # scan: not audited
    assert (await verify_chain(world.redis)).ok


def test_trust_import_leaves_an_audit_entry_first(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLACEGATE_SECRET", CLI_ENV["PLACEGATE_SECRET"])  # an external store requires the secret
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import load_der_x509_certificate

    from gateway.cli import main
    from tests.crypto.conftest import make_dsc

    pem = tmp_path / "dsc.pem"
    pem.write_bytes(load_der_x509_certificate(make_dsc().der).public_bytes(Encoding.PEM))
    assert main(["trust", "import", str(pem), "--redis-url", redis_url, "--data-dir", str(tmp_path)]) == 0

    async def entries() -> Rows:
        client = connect_redis(redis_url)
        try:
            return await _xr(client)
        finally:
            await client.aclose()

    _, f = asyncio.run(entries())[-1]  # no redis fixture here (sync test): earlier entries may remain
    assert (f[b"action"], f[b"object"], f[b"certificates"], f[b"mode"]) == (
        b"dsc_import", b"dsc_trust_list", b"1", b"replace")
    assert f[b"who"].startswith(b"cli:")


def _cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args, "--redis-url", redis_url],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **CLI_ENV})


async def test_cli_officer_commands_need_a_token_file_and_every_refusal_is_audited(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    from gateway.trust.cli_registry import create_principal
    from gateway.trust.registry import Registry

    registry = Registry(redis, actor="cli:ops")
    officer = await create_principal(registry, Principal("po-2", Role.PRIVACY_OFFICER))
    handler = await create_principal(registry, Principal("h-1", Role.HANDLER, department="health"))
    good, exposed, wrong_role = tmp_path / "po2", tmp_path / "po2-open", tmp_path / "h1"
    for path, token, mode in ((good, officer, 0o600), (exposed, officer, 0o644), (wrong_role, handler, 0o600)):
        path.write_text(token + "\n")
        path.chmod(mode)
    trace = ("privacy", "trace", "--holder", HOLDER, "--case-ref", case_id(5), "--approval", "apv_" + "0" * 32)
    query = ("audit", "query", "--since", NOW.isoformat(), "--until", (NOW + timedelta(days=1)).isoformat())
    cases = [((*trace, "--officer", "po-2"), "token_required"), (trace, "missing_token"),
             ((*trace, "--token-file", str(exposed)), "token_file_exposed"),
             ((*trace, "--token-file", str(wrong_role)), "forbidden"),
             ((*query, "--token-file", str(wrong_role)), "forbidden"),
             ((*trace, "--token-file", str(tmp_path / "absent")), "invalid_token")]
    before = await redis.xlen(keyspace.AUDIT_STREAM)
    for args, code in cases:
        done = await asyncio.to_thread(_cli, redis_url, *args)
        assert done.returncode == 2 and done.stderr.startswith(code), (args, done.stderr)
    refused = [f for _, f in (await _xr(redis))[before:]]
    assert [f[b"outcome"].decode() for f in refused] == [code for _, code in cases]
    assert {(f[b"action"], f[b"role"]) for f in refused} == {(b"cli_refused", b"cli")}
    done = await asyncio.to_thread(_cli, redis_url, *query, "--token-file", str(good))
    assert done.returncode == 0, done.stderr
    (_, entry), = (await _xr(redis))[-1:]
    assert (entry[b"who"], entry[b"role"], entry[b"action"]) == (b"po-2", b"privacy_officer", b"audit_query")
    done = await asyncio.to_thread(_cli, redis_url, *trace, "--token-file", str(good))  # a valid officer, no approval
    assert done.returncode == 2 and done.stderr.startswith("approval_required"), done.stderr
    (_, entry), = (await _xr(redis))[-1:]
    assert (entry[b"who"], entry[b"action"], entry[b"outcome"]) == (b"po-2", b"contact_trace_refused",
                                                                     b"approval_required")
    assert entry[b"subject"].startswith(b"sh_") and entry[b"via"].startswith(b"cli:")


async def test_a_raw_holder_reference_never_enters_the_trail(make_world: WorldFactory) -> None:
    """Trace, refused traces with the holder where a case id belongs, an audit query filtered by the holder:
    then every field of every entry is searched for the holder reference."""
    from gateway.trust.cli_registry import create_principal
    from gateway.trust.registry import Registry

    world = await make_world(principal_cache_s=0)
    po = {"Authorization": "Bearer " + await create_principal(Registry(world.redis),
                                                              Principal("po-3", Role.PRIVACY_OFFICER))}
    disp = {"Authorization": "Bearer " + world.tokens["dispatcher"]}
    for case_ref, who in ((HOLDER, po), (f"x{HOLDER}", disp), (case_id(3), disp), (case_id(3), po)):
        await world.client.post("/v1/privacy/trace", headers=who, json={
            "holder_ref": HOLDER, "purpose": "epidemic_prevention", "case_ref": case_ref})
    await world.client.post("/v1/privacy/approvals", headers=po, json={
        "requester": "disp-1", "case_ref": HOLDER, "purpose": "epidemic_prevention"})
    await world.client.get("/v1/privacy/audit", headers=po, params={
        "since": (NOW - timedelta(hours=1)).isoformat(), "until": (NOW + timedelta(hours=1)).isoformat(),
        "principal": HOLDER, "action": HOLDER})
    await world.client.get("/v1/privacy/audit", headers=disp)  # a role refusal too
    rows = await _xr(world.redis)
    assert len(rows) > 3
    for _, fields in rows:
        assert HOLDER.encode() not in b"\x00".join(k + b"=" + v for k, v in fields.items())
    assert (await verify_chain(world.redis)).ok
