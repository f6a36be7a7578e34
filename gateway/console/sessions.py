"""Web-console sessions in Redis: a signed-in person's principal and the form (CSRF) token.

The cookie carries a random session id (256 bits); the store names the session by the id's SHA-256, so a copy of
the store gives no cookie. The session keeps the principal id and the SHA-256 of the token (the registry's own
key, through which every request re-reads the principal: a revoked or expired token ends the session at once);
the token itself is never stored. A session expires ``console_session_s`` after sign-in (the key's TTL) and
sign-out deletes it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

from gateway.keyspace import console_session_key
from gateway.principals import Principal
from gateway.redisio import redis_errors

__all__ = ["Session", "SessionStore"]


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in session as stored (no token, no personal data of anyone but the staff member's id)."""

    principal_id: str
    token_hash: str
    csrf: str


def _key(session_id: str) -> str:
    return console_session_key(hashlib.sha256(session_id.encode()).hexdigest())


class SessionStore:
    """Create, read, change and delete sessions; every key expires ``ttl_s`` after sign-in."""

    def __init__(self, redis: Redis, *, ttl_s: int) -> None:
        self._redis = redis
        self.ttl_s = ttl_s

    async def create(self, principal: Principal, token_hash: str) -> tuple[str, Session]:
        """A new session for ``principal``: its id (for the cookie only) and the stored session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(principal.principal_id, token_hash, secrets.token_urlsafe(32))
        fields = {"principal": session.principal_id, "token_hash": token_hash, "csrf": session.csrf}
        with redis_errors("console sessions"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(_key(session_id), mapping=fields)  # type: ignore[arg-type]
                pipe.expire(_key(session_id), self.ttl_s)
                await pipe.execute()
        return session_id, session

    async def load(self, session_id: str) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        with redis_errors("console sessions"):
            raw = await self._redis.hgetall(_key(session_id))
        if not raw:
            return None
        f = {_text(k): _text(v) for k, v in raw.items()}
        try:
            return Session(f["principal"], f["token_hash"], f["csrf"])
        except KeyError:
            return None

    async def delete(self, session_id: str) -> None:
        with redis_errors("console sessions"):
            await self._redis.delete(_key(session_id))



def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
