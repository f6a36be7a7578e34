"""The site manager's view (issue 15, "the people around a case"): the progress of the reports they filed
(``GET /v1/reports``) and the counts of exception scans at their own places (``GET /v1/places/{id}/exceptions``).

Nothing personal leaves here: a report's progress is its case's state, level, clock and closure kind (no note, no
history, no holder, nothing of other people's reports); the exception counts are numbers per day and deny reason.

Which reports are whose: ``POST /v1/reports`` files the case id it answered under the reporter's index
(``keyspace.reporter_reports_key``: a sorted set by time filed, and a hash with the event id, class and place),
before the event is queued, so a report the manager was answered for is always in their list (one whose event
never became a case reads ``queued``). The index keeps the case's retention and is trimmed by time on every add.

The counts are kept by the scan path itself (``gateway/scan/store.py`` ``record_scans``: one HINCRBY per exception
in the command group that already writes the exception's intake event, keyed per place and day, expiring with that
day's scan log). Computing them from cases instead would read every case of a place's days per request (and miss
the exceptions merged into one case); the counter costs one command per exception scan and a request reads at most
15 small hashes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from gateway import keyspace
from gateway.auth import PRINCIPAL, requires
from gateway.dispatch.runtime import DISPATCH, DispatchRuntime
from gateway.errors import BadRequestError, NotFoundError
from gateway.http import json_response, query_params
from gateway.intake import scan_event_class
from gateway.principals import Principal, Role
from gateway.redisio import redis_errors
from gateway.trust.state import PLACES, PlaceCache
from policy.casework import Case

__all__ = ["EXCEPTION_DAYS", "exception_counts", "file_report", "reported_by", "reports_page", "routes"]

EXCEPTION_DAYS = 14  # today and up to the last 14 days (issue 15)
PAGE_DEFAULT = 50

# KEYS: the index, its info hash. ARGV: oldest score kept, score, case id, info, TTL ms.
_FILE_LUA = """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 100)
if #old > 0 then
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('HDEL', KEYS[2], unpack(old))
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
"""  # 100: index entries past the retention dropped per add (bounded work per report)

routes = web.RouteTableDef()


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def file_report(
    runtime: DispatchRuntime, principal_id: str, *, case_id: str, event_id: str, event_class: str, place_id: str,
    now: datetime,
) -> None:  # fmt: skip
    """File a report under its reporter's index (before its event is queued: see the module docstring)."""
    retention_ms = runtime.store.case_retention_ms
    now_ms = int(now.timestamp() * 1000)
    keys = [keyspace.reporter_reports_key(principal_id), keyspace.reporter_reports_info_key(principal_id)]
    args = [str(now_ms - retention_ms), str(now_ms), case_id, f"{event_id} {event_class} {place_id}",
            str(retention_ms)]  # fmt: skip
    with redis_errors("reports index"):
        await runtime.store.redis.eval(_FILE_LUA, len(keys), *keys, *args)


async def reported_by(runtime: DispatchRuntime, principal_id: str, case_id: str) -> bool:
    """Whether ``case_id`` is the case id one of this site manager's reports was answered with."""
    with redis_errors("reports index"):
        score = await runtime.store.redis.zscore(keyspace.reporter_reports_key(principal_id), case_id)
    return score is not None


def _int_param(q: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = q.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or not low <= int(raw) <= high:
        raise BadRequestError(f"query parameter '{name}' must be an integer in [{low}, {high}]")
    return int(raw)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _progress(case: Case | None) -> dict[str, Any]:
    """What a reporter may know of the case their report became: where it stands, nothing of its contents."""
    if case is None:
        return {"state": "queued"}
    return {
        "state": case.state.value, "level": case.level.value, "stage_started_at": _iso(case.stage_started_at),
        "stage_deadline": _iso(case.stage_deadline), "overdue": case.overdue,
        "closure_kind": case.closure_kind.value if case.closure_kind else None,
    }  # fmt: skip


async def reports_page(
    runtime: DispatchRuntime, principal: Principal, *, limit: int, cursor: int
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of the caller's own reports, newest first, each with its case's progress, and the next cursor
    (shared by ``GET /v1/reports`` and the web console)."""
    index = keyspace.reporter_reports_key(principal.principal_id)
    with redis_errors("reports index"):
        found_raw: list[tuple[bytes, float]] = await runtime.store.redis.zrevrange(  # type: ignore[assignment]
            index, cursor, cursor + limit, withscores=True
        )
        raw = [(_s(member), float(score)) for member, score in found_raw]
        ids = [member for member, _ in raw[:limit]]
        infos = await runtime.store.redis.hmget(keyspace.reporter_reports_info_key(principal.principal_id), ids) \
            if ids else []  # fmt: skip
    found = {c.case_id: c for c in await runtime.store.get_many(ids)}
    reports: list[dict[str, Any]] = []
    for (case_id, score), info in zip(raw[:limit], infos, strict=True):
        case = found.get(case_id)
        if case is None:
            # Not made yet, or folded into another case (the store follows the announced id to it).
            case = await runtime.store.get(case_id, history=False)
        event_id, event_class, place_id = (_s(info) if info else "  ").split(" ", 2)
        doc: dict[str, Any] = {
            "event_id": event_id or None, "case_id": case_id, "event_class": event_class or None,
            "place": place_id or None,
            "filed_at": datetime.fromtimestamp(score / 1000, tz=UTC).isoformat(timespec="milliseconds"),
        }  # fmt: skip
        if case is not None and case.case_id != case_id:
            doc["merged_into"] = case.case_id
        reports.append(doc | _progress(case))
    return reports, (cursor + limit if len(raw) > limit else None)


@routes.get("/v1/reports")
@requires(Role.SITE_MANAGER)
async def list_reports(request: web.Request) -> web.Response:
    """The caller's own reports, newest first, each with its case's progress: ``?limit=&cursor=``."""
    runtime = request.app[DISPATCH]
    q = query_params(request)  # the documented ones only (gateway/apidocs.py)
    limit = _int_param(q, "limit", PAGE_DEFAULT, 1, runtime.settings.page_max)
    cursor = _int_param(q, "cursor", 0, 0, 100_000_000)
    reports, more = await reports_page(runtime, request[PRINCIPAL], limit=limit, cursor=cursor)
    return json_response({"reports": reports, "next_cursor": str(more) if more is not None else None})


def _day_param(q: Mapping[str, str], name: str, default: date | None) -> date | None:
    raw = q.get(name)
    if raw is None:
        return default
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequestError(f"query parameter '{name}' must be a day YYYY-MM-DD") from None


async def exception_counts(
    runtime: DispatchRuntime, places: PlaceCache, principal: Principal, place_id: str, *, start: date | None,
    end: date | None,
) -> dict[str, Any]:
    """Counts of exception scans at one of the caller's places per day (UTC) and deny reason, within today and the
    last 14 days (default: the last 7 days); shared by ``GET /v1/places/{id}/exceptions`` and the web console."""
    # Scope first: a place of somebody else and a place that does not exist get the same answer.
    if place_id not in principal.places or await places.get(place_id) is None:
        raise NotFoundError("no such place")
    today = runtime.now().astimezone(UTC).date()
    end = end or today
    oldest = today - timedelta(days=EXCEPTION_DAYS)
    window = f"from <= to must lie within {oldest.isoformat()} .. {today.isoformat()}"
    if not oldest <= end <= today:  # first: the default start of to=0001-01-01 would overflow (a 500 from input)
        raise BadRequestError(window)
    start = start or end - timedelta(days=6)
    if not oldest <= start <= end:
        raise BadRequestError(window)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    with redis_errors("exception counts"):
        async with runtime.store.redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(keyspace.place_exceptions_key(place_id, day.strftime("%Y%m%d")))
            replies = await pipe.execute()
    per_day: list[dict[str, Any]] = []
    totals: dict[str, int] = {}
    for day, reply in zip(days, replies, strict=True):
        reasons = {_s(k): int(v) for k, v in sorted(reply.items())}
        classes: dict[str, int] = {}
        for reason, count in reasons.items():
            classes[scan_event_class(reason)] = classes.get(scan_event_class(reason), 0) + count
            totals[reason] = totals.get(reason, 0) + count
        per_day.append({"day": day.isoformat(), "total": sum(reasons.values()), "reasons": reasons,
                        "classes": classes})  # fmt: skip
    return {
        "place": place_id, "from": start.isoformat(), "to": end.isoformat(), "days": per_day,
        "total": sum(totals.values()), "reasons": dict(sorted(totals.items())),
    }  # fmt: skip


@routes.get("/v1/places/{place_id}/exceptions")
@requires(Role.SITE_MANAGER)
async def place_exceptions(request: web.Request) -> web.Response:
    """Counts of exception scans at one of the caller's places per day (UTC) and deny reason:
    ``?from=YYYY-MM-DD&to=YYYY-MM-DD`` within today and the last 14 days (default: the last 7 days)."""
    runtime = request.app[DISPATCH]
    principal = request[PRINCIPAL]
    place_id = request.match_info["place_id"]
    # Scope before the query is read: a foreign place is not found whatever the parameters say.
    if place_id not in principal.places or await request.app[PLACES].get(place_id) is None:
        raise NotFoundError("no such place")
    q = query_params(request)
    start = _day_param(q, "from", None)
    end = _day_param(q, "to", None)
    return json_response(await exception_counts(runtime, request.app[PLACES], principal, place_id, start=start,
                                                end=end))
