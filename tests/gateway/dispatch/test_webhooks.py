"""Department webhooks (issue 15, item 8) on the real Redis with a real aiohttp receiver on 127.0.0.1: a dispatch
delivers one signed POST, a failing receiver is retried with backoff until it answers, a receiver that is down
ends failed after the bounded attempts, the case shows every status, and the sweeper's overdue flag and
escalation notify too. The outbox is staged before the case write (at-least-once) and carries no personal data."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway import keyspace
from gateway.dispatch.webhooks import Outbox, WebhookDelivery, WebhookTableError, parse_webhooks
from gateway.dispatch.worker import sweep_open_cases
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import DispatchWorld

make_dispatch_world = fx.make_dispatch_world
dispatch_env = fx.dispatch_env
KEY = "k" * 32
DEPARTMENTS = ("s1-clinic", "d1-cdc", "city-cdc")
MEMBER = re.compile(r"c[0-9a-f]{20}\|[0-9]+\|(?:dispatched|escalated|overdue)\|[a-z0-9-]+")


@dataclass
class Receiver:
    """A webhook receiver answering the queued statuses in turn (then 200); records every request."""

    answers: list[int] = field(default_factory=list)
    seen: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((dict(request.headers), await request.read()))
        return web.Response(status=self.answers.pop(0) if self.answers else 200)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/hook"))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    rec.server = TestServer(app, host="127.0.0.1")
    await rec.server.start_server()
    yield rec
    await rec.server.close()


def _table(tmp_path: Path, url: str) -> Path:
    (tmp_path / "hook.key").write_text(KEY + "\n", "utf-8")
    text = "".join(f'[departments.{d}]\nurl = "{url}"\nkey_file = "hook.key"\n' for d in DEPARTMENTS)
    path = tmp_path / "webhooks.toml"
    path.write_text(text, "utf-8")
    return path


Factory = Callable[..., Any]


@pytest.fixture
async def hooked(make_dispatch_world: Factory, tmp_path: Path, receiver: Receiver) -> DispatchWorld:
    """A dispatch world whose departments have webhooks to ``receiver``; the test drives the delivery loop."""
    env = {"WEBHOOKS_FILE": str(_table(tmp_path, receiver.url)), "WEBHOOK_INTERVAL_S": "0",
           "WEBHOOK_BACKOFF_S": "0.01", "WEBHOOK_MAX_ATTEMPTS": "3", "WEBHOOK_TIMEOUT_S": "2"}  # fmt: skip
    world: DispatchWorld = await make_dispatch_world(env=env)
    return world


def _outbox(dw: DispatchWorld) -> Outbox:
    assert dw.runtime.outbox is not None
    return dw.runtime.outbox


async def _deliver_until_settled(dw: DispatchWorld, *, rounds: int = 50) -> None:
    """Run delivery passes until the outbox is empty (backoffs are 10-40 ms here); bounded."""
    for _ in range(rounds):
        await _outbox(dw).deliver_due(dw.runtime.store.get)
        if not await dw.world.redis.zcard(keyspace.NOTIFY_OUTBOX):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the outbox did not settle")


async def _notifications(dw: DispatchWorld, who: str, case_id: str) -> list[dict[str, Any]]:
    status, doc = await dw.get(who, f"/v1/cases/{case_id}")
    assert status == 200, doc
    notes: list[dict[str, Any]] = doc["notifications"]
    return notes


async def test_a_dispatch_delivers_one_signed_post_and_the_case_shows_it(hooked: DispatchWorld,
                                                                        receiver: Receiver) -> None:
    case_id = await hooked.event()
    await hooked.pump()  # a scan event is accepted, filed and dispatched to s1-clinic
    members = [m.decode() for m in await hooked.world.redis.zrange(keyspace.NOTIFY_OUTBOX, 0, -1)]
    assert members and all(MEMBER.fullmatch(m) for m in members)  # case id, index, kind, department: nobody's data
    assert 0 < await hooked.world.redis.pttl(keyspace.NOTIFY_OUTBOX) <= keyspace.CASE_RETENTION_S * 1000
    await _deliver_until_settled(hooked)
    assert len(receiver.seen) == 1
    headers, body = receiver.seen[0]
    expected = "sha256=" + hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Placegate-Signature"], expected)
    doc = orjson.loads(body)
    case = await hooked.case(case_id)
    index = next(i for i, e in enumerate(case.history) if e.action == "dispatch")
    assert headers["X-Placegate-Delivery"] == f"{case_id}:{index}"
    assert doc == {"event": "dispatched", "case_id": case_id, "department": "s1-clinic",
                   "at": case.history[index].at.isoformat(), "level": str(case.history[index].level),
                   "state": "dispatched"}  # fmt: skip
    assert "holder" not in body.decode() and "note" not in doc
    assert await _notifications(hooked, "h-clinic", case_id) == [
        {"event": "dispatched", "department": "s1-clinic", "status": "delivered", "attempts": 1,
         "last_error_code": None}]  # fmt: skip
    await _outbox(hooked).deliver_due(hooked.runtime.store.get)
    assert len(receiver.seen) == 1  # delivered once, not again
    # A redelivered intake event stages the same delivery again: it is found delivered and not sent twice.
    await _outbox(hooked).stage([(None, case)])
    await _deliver_until_settled(hooked)
    assert len(receiver.seen) == 1


async def test_a_receiver_answering_500_twice_is_retried_and_ends_delivered(hooked: DispatchWorld,
                                                                           receiver: Receiver) -> None:
    receiver.answers[:] = [500, 500]
    case_id = await hooked.event()
    await hooked.pump()
    await _outbox(hooked).deliver_due(hooked.runtime.store.get)
    assert await _notifications(hooked, "h-clinic", case_id) == [
        {"event": "dispatched", "department": "s1-clinic", "status": "retrying", "attempts": 1,
         "last_error_code": "http_500"}]  # fmt: skip
    await _deliver_until_settled(hooked)
    assert len(receiver.seen) == 3
    assert len({h["X-Placegate-Delivery"] for h, _ in receiver.seen}) == 1  # one delivery id: the receiver dedupes
    assert await _notifications(hooked, "h-clinic", case_id) == [
        {"event": "dispatched", "department": "s1-clinic", "status": "delivered", "attempts": 3,
         "last_error_code": None}]  # fmt: skip


async def test_a_receiver_that_is_down_ends_failed_after_the_bounded_attempts(hooked: DispatchWorld,
                                                                             receiver: Receiver) -> None:
    assert receiver.server is not None
    await receiver.server.close()  # nothing listens on the port any more
    case_id = await hooked.event()
    await hooked.pump()
    await _deliver_until_settled(hooked)
    assert await _notifications(hooked, "h-clinic", case_id) == [
        {"event": "dispatched", "department": "s1-clinic", "status": "failed", "attempts": 3,
         "last_error_code": "unreachable"}]  # fmt: skip
    assert not await hooked.world.redis.zcard(keyspace.NOTIFY_OUTBOX)


async def test_the_sweepers_overdue_flag_and_escalation_notify(hooked: DispatchWorld, receiver: Receiver) -> None:
    case_id = await hooked.event()
    await hooked.pump()
    await _deliver_until_settled(hooked)
    store = hooked.runtime.store
    report = await sweep_open_cases(store, now=hooked.clock.advance(hours=1))
    assert report.flagged == 1
    report = await sweep_open_cases(store, now=hooked.clock.advance(hours=1))
    assert report.escalated >= 1
    await _deliver_until_settled(hooked)
    events = [orjson.loads(body)["event"] for _, body in receiver.seen]
    assert events[0] == "dispatched" and events[1] == "overdue" and "escalated" in events[2:]
    notes = await _notifications(hooked, "sup-d1", case_id)
    assert [n["event"] for n in notes] == events
    assert all(n["status"] == "delivered" for n in notes)
    escalated = next(orjson.loads(b) for _, b in receiver.seen if orjson.loads(b)["event"] == "escalated")
    case = await hooked.case(case_id)
    assert escalated["level"] == str(next(e for e in case.history if e.action == "escalate").level)


async def test_a_staged_entry_without_its_write_is_dropped_unsent(hooked: DispatchWorld, receiver: Receiver) -> None:
    """Staging comes before the case write: an entry whose write never landed (a crash, or a lost race whose
    winner appended another action at that index) is dropped, never sent."""
    case_id = await hooked.event()
    await hooked.pump()
    await _deliver_until_settled(hooked)
    ghost = WebhookDelivery("c" + "e" * 20, 3, "dispatched", "s1-clinic")  # a case that was never written
    lost = WebhookDelivery(case_id, 0, "overdue", "s1-clinic")  # index 0 is the report, not a flag
    await hooked.world.redis.zadd(keyspace.NOTIFY_OUTBOX, {ghost.member: 0, lost.member: 0})
    await _deliver_until_settled(hooked)
    assert len(receiver.seen) == 1  # only the real dispatch
    assert not await hooked.world.redis.exists(keyspace.case_notify_key(ghost.case_id))


async def test_the_gateways_own_loop_delivers(make_dispatch_world: Factory, tmp_path: Path,
                                              receiver: Receiver) -> None:
    env = {"WEBHOOKS_FILE": str(_table(tmp_path, receiver.url)), "WEBHOOK_INTERVAL_S": "0.05"}
    dw: DispatchWorld = await make_dispatch_world(env=env)
    await dw.event()
    await dw.pump()
    for _ in range(200):  # at most ~10 s
        if receiver.seen:
            break
        await asyncio.sleep(0.05)
    assert len(receiver.seen) == 1


async def test_without_a_table_nothing_is_staged_and_the_case_has_no_notifications(dw: DispatchWorld) -> None:
    case_id = await dw.event()
    await dw.pump()
    assert dw.runtime.outbox is None
    assert not await dw.world.redis.exists(keyspace.NOTIFY_OUTBOX)
    status, doc = await dw.get("h-clinic", f"/v1/cases/{case_id}")
    assert status == 200 and "notifications" not in doc


dw = fx.dw


@pytest.mark.parametrize(("text", "fault"), [
    ('[departments.a]\nurl = "ftp://x/"\nkey_env = "K"\n', "url must be an http(s) URL"),
    ('[departments.a]\nurl = "https://x/"\n', "exactly one of key_env, key_file"),
    ('[departments.a]\nurl = "https://x/"\nkey_env = "SHORT"\n', "missing or shorter than 16 bytes"),
    ('[departments.a]\nurl = "https://x/"\nkey_env = "MISSING"\n', "missing or shorter than 16 bytes"),
    ('[departments.a]\nurl = "https://x/"\nkey_file = "nope"\n', "cannot read key_file"),
    ('[departments.a]\nurl = "https://x/"\nkey_env = "K"\nsecret = "x"\n', "expected url and one of"),
    ("[hooks]\n", "expected one [departments.<name>] table"),
    ("not toml [", "not TOML"),
])  # fmt: skip
def test_a_bad_webhook_table_is_refused_naming_the_fault(text: str, fault: str, tmp_path: Path) -> None:
    with pytest.raises(WebhookTableError, match=re.escape(fault)) as info:
        parse_webhooks(text, environ={"K": KEY, "SHORT": "short"}, base=tmp_path)
    assert KEY not in str(info.value)


def test_a_good_table_reads_keys_from_the_environment_or_a_file(tmp_path: Path) -> None:
    (tmp_path / "k").write_text(KEY, "utf-8")
    table = parse_webhooks('[departments.a]\nurl = "https://a/"\nkey_env = "K"\n'
                           '[departments.b]\nurl = "http://b/"\nkey_file = "k"\n',
                           environ={"K": "e" * 20}, base=tmp_path)  # fmt: skip
    assert table["a"].key == b"e" * 20 and table["b"].key == KEY.encode()
    assert KEY not in repr(table)  # the key never shows in a repr or a log line


def test_a_bad_webhook_table_stops_the_start_naming_its_variable(tmp_path: Path) -> None:
    from gateway.serve import check_tables
    from gateway.settings import DispatchSettings, Settings, SettingsError

    path = tmp_path / "webhooks.toml"
    path.write_text('[departments.roads]\nurl = "https://roads.example/"\nkey_env = "NO_SUCH_WEBHOOK_KEY"\n', "utf-8")
    with pytest.raises(SettingsError, match="PLACEGATE_DISPATCH_WEBHOOKS_FILE") as info:
        check_tables(Settings(dispatch=DispatchSettings(webhooks_file=path)))
    assert "roads: the HMAC key is missing" in str(info.value)
    check_tables(Settings(dispatch=DispatchSettings(webhooks_file=None)))  # no table: nobody notified, no error
