"""Registry reads and writes: the trust list, places and principals (configuration, kept until revoked)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from crypto.errors import TrustListError
from crypto.trust import TrustedKey, TrustList
from gateway import keyspace
from gateway.principals import Principal
from gateway.privacy.audit import cli_actor, record_privileged
from gateway.redisio import execute_in_order, redis_errors

__all__ = ["Place", "Registry"]


@dataclass(frozen=True, slots=True)
class Place:
    place_id: str
    name: str
    venue_class: str
    jurisdiction: str


class Registry:
    """Every write here is a privileged action: it is audited first, and not applied if the audit fails."""

    def __init__(self, redis: Redis, *, actor: str | None = None) -> None:
        self.redis = redis
        self.actor = actor  # None: the operating-system account running the CLI

    async def _audit(self, action: str, obj: str, **extra: str) -> None:
        await record_privileged(self.redis, actor=self.actor or cli_actor(), action=action, obj=obj, extra=extra)

    # --- trust list ----------------------------------------------------------------------------------------
    async def load_trust(self) -> tuple[int, TrustList]:
        """The trust list and its version; a malformed entry is skipped (it can never verify anything)."""
        with redis_errors("trust list"):
            version, raw = await self._pipe_get_trust()
        entries = []
        for value in raw.values():
            try:
                entries.append(TrustedKey.from_dict(orjson.loads(value)))
            except (TrustListError, orjson.JSONDecodeError):
                continue
        return version, TrustList(entries)

    async def _pipe_get_trust(self) -> tuple[int, dict[bytes, bytes]]:
        # The version first: a list read after it is at least as new (writes bump it after the data).
        version, raw = await execute_in_order(
            self.redis, [[("GET", keyspace.TRUST_VERSION)], [("HGETALL", keyspace.TRUST)]]
        )
        return int(version or 0), raw

    async def trust_version(self) -> int:
        with redis_errors("trust list"):
            return int(await self.redis.get(keyspace.TRUST_VERSION) or 0)

    async def put_trusted_key(self, key: TrustedKey) -> None:
        await self._audit("key_revoke" if key.revoked else "key_put", f"key:{key.kid.hex()}",
                          usage=key.usage.value, alg=key.alg.value)
        with redis_errors("trust list"):  # the key, then the version workers poll (two slots on a cluster)
            await execute_in_order(self.redis, [[("HSET", keyspace.TRUST, key.kid.hex(), orjson.dumps(key.to_dict()))],
                                                [("INCRBY", keyspace.TRUST_VERSION, 1)]])  # fmt: skip

    async def import_trusted_key(self, key: TrustedKey) -> bool:
        """Trust an authority's public key under a kid not on the list yet; False (nothing written) otherwise.

        A kid already listed is never overwritten, revoked or not: an import must not lift a revocation or move
        a key to another usage or window (``keys revoke`` and a new key are the ways to change trust).
        """
        with redis_errors("trust list"):
            if await self.redis.hexists(keyspace.TRUST, key.kid.hex()):
                return False
        window = f"{key.not_before.isoformat()}/{key.not_after.isoformat()}"
        await self._audit("key_import", f"key:{key.kid.hex()}", usage=key.usage.value, alg=key.alg.value,
                          window=window)
        with redis_errors("trust list"):  # the key, then the version workers poll (two slots on a cluster)
            added, _ = await execute_in_order(self.redis, [[("HSETNX", keyspace.TRUST, key.kid.hex(),
                                                              orjson.dumps(key.to_dict()))],
                                                            [("INCRBY", keyspace.TRUST_VERSION, 1)]])  # fmt: skip
        return bool(added)

    # --- places --------------------------------------------------------------------------------------------
    async def add_place(self, place: Place, *, replace: bool = False) -> None:
        await self._audit("place_replace" if replace else "place_add", f"place:{place.place_id}",
                          venue_class=place.venue_class, jurisdiction=place.jurisdiction)
        fields = ("name", place.name, "venue_class", place.venue_class, "jurisdiction", place.jurisdiction)
        with redis_errors("place registry"):  # the place, then the set that lists it (two slots on a cluster)
            await execute_in_order(self.redis, [[("HSET", keyspace.place_key(place.place_id), *fields)],
                                                [("SADD", keyspace.PLACES, place.place_id)]])  # fmt: skip

    async def get_place(self, place_id: str) -> Place | None:
        with redis_errors("place registry"):
            raw = await self.redis.hgetall(keyspace.place_key(place_id))
        if not raw:
            return None
        f = {_text(k): _text(v) for k, v in raw.items()}
        return Place(place_id, f["name"], f["venue_class"], f["jurisdiction"])

    async def list_places(self) -> list[Place]:
        places = []
        with redis_errors("place registry"):
            members = await self.redis.smembers(keyspace.PLACES)
        for pid in sorted(members):
            place = await self.get_place(_text(pid))
            if place is not None:
                places.append(place)
        return places

    # --- principals ----------------------------------------------------------------------------------------
    async def add_principal(self, principal: Principal, token_hash: str) -> None:
        scope = ",".join(sorted(principal.places)) or principal.jurisdiction or principal.department
        # The identity-card capability (issue 18) is in the entry only when granted: who may send ID numbers.
        capability = {"capability": "id_card"} if principal.id_card else {}
        await self._audit("token_issue", f"principal:{principal.principal_id}", target_role=principal.role.value,
                          scope=scope[:256], expires_at=str(principal.expires_at), **capability)
        fields = [x for kv in principal.to_fields().items() for x in kv]
        with redis_errors("principal registry"):  # the principal, then the id index (two slots on a cluster)
            await execute_in_order(self.redis, [[("HSET", keyspace.principal_key(token_hash), *fields)],
                                                [("HSET", keyspace.PRINCIPAL_IDS, principal.principal_id, token_hash)]])

    async def get_principal(self, token_hash: str) -> Principal | None:
        with redis_errors("principal registry"):
            raw = await self.redis.hgetall(keyspace.principal_key(token_hash))
        return Principal.from_fields({_bytes(k): _bytes(v) for k, v in raw.items()}) if raw else None

    async def principal_by_id(self, principal_id: str) -> Principal | None:
        """The principal currently registered under this id (revoked or not), None if the id was never used."""
        with redis_errors("principal registry"):
            token_hash = await self.redis.hget(keyspace.PRINCIPAL_IDS, principal_id)
        return None if token_hash is None else await self.get_principal(_text(token_hash))

    async def principal_exists(self, principal_id: str) -> bool:
        with redis_errors("principal registry"):
            return bool(await self.redis.hexists(keyspace.PRINCIPAL_IDS, principal_id))

    async def revoke_principal(self, principal_id: str) -> bool:
        with redis_errors("principal registry"):
            token_hash = await self.redis.hget(keyspace.PRINCIPAL_IDS, principal_id)
        if token_hash is None:
            return False
        await self._audit("token_revoke", f"principal:{principal_id}")
        with redis_errors("principal registry"):
            await self.redis.hset(keyspace.principal_key(_text(token_hash)), "revoked", "1")
        return True

    async def list_principals(self) -> list[Principal]:
        out = []
        with redis_errors("principal registry"):
            token_hashes = (await self.redis.hgetall(keyspace.PRINCIPAL_IDS)).values()
        for token_hash in token_hashes:
            principal = await self.get_principal(_text(token_hash))
            if principal is not None:
                out.append(principal)
        return sorted(out, key=lambda p: p.principal_id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value
