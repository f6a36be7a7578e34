"""The EU DCC value sets in Redis: import (audited, versioned), load, and the directory reader of the CLI.

Public reference data only (ids, dates, codes).  An import replaces the stored sets as a whole, like a trust list:
a code withdrawn from a set must stop verifying.  Every import is audited first (its version and a digest of what
it holds) and bumps the version counter that every worker polls (``trust/refresh.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from crypto.dcc_valuesets import ValueSet, ValueSets, parse_value_set
from crypto.errors import TrustListError
from gateway import keyspace
from gateway.privacy.audit import cli_actor, record_privileged
from gateway.redisio import Command, execute_in_order, redis_errors

__all__ = ["ValueSetRegistry", "ValueSetSnapshot", "read_value_set_dir"]

log = logging.getLogger("placegate.valuesets")


@dataclass(frozen=True, slots=True)
class ValueSetSnapshot:
    """One consistent read of the stored value sets."""

    version: int
    value_sets: ValueSets
    imported_at: datetime | None


def read_value_set_dir(directory: Path) -> tuple[list[ValueSet], list[str]]:
    """The value sets of the ``*.json`` files directly in ``directory``, and the names of files skipped.

    A file without ``valueSetId`` (a JSON schema, any other document) is not a value set and is skipped; a file
    that claims to be one and is malformed stops the import, as does a set id seen twice.

    :raises TrustListError: a malformed value set, a duplicate id, or no value set at all.
    :raises OSError: the directory or a file cannot be read.
    """
    found: dict[str, ValueSet] = {}
    skipped: list[str] = []
    for path in sorted(directory.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise TrustListError(f"{path.name}: not JSON ({exc})") from None
        if not isinstance(doc, dict) or "valueSetId" not in doc:
            skipped.append(path.name)
            continue
        try:
            value_set = parse_value_set(doc)
        except TrustListError as exc:
            raise TrustListError(f"{path.name}: {exc}") from None
        if value_set.id in found:
            raise TrustListError(f"{path.name}: value set {value_set.id} appears twice")
        found[value_set.id] = value_set
    if not found:
        raise TrustListError(f"{directory}: no value-set file (*.json with valueSetId)")
    return list(found.values()), skipped


class ValueSetRegistry:
    """Reads and writes of the stored value sets (configuration: no TTL)."""

    def __init__(self, redis: Redis, *, actor: str | None = None) -> None:
        self.redis = redis
        self.actor = actor  # None: the operating-system account running the CLI

    async def import_sets(self, sets: Sequence[ValueSet], *, now: datetime) -> int:
        """Replace the stored value sets with ``sets``; returns the new version."""
        digest = hashlib.sha256("".join(sorted(s.digest for s in sets)).encode()).hexdigest()
        version = await self.version() + 1
        # Which codes verify is a trust decision: audited first, not applied if the trail cannot be written.
        await record_privileged(self.redis, actor=self.actor or cli_actor(), action="dcc_valuesets_import",
                                obj="dcc_valuesets", now=now,
                                extra={"sets": ",".join(sorted(s.id for s in sets)), "version": str(version),
                                       "digest": digest})
        mapping = {s.id: json.dumps(s.to_json(), separators=(",", ":")) for s in sets}
        with redis_errors("DCC reference data"):
            # The sets replaced in one MULTI (never seen empty), then their time and the version workers poll
            # (other slots on a cluster: in this order).
            listing: list[Command] = [("DEL", keyspace.DCC_VALUESETS)]
            if mapping:
                listing.append(("HSET", keyspace.DCC_VALUESETS, *[x for kv in mapping.items() for x in kv]))
            replies = await execute_in_order(self.redis, [
                listing, [("SET", keyspace.DCC_VALUESETS_IMPORTED_AT, int(now.timestamp()))],
                [("INCRBY", keyspace.DCC_VALUESETS_VERSION, 1)],
            ])  # fmt: skip
        return int(replies[-1])

    async def version(self) -> int:
        with redis_errors("DCC reference data"):
            return int(await self.redis.get(keyspace.DCC_VALUESETS_VERSION) or 0)

    async def load(self) -> ValueSetSnapshot:
        """The stored sets; an entry that no longer parses is skipped and logged (its field is then unjudged)."""
        with redis_errors("DCC reference data"):
            # The version first: the sets read after it are at least as new (writes bump it after the data).
            version, imported, raw = await execute_in_order(self.redis, [
                [("GET", keyspace.DCC_VALUESETS_VERSION)], [("GET", keyspace.DCC_VALUESETS_IMPORTED_AT)],
                [("HGETALL", keyspace.DCC_VALUESETS)],
            ])  # fmt: skip
        sets: dict[str, ValueSet] = {}
        for value in raw.values():
            try:
                value_set = parse_value_set(json.loads(value))
            except (TrustListError, ValueError):
                log.warning("skipped an unusable stored value set")
                continue
            sets[value_set.id] = value_set
        imported_at = None if imported is None else datetime.fromtimestamp(int(imported), UTC)
        return ValueSetSnapshot(int(version or 0), ValueSets(sets), imported_at)
