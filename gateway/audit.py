"""The audit trail: every read of personal data and every privileged action, hash-chained (PIPL Art. 56).

Each entry's ``hash`` is SHA-1 (the one digest Redis scripting offers) over the previous hash and this entry's canonical fields, computed
inside one server-side script so concurrent writers from many gateway processes still form one chain. An
edited, removed or reordered entry breaks the chain from that point on. Entries never carry health data.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import keys
from gateway.auth import Principal
from gateway.errors import StoreUnavailableError

__all__ = ["AUDIT_RETENTION_S", "GENESIS", "record_access"]

AUDIT_RETENTION_S = 3 * 366 * 24 * 3600  # at least 3 years (PIPL Art. 56); the stream is trimmed, never expired
GENESIS = "0" * 64

# KEYS[1] audit stream, KEYS[2] chain head; ARGV: alternating field, value (canonical order).
_APPEND_LUA = """
local head = redis.call('GET', KEYS[2]) or ARGV[1]
local canon = head
for i = 2, #ARGV, 2 do canon = canon .. '\\n' .. ARGV[i] .. '=' .. ARGV[i + 1] end
local h = redis.sha1hex(canon)
local args = {'XADD', KEYS[1], '*', 'prev', head}
for i = 2, #ARGV do args[#args + 1] = ARGV[i] end
args[#args + 1] = 'hash'; args[#args + 1] = h
local id = redis.call(unpack(args))
redis.call('SET', KEYS[2], h)
return id
"""


async def record_access(
    redis: Redis,
    *,
    principal: Principal,
    action: str,
    obj: str,
    purpose: str,
    now: datetime,
    case_ref: str = "",
    result_count: int = 0,
    extra: Mapping[str, str] | None = None,
) -> str:
    """Append one audit entry and return its stream id.

    :raises StoreUnavailableError: the read it audits must then not happen (no unaudited access).
    """
    fields = {
        "who": principal.principal_id,
        "role": principal.role.value,
        "when": now.isoformat(),
        "action": action,
        "object": obj,
        "purpose": purpose,
        "case_ref": case_ref,
        "result_count": str(result_count),
        **(extra or {}),
    }
    argv: list[str] = [GENESIS]
    for name in sorted(fields):
        argv += [name, fields[name]]
    try:
        script = redis.register_script(_APPEND_LUA)
        entry_id = await script(keys=[keys.AUDIT_STREAM, keys.AUDIT_HEAD], args=argv)
    except (RedisError, OSError) as exc:
        raise StoreUnavailableError("audit trail unavailable") from exc
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
