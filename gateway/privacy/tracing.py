"""The contact-tracing query and the approvals that gate it (two-person rule).

An approval names the requester (an existing, usable principal of a role that may trace), a case that exists in
the dispatch store and lies in the requester's jurisdiction subtree (``trace_scope``, the case API's rule), the
holder by keyed hash only (``crypto.subject.SubjectHasher``), a window inside retention and the purpose; it is
single-use and expires within a day. A trace returns only visits at places inside the requester's jurisdiction:
the others are dropped without a count (a count of withheld visits would itself say where the holder was).

A holder's visits are found by recomputing, for each day of the window, the day's pseudonym
``HMAC-SHA256(day key, holder ref)[:32 hex]`` and reading that day's partition. The day key is only ever READ
here, never created: a day whose key has expired is reported ``unlinkable`` (crypto-shredding, PRIVACY.md
"Retention and deletion"), whatever records might linger.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast

from redis.asyncio import Redis
from redis.exceptions import WatchError

from gateway import keyspace
from gateway.dispatch.store import CaseStore, valid_case_id
from gateway.principals import Principal, in_jurisdiction
from gateway.redisio import redis_errors, slot_client
from gateway.scan.scanlog import pseudonym as scan_pseudonym
from gateway.trust.registry import Registry
from policy.purpose import TRACE_PAGE_MAX, Approval, trace_days

__all__ = ["DayState", "PlaceFilter", "TraceResult", "Visit", "active_principal", "case_in_trace_scope",
           "consume_approval", "grant_approval", "load_approval", "place_filter", "trace_holder"]

PlaceFilter = Callable[[str], Awaitable[bool]]

DayState = Literal["linked", "unlinkable", "absent"]
_PAGE = 5000
_Rows = list[tuple[bytes, dict[bytes, bytes]]]


@dataclass(frozen=True, slots=True)
class Visit:
    day: str
    at: datetime
    place: str
    device: str
    decision: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"day": self.day, "at": self.at.isoformat(), "place": self.place, "device": self.device,
                "decision": self.decision, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class TraceResult:
    visits: list[Visit]
    days: dict[str, DayState]
    truncated: bool
    scanned: int

    def to_json(self) -> dict[str, object]:
        return {"visits": [v.to_json() for v in self.visits], "days": self.days, "truncated": self.truncated,
                "result_count": len(self.visits)}


def pseudonym(day_key: bytes, holder_ref: str) -> bytes:
    """The scan path's pseudonym (``gateway.scan.scanner.pseudonym``: one derivation, never two), as stored bytes."""
    return scan_pseudonym(day_key, holder_ref).encode()


async def active_principal(redis: Redis, principal_id: str, now: datetime) -> Principal | None:
    """The registered principal ``principal_id`` if it exists and is neither revoked nor expired."""
    with redis_errors("principal registry"):
        token_hash = cast(bytes | None, await redis.hget(keyspace.PRINCIPAL_IDS, principal_id))
    if token_hash is None:
        return None
    principal = await Registry(redis).get_principal(token_hash.decode())
    if principal is None or principal.principal_id != principal_id or not principal.usable(now.timestamp()):
        return None
    return principal


async def case_in_trace_scope(redis: Redis, requester: Principal, case_ref: str) -> bool:
    """Whether the case exists and lies in the requester's jurisdiction subtree (the case API's rule, on whole
    path segments). A requester without a jurisdiction has no trace scope, a privacy officer included."""
    if not requester.jurisdiction or not valid_case_id(case_ref):
        return False
    case = await CaseStore(redis).get(case_ref, history=False)
    if case is None:
        return False
    scope = tuple(requester.jurisdiction.strip("/").split("/"))
    return case.jurisdiction[: len(scope)] == scope


def place_filter(redis: Redis, requester: Principal) -> PlaceFilter:
    """Whether a visited place lies in the requester's jurisdiction (places looked up once per trace; a place no
    longer registered is outside every jurisdiction)."""
    registry = Registry(redis)
    seen: dict[str, bool] = {}

    async def keep(place_id: str) -> bool:
        if place_id not in seen:
            place = await registry.get_place(place_id)
            seen[place_id] = place is not None and in_jurisdiction(place.jurisdiction, requester.jurisdiction)
        return seen[place_id]

    return keep


async def trace_holder(
    redis: Redis, holder_ref: str, *, since: datetime, until: datetime, max_visits: int = TRACE_PAGE_MAX,
    keep_place: PlaceFilter | None = None,
) -> TraceResult:
    """Visits of one holder in ``[since, until]``, oldest first; the caller has checked approval and window.

    With ``keep_place``, visits at places it refuses are dropped before they count towards ``max_visits``.
    """
    lo_ms, hi_ms = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
    visits: list[Visit] = []
    states: dict[str, DayState] = {}
    scanned = 0
    with redis_errors("scan log"):
        for day in trace_days(since, until):
            key = cast(bytes | None, await redis.get(keyspace.day_key(day)))
            if key is None:
                states[day] = "unlinkable" if await redis.exists(keyspace.scan_log_key(day)) else "absent"
                continue
            states[day] = "linked"
            wanted = pseudonym(key, holder_ref)
            start = "-"
            while len(visits) < max_visits:
                rows = cast(_Rows, await redis.xrange(keyspace.scan_log_key(day), min=start, max="+", count=_PAGE))
                if not rows:
                    break
                for _eid, f in rows:
                    scanned += 1
                    t = int(f.get(b"t", b"0"))
                    if f.get(b"pseudonym") == wanted and lo_ms <= t <= hi_ms:
                        if keep_place is not None and not await keep_place(f[b"place"].decode()):
                            continue
                        visits.append(Visit(day, datetime.fromtimestamp(t / 1000, UTC), f[b"place"].decode(),
                                            f[b"device"].decode(), f[b"decision"].decode(), f[b"reason"].decode()))
                        if len(visits) >= max_visits:
                            break
                start = "(" + rows[-1][0].decode()
    visits.sort(key=lambda v: v.at)
    return TraceResult(visits, states, len(visits) >= max_visits, scanned)


async def grant_approval(
    redis: Redis, *, approver_id: str, approver_role: str, requester_id: str, case_ref: str, purpose: str,
    expires_at: datetime, subject: str, since: datetime, until: datetime,
) -> Approval:
    """Store a privacy officer's approval; it expires on its own and can be used once. ``subject`` is the
    holder's keyed hash: the holder reference itself is never stored."""
    approval = Approval("apv_" + secrets.token_hex(16), approver_id, approver_role, requester_id, case_ref,
                        purpose, expires_at, subject, since, until)
    name = keyspace.approval_key(approval.approval_id)
    with redis_errors("approvals"):
        pipe = redis.pipeline(transaction=True)
        pipe.hset(name, mapping={"approver": approver_id, "approver_role": approver_role,
                                 "requester": requester_id, "case_ref": case_ref, "purpose": purpose,
                                 "expires_at": expires_at.isoformat(), "subject": subject,
                                 "since": since.isoformat(), "until": until.isoformat()})
        pipe.expireat(name, int(expires_at.timestamp()) + 1)
        await pipe.execute()
    return approval


async def load_approval(redis: Redis, approval_id: str) -> Approval | None:
    if not approval_id.startswith("apv_") or len(approval_id) != 36:
        return None
    with redis_errors("approvals"):
        raw = cast(dict[bytes, bytes], await redis.hgetall(keyspace.approval_key(approval_id)))
    if not raw or b"requester" not in raw or b"subject" not in raw:
        return None  # an approval of the old shape (no holder, no window) is no approval
    f = {k.decode(): v.decode() for k, v in raw.items()}
    return Approval(approval_id, f["approver"], f["approver_role"], f["requester"], f["case_ref"], f["purpose"],
                    datetime.fromisoformat(f["expires_at"]), f["subject"], datetime.fromisoformat(f["since"]),
                    datetime.fromisoformat(f["until"]), used=f.get("used") == "1")


async def consume_approval(redis: Redis, approval_id: str) -> bool:
    """Mark an approval used; False if another query used it first (one approval, one query)."""
    name = keyspace.approval_key(approval_id)
    with redis_errors("approvals"):
        try:
            async with slot_client(redis, name) as client, client.pipeline(transaction=True) as pipe:
                # WATCH rather than a bare HSETNX: on a key that just expired HSETNX would recreate it without a TTL.
                await pipe.watch(name)
                if not await pipe.exists(name) or await pipe.hget(name, "used") is not None:
                    await pipe.reset()  # type: ignore[no-untyped-call]
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.hset(name, "used", "1")
                await pipe.execute()
                return True
        except WatchError:  # another query touched the approval first: it is used (one approval, one query)
            return False
