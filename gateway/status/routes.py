"""PUT /v1/status: the health authority's bulk status feed (last-writer-wins by ``updated_at``)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from gateway.appstate import METRICS
from gateway.auth import requires
from gateway.errors import BadRequestError
from gateway.http import json_response, read_json
from gateway.principals import Role
from gateway.status.cache import StatusRecord
from gateway.status.feed import RecordError, parse_status_record
from gateway.status.state import STATUS_WRITER

__all__ = ["MAX_BATCH", "routes"]

routes = web.RouteTableDef()

MAX_BATCH = 10_000
MAX_BODY = 4 * 1024 * 1024


@routes.put("/v1/status")
@requires(Role.FEEDER)
async def put_status(request: web.Request) -> web.Response:
    """Upsert a batch; a bad record is reported by index and never fails the rest of the batch."""
    body = await read_json(request, limit=MAX_BODY)
    records_raw = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records_raw, list) or not records_raw:
        raise BadRequestError("body must be {\"records\": [...]} with at least one record")
    if len(records_raw) > MAX_BATCH:
        raise BadRequestError(f"at most {MAX_BATCH} records per batch")
    now = datetime.now(UTC)
    results: list[dict[str, object]] = [{} for _ in records_raw]
    valid: list[tuple[int, StatusRecord]] = []
    for i, raw in enumerate(records_raw):
        try:
            valid.append((i, parse_status_record(raw, now=now)))
        except RecordError as exc:
            results[i] = {"index": i, "outcome": "rejected", "error": exc.code}
    applied = await request.app[STATUS_WRITER].upsert_statuses([r for _, r in valid]) if valid else []
    for (i, _), ok in zip(valid, applied, strict=True):
        results[i] = {"index": i, "outcome": "applied" if ok else "stale"}
    counts = {"applied": 0, "stale": 0, "rejected": 0}
    for result in results:
        counts[str(result["outcome"])] += 1
    metrics = request.app[METRICS]
    for outcome, n in counts.items():
        metrics.status_records.labels(outcome).inc(n)
    return json_response({**counts, "results": results})
