"""Evidence on a case (issue 15, "the people around a case"): photos and PDF documents attached to a case.

``POST /v1/cases/{id}/attachments`` takes the file as the raw request body (any declared type: the content decides,
``policy/evidence.py``), ``GET /v1/cases/{id}/attachments`` lists them, ``GET /v1/cases/{id}/attachments/{n}``
answers one as a download (its sniffed type, ``Content-Disposition: attachment``, ``X-Content-Type-Options:
nosniff``) after an audit entry: no trail, no download.

Who: the roles that may see the case (``runtime.in_scope``, the rules of ``GET /v1/cases/{id}``; anything else is
404 like a missing case), and the site manager whose report the case is (the case id their report was answered
with, ``people.reported_by``). A site manager uploads evidence to their report's case and downloads and lists only
the files they uploaded themselves: a handler's photo of a person at the scene is not theirs to see.

At rest (a photo of a person is personal data): each file is one string key beside the case
(``keyspace.case_attachment_key``), sealed with AES-256-GCM under its own sub-key (``ATTACHMENT_LABEL``) and bound
to its case and number, so no Redis value, AOF or backup holds the image in clear and a blob copied to another case
or number does not open there. The list (number, type, size, SHA-256, when, who) is a hash beside the case. Both
get the case's retention from the upload (the case's own TTL is renewed from its later writes, so a file never
outlives its case); a closed case takes no new files.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from crypto.sealing import Sealer, SealError, attachment_binding
from gateway import keyspace
from gateway.appstate import SETTINGS
from gateway.auth import PRINCIPAL, requires
from gateway.dispatch.people import reported_by
from gateway.dispatch.runtime import DISPATCH, DispatchRuntime, in_scope
from gateway.dispatch.store import valid_case_id
from gateway.errors import (
    BadRequestError,
    CaseRefusedError,
    GatewayError,
    NotDurableError,
    NotFoundError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
)
from gateway.http import json_response
from gateway.principals import Principal, Role
from gateway.privacy.audit import record_access
from gateway.redisio import one_connection, redis_errors
from policy.casework import TERMINAL_STATES, Case
from policy.evidence import ATTACHMENT_MAX_BYTES, ATTACHMENTS_MAX, EXTENSIONS, sniff_attachment
from policy.purpose import PURPOSE

__all__ = ["add_attachment_to", "attachment_list", "case_for", "read_attachment", "routes"]

_RETRIES = 5
# KEYS: the list hash, the file's key. ARGV: the number expected (the list's length + 1), the maximum, the list
# entry, the sealed bytes, TTL ms. 0: the case is full; -1: another upload took the number (retry).
_ADD_LUA = """
local n = redis.call('HLEN', KEYS[1]) + 1
if n > tonumber(ARGV[2]) then return 0 end
if n ~= tonumber(ARGV[1]) then return -1 end
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

routes = web.RouteTableDef()


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def case_for(runtime: DispatchRuntime, principal: Principal, case_id: str) -> Case:
    """The case if ``principal`` may attach to it or download from it; 404 otherwise (a case out of scope and a
    missing case answer alike)."""
    if not valid_case_id(case_id):
        raise NotFoundError("no such case")
    if principal.role is Role.SITE_MANAGER:
        allowed = await reported_by(runtime, principal.principal_id, case_id)
        case = await runtime.store.get(case_id, history=False) if allowed else None
    else:
        case = await runtime.store.get(case_id, history=False)
        if case is not None and not in_scope(principal, case):
            case = None
    if case is None:
        raise NotFoundError("no such case")
    return case


def _sealer(runtime: DispatchRuntime) -> Sealer:
    if runtime.attachment_sealer is None:
        raise GatewayError("attachments need the gateway secret")
    return runtime.attachment_sealer


async def attachment_list(runtime: DispatchRuntime, case_id: str, *, by: str | None = None) -> list[dict[str, Any]]:
    """The case's attachments in upload order (``by``: only those this principal uploaded)."""
    with redis_errors("attachments"):
        raw = await runtime.store.redis.hgetall(keyspace.case_attachments_key(case_id))
    entries = sorted((orjson.loads(v) for v in raw.values()), key=lambda e: int(e["n"]))
    return [e for e in entries if by is None or e.get("uploaded_by") == by]


def _check_head(request: web.Request) -> None:
    """Refusals the headers alone decide, before anything is looked up (as ``http.read_json`` does)."""
    if request.headers.get("Content-Encoding", "").strip().lower() not in ("", "identity"):
        # Refused, never inflated: the limit holds for the bytes stored (the app turns decompression off).
        raise UnsupportedMediaTypeError("send the file uncompressed (no Content-Encoding)")
    if request.content_length is not None and request.content_length > ATTACHMENT_MAX_BYTES:
        raise PayloadTooLargeError(f"an attachment is at most {ATTACHMENT_MAX_BYTES} bytes",
                                   code="attachment_too_large")  # fmt: skip


async def _read_body(request: web.Request) -> bytes:
    """The raw body, refused as soon as it passes the limit (never buffered past it)."""
    body = bytearray()
    try:
        async with asyncio.timeout(request.app[SETTINGS].body_read_timeout_s):
            async for chunk in request.content.iter_chunked(65536):
                body += chunk
                if len(body) > ATTACHMENT_MAX_BYTES:
                    raise PayloadTooLargeError(f"an attachment is at most {ATTACHMENT_MAX_BYTES} bytes",
                                               code="attachment_too_large")  # fmt: skip
    except TimeoutError:
        raise RequestTimeoutError("the body did not arrive in time") from None
    except HttpProcessingError:
        raise BadRequestError("malformed request body") from None
    except ConnectionResetError:
        raise BadRequestError("the connection closed before the body was whole") from None
    return bytes(body)


async def _audit(runtime: DispatchRuntime, principal: Principal, action: str, case_id: str, n: int) -> None:
    await record_access(runtime.store.redis, principal=principal, action=action,
                        obj=f"attachment:{case_id}:{n}", purpose=PURPOSE, now=runtime.now(), case_ref=case_id,
                        result_count=1)  # fmt: skip


@routes.post("/v1/cases/{case_id}/attachments")
@requires(Role.DISPATCHER, Role.HANDLER, Role.SUPERVISOR, Role.SITE_MANAGER)
async def add_attachment(request: web.Request) -> web.Response:
    """Attach one file (the raw body): a JPEG or PNG photo or a PDF, at most 2 MB; 201 with its list entry."""
    runtime = request.app[DISPATCH]
    principal = request[PRINCIPAL]
    _check_head(request)
    case = await case_for(runtime, principal, request.match_info["case_id"])
    data = await _read_body(request)
    entry = await add_attachment_to(runtime, principal, case, data)
    return json_response({"case_id": case.case_id, **entry}, status=201)


async def add_attachment_to(runtime: DispatchRuntime, principal: Principal, case: Case, data: bytes) -> dict[str, Any]:
    """Store one file on a case ``case_for`` gave (its type from its content), audited; its list entry.

    :raises GatewayError: ``unsupported_attachment_type``, ``case_closed``, ``attachments_full``, ..."""
    content_type = sniff_attachment(data)
    if content_type is None:
        raise UnsupportedMediaTypeError("an attachment is a JPEG or PNG photo or a PDF (checked by its content)",
                                        code="unsupported_attachment_type")  # fmt: skip
    if case.state in TERMINAL_STATES:
        raise CaseRefusedError("the case is closed: it takes no new evidence", code="case_closed")
    sealer, cid = _sealer(runtime), case.case_id
    now = runtime.now()
    entry: dict[str, Any] = {
        "content_type": content_type, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        "uploaded_at": now.isoformat(), "uploaded_by": principal.principal_id,
    }  # fmt: skip
    listing = keyspace.case_attachments_key(cid)
    with redis_errors("attachments"):
        for _ in range(_RETRIES):
            n = await runtime.store.redis.hlen(listing) + 1
            if n > ATTACHMENTS_MAX:
                break
            entry["n"] = n
            sealed = sealer.seal_bytes(data, bound_to=attachment_binding(cid, n))
            async with one_connection(runtime.store.redis, listing) as conn:  # WAITAOF counts its writes
                done = await conn.eval(
                    _ADD_LUA, 2, listing, keyspace.case_attachment_key(cid, n), str(n), str(ATTACHMENTS_MAX),
                    orjson.dumps(entry), sealed, str(runtime.store.case_retention_ms),
                )
                if int(done) == 1 and await runtime.store.aof_enabled():
                    local, _ = await conn.execute_command("WAITAOF", 1, 0, runtime.store.waitaof_timeout_ms)  # type: ignore[no-untyped-call]
                    if int(local) < 1:
                        raise NotDurableError("the attachment was not confirmed on disk in time")
            if int(done) == 1:
                break
            if int(done) == 0:
                n = ATTACHMENTS_MAX + 1
                break
        else:
            raise CaseRefusedError("the case kept changing; try again", code="case_conflict")
    if n > ATTACHMENTS_MAX:
        raise CaseRefusedError(f"a case takes at most {ATTACHMENTS_MAX} attachments", code="attachments_full")
    await _audit(runtime, principal, "attachment_add", cid, n)
    return entry


@routes.get("/v1/cases/{case_id}/attachments")
@requires(Role.DISPATCHER, Role.HANDLER, Role.SUPERVISOR, Role.SITE_MANAGER)
async def list_attachments(request: web.Request) -> web.Response:
    """The case's attachments (a site manager: the ones they uploaded); no file content."""
    runtime = request.app[DISPATCH]
    principal = request[PRINCIPAL]
    case = await case_for(runtime, principal, request.match_info["case_id"])
    by = principal.principal_id if principal.role is Role.SITE_MANAGER else None
    return json_response({"case_id": case.case_id, "attachments": await attachment_list(runtime, case.case_id, by=by)})


@routes.get("/v1/cases/{case_id}/attachments/{n}")
@requires(Role.DISPATCHER, Role.HANDLER, Role.SUPERVISOR, Role.SITE_MANAGER)
async def get_attachment(request: web.Request) -> web.Response:
    """One attachment as a download, audited before it leaves."""
    runtime = request.app[DISPATCH]
    principal = request[PRINCIPAL]
    case = await case_for(runtime, principal, request.match_info["case_id"])
    raw_n = request.match_info["n"]
    # The length first: int() of a path segment of thousands of digits raises (a 500 from input).
    if len(raw_n) > 3 or not raw_n.isascii() or not raw_n.isdigit() or not 1 <= int(raw_n) <= ATTACHMENTS_MAX:
        raise NotFoundError("no such attachment")
    data, content_type = await read_attachment(runtime, principal, case, int(raw_n))
    return web.Response(body=data, content_type=content_type, headers={
        "Content-Disposition": f'attachment; filename="{case.case_id}-{int(raw_n)}.{EXTENSIONS[content_type]}"',
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
    })  # fmt: skip


async def read_attachment(runtime: DispatchRuntime, principal: Principal, case: Case, n: int) -> tuple[bytes, str]:
    """One file of a case ``case_for`` gave and its type, audited before it is returned (a site manager: only the
    files they uploaded). :raises NotFoundError: no such file for this principal."""
    cid = case.case_id
    with redis_errors("attachments"):
        async with runtime.store.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keyspace.case_attachments_key(cid), str(n))
            pipe.get(keyspace.case_attachment_key(cid, n))
            info, sealed = await pipe.execute()
    if info is None or sealed is None:
        raise NotFoundError("no such attachment")
    entry = orjson.loads(info)
    if principal.role is Role.SITE_MANAGER and entry.get("uploaded_by") != principal.principal_id:
        raise NotFoundError("no such attachment")
    try:
        data = _sealer(runtime).open_bytes(bytes(sealed), bound_to=attachment_binding(cid, n))
    except SealError:
        raise GatewayError("the attachment is not this case's", code="unseal_failed") from None
    # Audit first: if the trail cannot be written the file does not leave (no unaudited access).
    await _audit(runtime, principal, "attachment_read", cid, n)
    return data, str(entry["content_type"])
